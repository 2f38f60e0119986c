"""Writing files so that a crash, a kill or a full disk never leaves a half-written file where a
good one was: every write goes to a temp file beside the target, is fsync'ed, then `os.replace`d.

Also the small file helpers every stage shares: strict JSON (no NaN), stale temp-file clean-up,
and collision-free output names.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

TMP_SUFFIX = ".tmp"


class SaveError(OSError):
    """A file could not be written; the message names the path and the fix. The previous file,
    if any, is unchanged."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], what: str = "file") -> Path:
    """Call `write(f)` on a temp file beside `path`, fsync it, then move it over `path`.

    `torch.save` reports a full disk as RuntimeError (from its zip writer), not OSError; both
    become `SaveError` naming the path, and the temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, SaveError):
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
            raise SaveError(getattr(e, "errno", None) or 0,
                            f"could not save {what} {path} ({reason}); the previous file, if any, is unchanged. "
                            "Free disk space or choose another output folder") from e
        raise
    return path


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8", "surrogateescape")), what)


def finite(obj):
    """`obj` with every non-finite float replaced by None, so that JSON files stay valid JSON
    (json.dumps writes NaN, which no strict parser reads)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, indent: int | None = 1) -> str:
    """Strict JSON: non-finite floats become null (see `finite`)."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj, what: str = "JSON file") -> Path:
    return write_text(path, dumps(obj) + "\n", what)


def clean_stale_tmp(folder: str | Path, older_than_s: float = 60.0) -> list[Path]:
    """Remove temp files that a killed process left behind in `folder` (ours: `.<name>.*.tmp`)."""
    removed = []
    now = time.time()
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink()
                    removed.append(p)
            except OSError:
                pass  # another process's file, or already gone
    return removed


def unique_name(stem: str, used: set[str]) -> str:
    """`stem`, or `stem_1`, `stem_2`... so that outputs of same-named inputs never overwrite each other."""
    name, k = stem, 1
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def safe_name(name: str) -> str:
    """A file-name-safe version of `name` (layer names, image stems)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "image"


def printable(path: str | Path) -> str:
    """A path as text that any UTF-8 writer accepts: undecodable bytes of a file name (which
    Python keeps as lone surrogates) are shown as `\\xNN` escapes instead of breaking CSV/JSON."""
    s = str(path)
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
