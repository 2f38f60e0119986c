"""FER2013 as its original CSV: `emotion,pixels,Usage`, one 48x48 face per row."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from .. import labels
from ..preprocess import pil_to_array
from .dataset import BadInputError, FaceData, bad_files_error

SIDE = 48


def read_fer_csv(path: Path, split: str, size: int, channels: int, classes: list[str],
                 skip_bad: bool) -> FaceData:
    want_usage = {u for u, s in labels.FER2013_USAGE_SPLITS.items() if s == split}
    imgs, labs, names, bad = [], [], [], []
    target = {name: i for i, name in enumerate(classes)}
    # utf-8-sig: a CSV saved by Excel starts with a byte-order mark that would glue onto "emotion"
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        missing = {"emotion", "pixels"} - set(columns)
        if missing:
            raise BadInputError(f"{path}: missing column(s) {sorted(missing)}; a FER2013 CSV has "
                                f"columns emotion,pixels,Usage (found: {','.join(columns) or 'none'})")
        has_usage = "Usage" in columns
        if not has_usage and split != "train":
            raise BadInputError(f"{path} has no Usage column, so it holds only a 'train' split; "
                                "use --val-fraction to hold out validation data")
        for row_no, row in enumerate(reader, start=2):
            where = f"{path}:{row_no}"
            short = [c for c in ("emotion", "pixels") + (("Usage",) if has_usage else ()) if row.get(c) is None]
            if short:  # DictReader fills the cells of a short row with None
                bad.append((where, f"row has no {', '.join(short)} value (too few columns)"))
                continue
            if has_usage:
                usage = row["Usage"].strip()
                if usage not in labels.FER2013_USAGE_SPLITS:
                    bad.append((where, f"unknown Usage {usage!r}; expected one of "
                                f"{list(labels.FER2013_USAGE_SPLITS)}"))
                    continue
                if usage not in want_usage:
                    continue
            try:
                name = labels.fer2013_code_to_name(row["emotion"])
            except ValueError as e:
                bad.append((where, str(e)))
                continue
            if name not in target:
                continue  # the run's label set leaves this class out on purpose
            try:
                px = np.array(row["pixels"].split(), dtype=np.int64)
            except ValueError:
                bad.append((where, "pixels are not integers"))
                continue
            if px.size != SIDE * SIDE:
                bad.append((where, f"{px.size} pixel values, expected {SIDE * SIDE} ({SIDE}x{SIDE})"))
                continue
            if px.min() < 0 or px.max() > 255:
                bad.append((where, "pixel values outside 0..255"))
                continue
            arr = px.astype(np.uint8).reshape(SIDE, SIDE)
            if size != SIDE or channels != 1:
                from PIL import Image

                arr = pil_to_array(Image.fromarray(arr, "L"), size, channels)
            else:
                arr = arr[None]
            imgs.append(arr)
            labs.append(target[name])
            names.append(where)
    if bad and not skip_bad:
        raise bad_files_error(bad)
    if not imgs:
        raise BadInputError(f"{path}: no usable rows for split {split!r}")
    return FaceData(torch.from_numpy(np.stack(imgs)), torch.tensor(labs, dtype=torch.int64), classes, names, bad,
                    str(path))
