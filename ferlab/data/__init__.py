"""Data: FER2013 as CSV or folders, your own folder-per-class datasets, the decoded uint8 cache,
stratified splits and batched augmentation. Every source becomes a `FaceData`.

Submodules: `loader` (load), `dataset` (FaceData, errors, splits), `fer2013_csv`, `folders`,
`cache`, `labelset` (class maps and subsets), `augment_config` (presets, torch-free) and `augment` (the batched tensor ops).
"""
from ..lazy import exports

_API = {"load": "loader", "FaceData": "dataset", "BadInputError": "dataset", "stratified_split": "dataset",
        "available_splits": "folders", "IMAGE_EXTS": "folders", "cache_dir": "cache", "relabel": "labelset",
        "parse_class_map": "labelset"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
