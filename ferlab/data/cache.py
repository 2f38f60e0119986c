"""The decoded uint8 cache: a dataset decoded once is loaded in a fraction of a second next time.

Keyed by the source listing (names, sizes, mtimes) and the preprocessing. A damaged cache file
is rebuilt, never trusted; failing to write one (full disk, read-only home) never fails the run.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ..fileio import atomic_write
from .dataset import FaceData

CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("FERLAB_CACHE", Path.home() / ".cache" / "ferlab"))


def cache_key(signature: dict) -> str:
    blob = json.dumps(signature, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:20]


def cached(signature: dict, build: Callable[[], FaceData], use_cache: bool) -> FaceData:
    path = cache_dir() / f"{cache_key({'v': CACHE_VERSION, **signature})}.pt"
    if use_cache and path.exists():
        try:
            d = torch.load(path, weights_only=True)
            return FaceData(d["images"], d["labels"], list(d["classes"]), list(d["paths"]),
                            [tuple(s) for s in d["skipped"]], d["source"])
        except Exception as e:  # a damaged cache is rebuilt, never trusted
            print(f"ferlab: ignoring unreadable cache {path}: {e}", file=sys.stderr)
    data = build()
    if use_cache:
        blob = {"images": data.images, "labels": data.labels, "classes": data.classes, "paths": data.paths,
                "skipped": data.skipped, "source": data.source}
        try:
            atomic_write(path, lambda f: torch.save(blob, f), "dataset cache")
        except OSError as e:  # includes a full disk (SaveError): the run goes on without a cache
            print(f"ferlab: could not write cache: {e}", file=sys.stderr)
    return data
