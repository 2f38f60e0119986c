"""Reading face datasets into memory: FER2013 CSV, image folders, splits and the decoded cache.

Every source becomes a `FaceData`: a uint8 tensor (N, C, H, W) plus int64 labels indexing
`classes`. Decoding happens once; the result is cached keyed by the source listing and the
preprocessing, so the next run loads FER2013 in a fraction of a second.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import labels
from .preprocess import pil_to_array

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
#: Folder names accepted for each split, first match wins.
SPLIT_ALIASES = {
    "train": ("train", "training", "Training"),
    "val": ("val", "valid", "validation", "PublicTest", "public_test"),
    "test": ("test", "PrivateTest", "private_test"),
}
CACHE_VERSION = 1


@dataclass
class FaceData:
    images: torch.Tensor
    """uint8 (N, C, H, W)."""
    labels: torch.Tensor
    """int64 (N,), indices into `classes`."""
    classes: list[str]
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) for inputs skipped with skip_bad."""
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))

    def subset(self, idx: torch.Tensor) -> "FaceData":
        paths = [self.paths[i] for i in idx.tolist()] if self.paths else []
        return FaceData(self.images[idx], self.labels[idx], self.classes, paths, [], self.source)


class BadInputError(ValueError):
    """Input files that cannot be used; the message names them and the fix."""


def _bad_files_error(bad: list[tuple[str, str]]) -> BadInputError:
    shown = "\n".join(f"  {p}: {why}" for p, why in bad[:10])
    more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    return BadInputError(f"{len(bad)} unusable input(s):\n{shown}{more}\n"
                         "fix or remove them, or pass --skip-bad to skip them (they are then listed)")


def cache_dir() -> Path:
    return Path(os.environ.get("FERLAB_CACHE", Path.home() / ".cache" / "ferlab"))


def _cache_key(signature: dict) -> str:
    blob = json.dumps(signature, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:20]


def _cached(signature: dict, build, use_cache: bool) -> FaceData:
    path = cache_dir() / f"{_cache_key(signature)}.pt"
    if use_cache and path.exists():
        try:
            d = torch.load(path, weights_only=True)
            return FaceData(d["images"], d["labels"], list(d["classes"]), list(d["paths"]),
                            [tuple(s) for s in d["skipped"]], d["source"])
        except Exception as e:  # a damaged cache is rebuilt, never trusted
            print(f"ferlab: ignoring unreadable cache {path}: {e}", file=sys.stderr)
    data = build()
    if use_cache:
        from .checkpoint import save  # atomic write; cache failures must not fail training

        try:
            save({"images": data.images, "labels": data.labels, "classes": data.classes, "paths": data.paths,
                  "skipped": data.skipped, "source": data.source}, path)
        except OSError as e:
            print(f"ferlab: could not write cache {path}: {e}", file=sys.stderr)
    return data


# ----------------------------------------------------------------------------- FER2013 CSV

def _read_fer_csv(path: Path, split: str, size: int, channels: int, classes: list[str],
                  skip_bad: bool) -> FaceData:
    want_usage = {u for u, s in labels.FER2013_USAGE_SPLITS.items() if s == split}
    imgs, labs, names, bad = [], [], [], []
    target = {name: i for i, name in enumerate(classes)}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels"} - set(reader.fieldnames or [])
        if missing:
            raise BadInputError(f"{path}: missing column(s) {sorted(missing)}; a FER2013 CSV has "
                                "columns emotion,pixels,Usage")
        has_usage = "Usage" in (reader.fieldnames or [])
        if not has_usage and split != "train":
            raise BadInputError(f"{path} has no Usage column, so it holds only a 'train' split; "
                                "use --val-fraction to hold out validation data")
        for row_no, row in enumerate(reader, start=2):
            if has_usage:
                usage = row["Usage"]
                if usage not in labels.FER2013_USAGE_SPLITS:
                    bad.append((f"{path}:{row_no}", f"unknown Usage {usage!r}; expected one of "
                                f"{list(labels.FER2013_USAGE_SPLITS)}"))
                    continue
                if usage not in want_usage:
                    continue
            where = f"{path}:{row_no}"
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
            if px.size != 48 * 48:
                bad.append((where, f"{px.size} pixel values, expected 2304 (48x48)"))
                continue
            if px.min() < 0 or px.max() > 255:
                bad.append((where, "pixel values outside 0..255"))
                continue
            arr = px.astype(np.uint8).reshape(48, 48)
            if size != 48 or channels != 1:
                from PIL import Image

                arr = pil_to_array(Image.fromarray(arr, "L"), size, channels)
            else:
                arr = arr[None]
            imgs.append(arr)
            labs.append(target[name])
            names.append(where)
    if bad and not skip_bad:
        raise _bad_files_error(bad)
    if not imgs:
        raise BadInputError(f"{path}: no rows for split {split!r}")
    return FaceData(torch.from_numpy(np.stack(imgs)), torch.tensor(labs, dtype=torch.int64), classes, names, bad,
                    str(path))


# ----------------------------------------------------------------------------- folders

def _split_dir(root: Path, split: str) -> Path | None:
    for alias in SPLIT_ALIASES.get(split, (split,)):
        if (root / alias).is_dir():
            return root / alias
    return None


def _is_class_root(root: Path) -> bool:
    """True when `root`'s subfolders hold images directly (root/<class>/<image>)."""
    for sub in root.iterdir():
        if sub.is_dir() and any(f.suffix.lower() in IMAGE_EXTS for f in sub.iterdir() if f.is_file()):
            return True
    return False


def available_splits(root: str | Path) -> list[str]:
    root = Path(root)
    if root.is_file():
        return ["train", "val", "test"]
    found = [s for s in SPLIT_ALIASES if _split_dir(root, s)]
    return found or (["all"] if _is_class_root(root) else [])


def _class_folders(split_root: Path) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for sub in sorted(p for p in split_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = labels.canonical(sub.name)
        if name in folders:
            raise BadInputError(f"folders {folders[name].name!r} and {sub.name!r} both map to class {name!r}")
        folders[name] = sub
    folders = dict(sorted(folders.items()))  # canonical-name order, whatever the folders are called
    if not folders:
        raise BadInputError(f"{split_root} has no class folders; expected {split_root}/<class>/<image files>")
    return folders


def _listing(folders: dict[str, Path]) -> list[tuple[str, Path]]:
    """(class, file) for every non-hidden file below each class folder, in a stable order.

    os.walk's scandir entries know file types without a stat call, unlike Path.rglob + is_file.
    """
    out = []
    for name, folder in folders.items():
        files = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            files += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
        out += [(name, f) for f in sorted(files)]
    return out


def _decode_file(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()  # force full decode so truncated files fail here, not later
        im = ImageOps.exif_transpose(im)
        return pil_to_array(im, size, channels)


def _read_folder(split_root: Path, size: int, channels: int, classes: list[str] | None,
                 skip_bad: bool) -> FaceData:
    folders = _class_folders(split_root)
    run_classes = list(classes) if classes else list(folders)
    unknown = [n for n in folders if n not in run_classes]
    if unknown:
        raise BadInputError(f"{split_root}: class folder(s) {unknown} are not in the label set {run_classes}; "
                            "rename them or pass --classes with the full list")
    files = _listing(folders)
    bad: list[tuple[str, str]] = []
    for name, folder in folders.items():
        if not any(n == name for n, _ in files):
            bad.append((str(folder), "empty class folder"))
    imgs, labs, paths = [], [], []
    for name, f in files:
        if f.suffix.lower() not in IMAGE_EXTS:
            bad.append((str(f), f"not an image file (extension {f.suffix or 'none'}; supported: "
                        f"{', '.join(sorted(IMAGE_EXTS))})"))
            continue
        try:
            arr = _decode_file(f, size, channels)
        except Exception as e:  # PIL raises many types for corrupt data; report each file
            bad.append((str(f), f"unreadable image ({type(e).__name__}: {e})"))
            continue
        imgs.append(arr)
        labs.append(run_classes.index(name))
        paths.append(str(f))
    if bad and not skip_bad:
        raise _bad_files_error(bad)
    if not imgs:
        raise BadInputError(f"{split_root}: no readable images")
    return FaceData(torch.from_numpy(np.stack(imgs)), torch.tensor(labs, dtype=torch.int64), run_classes, paths,
                    bad, str(split_root))


# ----------------------------------------------------------------------------- entry point

def load(source: str | Path, split: str = "train", *, size: int = 48, channels: int = 1,
         classes: list[str] | None = None, skip_bad: bool = False, use_cache: bool = True) -> FaceData:
    """Load one split of a dataset into memory.

    `source` is a FER2013 CSV (`emotion,pixels,Usage`), a folder with split subfolders
    (`<root>/<split>/<class>/*`, as Kaggle's image-folder FER2013), or a folder of class folders
    (`<root>/<class>/*`, split `all` or `train`). `classes` fixes the label set and its order
    (canonical names); by default FER2013 uses the 7 standard classes and folders use their own.
    """
    src = Path(source)
    if not src.exists():
        raise FileNotFoundError(f"dataset {src} does not exist; pass a FER2013 CSV or a folder of class folders")
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise BadInputError(f"{src}: a dataset file must be a FER2013-style .csv")
        run_classes = list(classes) if classes else list(labels.FER2013_CLASSES)
        if split not in ("train", "val", "test"):
            raise BadInputError(f"unknown split {split!r} for a FER2013 CSV; choose one of: train, val, test")
        st = src.stat()
        sig = {"v": CACHE_VERSION, "kind": "csv", "path": str(src.resolve()), "size": st.st_size,
               "mtime": st.st_mtime_ns, "split": split, "px": size, "ch": channels, "classes": run_classes,
               "skip_bad": skip_bad}
        return _cached(sig, lambda: _read_fer_csv(src, split, size, channels, run_classes, skip_bad), use_cache)
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is neither a CSV file nor a folder")
    split_root = _split_dir(src, split)
    if split_root is None:
        if split in ("all", "train") and _is_class_root(src):
            split_root = src
        else:
            splits = available_splits(src)
            raise BadInputError(f"{src} has no {split!r} split; available: {', '.join(splits) or 'none'}"
                                + ("; hold out validation data with --val-fraction" if split == "val" else ""))
    listing = []
    for n, f in _listing(_class_folders(split_root)):
        st = f.stat()  # one stat per file: listing 28k files is most of a cached load
        listing.append((n, str(f.relative_to(split_root)), st.st_size, st.st_mtime_ns))
    sig = {"v": CACHE_VERSION, "kind": "folder", "path": str(split_root.resolve()), "files": listing,
           "px": size, "ch": channels, "classes": classes, "skip_bad": skip_bad}
    return _cached(sig, lambda: _read_folder(split_root, size, channels, classes, skip_bad), use_cache)


def stratified_split(data: FaceData, fraction: float, seed: int) -> tuple[FaceData, FaceData]:
    """Hold out `fraction` of each class (deterministic for a seed): (train, val)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val fraction must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    val_idx = []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val_idx.append(idx[: int(round(len(idx) * fraction))])
    val = torch.cat(val_idx).sort().values
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[val] = False
    return data.subset(torch.nonzero(mask).flatten()), data.subset(val)


def timed_load(*args, **kwargs) -> tuple[FaceData, float]:
    t = time.perf_counter()
    d = load(*args, **kwargs)
    return d, time.perf_counter() - t
