"""The one place that names expression classes.

Every dataset adapter maps its own codes or folder names into canonical names through the tables
here; no other module spells a label.
"""
from __future__ import annotations

#: The seven basic expressions in the order ferlab uses for FER2013 runs (alphabetical, which is
#: also the order of the Kaggle image-folder layout).
FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: FER2013's CSV codes (emotion column) are NOT alphabetical: 4 is sad and 6 is neutral.
FER2013_CSV_CODES: dict[int, str] = {
    0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}

#: FER2013 CSV `Usage` column -> ferlab split names.
FER2013_USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}

#: Spellings seen in other datasets' folder names -> canonical names. Names not listed here are
#: kept as they are (lower-cased), so a dataset can bring its own classes such as "pain".
ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy",
    "neutral": "neutral", "calm": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "contempt": "contempt",
}


def canonical(name: str) -> str:
    """Map a dataset's class name (folder name, label string) to ferlab's canonical spelling."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if not key:
        raise ValueError("empty class name")
    return ALIASES.get(key, key)


def fer2013_code_to_name(code: int) -> str:
    """Name of a FER2013 CSV emotion code; raises with the valid codes for anything else."""
    try:
        return FER2013_CSV_CODES[int(code)]
    except (KeyError, ValueError):
        raise ValueError(
            f"unknown FER2013 emotion code {code!r}; valid codes are "
            + ", ".join(f"{k}={v}" for k, v in FER2013_CSV_CODES.items())
        ) from None


def index_map(source: list[str] | tuple[str, ...], target: list[str] | tuple[str, ...]) -> list[int]:
    """For each canonical name in `source`, its index in `target`.

    Raises naming every source class the target label set does not know, so a dataset whose
    folders do not match a checkpoint's classes fails loudly instead of silently mislabelling.
    """
    missing = [s for s in source if s not in target]
    if missing:
        raise ValueError(
            f"classes {missing} are not in the label set {list(target)}; rename the folders or "
            "train a model with these classes"
        )
    return [list(target).index(s) for s in source]
