"""`load`: one split of any supported dataset into memory, through the decoded cache."""
from __future__ import annotations

from pathlib import Path

from .. import labels
from .cache import cached
from .dataset import BadInputError, FaceData
from .fer2013_csv import read_fer_csv
from .folders import available_splits, class_folders, is_class_root, listing, read_folder, split_dir


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
        sig = {"kind": "csv", "path": str(src.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
               "split": split, "px": size, "ch": channels, "classes": run_classes, "skip_bad": skip_bad}
        return cached(sig, lambda: read_fer_csv(src, split, size, channels, run_classes, skip_bad), use_cache)
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is neither a CSV file nor a folder")
    split_root = split_dir(src, split)
    if split_root is None:
        if split in ("all", "train") and is_class_root(src):
            split_root = src
        else:
            splits = available_splits(src)
            raise BadInputError(f"{src} has no {split!r} split; available: {', '.join(splits) or 'none'}"
                                + ("; hold out validation data with --val-fraction" if split == "val" else ""))
    entries, unreadable = listing(class_folders(split_root))
    sig = {"kind": "folder", "path": str(split_root.resolve()), "px": size, "ch": channels, "classes": classes,
           "skip_bad": skip_bad, "unreadable": unreadable,
           "files": [(e.label, str(e.path.relative_to(split_root)), e.size, e.mtime_ns) for e in entries]}
    return cached(sig, lambda: read_folder(split_root, size, channels, classes, skip_bad), use_cache)

