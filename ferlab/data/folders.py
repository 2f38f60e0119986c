"""Image folders: `<root>/<split>/<class>/*` (Kaggle's FER2013) or `<root>/<class>/*` (your own)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import labels
from ..preprocess import pil_to_array
from .dataset import BadInputError, FaceData, bad_files_error

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
#: Folder names accepted for each split, first match wins.
SPLIT_ALIASES = {
    "train": ("train", "training", "Training"),
    "val": ("val", "valid", "validation", "PublicTest", "public_test"),
    "test": ("test", "PrivateTest", "private_test"),
}


@dataclass(frozen=True)
class Entry:
    label: str
    path: Path
    size: int
    mtime_ns: int


def split_dir(root: Path, split: str) -> Path | None:
    for alias in SPLIT_ALIASES.get(split, (split,)):
        if (root / alias).is_dir():
            return root / alias
    return None


def is_class_root(root: Path) -> bool:
    """True when `root`'s subfolders hold images directly (root/<class>/<image>)."""
    for sub in root.iterdir():
        if sub.is_dir() and any(f.suffix.lower() in IMAGE_EXTS for f in sub.iterdir() if f.is_file()):
            return True
    return False


def available_splits(root: str | Path) -> list[str]:
    root = Path(root)
    if root.is_file():
        return ["train", "val", "test"]
    found = [s for s in SPLIT_ALIASES if split_dir(root, s)]
    return found or (["all"] if is_class_root(root) else [])


def class_folders(split_root: Path) -> dict[str, Path]:
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


def listing(folders: dict[str, Path]) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Every non-hidden file below each class folder in a stable order, and the (file, reason) of
    entries that cannot be read at all (dangling or looping symlinks, unreadable folders).

    os.walk's scandir entries know file types without a stat call, unlike Path.rglob + is_file;
    one stat per file gives the size and mtime that key the cache."""
    entries, bad = [], []
    for name, folder in folders.items():
        files = []
        for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda e: bad.append((e.filename, e.strerror))):
            dirnames.sort()
            files += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
        for f in sorted(files):
            try:
                st = f.stat()
            except OSError as e:  # a dangling link (ENOENT) or a link loop (ELOOP)
                bad.append((str(f), f"cannot open ({e.strerror}; a broken or looping symlink?)"))
                continue
            entries.append(Entry(name, f, st.st_size, st.st_mtime_ns))
    return entries, bad


def decode_file(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image, ImageOps

    if not path.is_file():  # a FIFO or device would block or stream forever
        raise ValueError("not a regular file")
    with Image.open(path) as im:
        im.load()  # force full decode so truncated files fail here, not later
        im = ImageOps.exif_transpose(im)
        return pil_to_array(im, size, channels)


def read_folder(split_root: Path, size: int, channels: int, classes: list[str] | None,
                skip_bad: bool) -> FaceData:
    folders = class_folders(split_root)
    run_classes = list(classes) if classes else list(folders)
    unknown = [n for n in folders if n not in run_classes]
    if unknown:
        raise BadInputError(f"{split_root}: class folder(s) {unknown} are not in the label set {run_classes}; "
                            "rename them or pass --classes with the full list")
    files, bad = listing(folders)
    imgs, labs, paths = [], [], []
    for e in files:
        if e.path.suffix.lower() not in IMAGE_EXTS:
            bad.append((str(e.path), f"not an image file (extension {e.path.suffix or 'none'}; supported: "
                        f"{', '.join(sorted(IMAGE_EXTS))})"))
            continue
        try:
            arr = decode_file(e.path, size, channels)
        except Exception as err:  # PIL raises many types for corrupt data; report each file
            bad.append((str(e.path), f"unreadable image ({type(err).__name__}: {err})"))
            continue
        imgs.append(arr)
        labs.append(run_classes.index(e.label))
        paths.append(str(e.path))
    found = set(run_classes[i] for i in labs)
    bad += [(str(folder), "empty class folder (no usable image in it)") for name, folder in folders.items()
            if name not in found]
    if bad and not skip_bad:
        raise bad_files_error(bad)
    if not imgs:
        raise BadInputError(f"{split_root}: no readable images")
    return FaceData(torch.from_numpy(np.stack(imgs)), torch.tensor(labs, dtype=torch.int64), run_classes, paths,
                    bad, str(split_root))
