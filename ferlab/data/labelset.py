"""Label sets of your own: merge or rename a dataset's classes (`--class-map`), then keep a subset
in a chosen order (`--classes`). Applied in memory after loading, so one decoded cache serves
every label set, and CSV and folder datasets behave the same."""
from __future__ import annotations

import torch

from .. import labels
from .dataset import BadInputError, FaceData


def parse_class_map(text: str) -> tuple[tuple[str, str], ...]:
    """'anger=angry,contempt=disgust' -> (('angry', 'angry'), ('contempt', 'disgust')), canonical names."""
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        old, sep, new = part.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"{part!r} is not OLD=NEW; write e.g. --class-map disgust=angry,contempt=neutral")
        pairs.append((labels.canonical(old), labels.canonical(new)))
    olds = [o for o, _ in pairs]
    if len(set(olds)) != len(olds):
        raise ValueError(f"--class-map names a class twice: {text!r}")
    return tuple(pairs)


def relabel(data: FaceData, class_map: dict[str, str] | tuple = (), classes: list[str] | tuple = (), *,
            what: str = "dataset") -> FaceData:
    """`data` with its classes renamed/merged by `class_map` (old -> new), then restricted to
    `classes` in that order (images of other classes are dropped). Empty `classes` keeps every
    (mapped) class, sorted by name. A name the data does not have is an error listing what it has."""
    mapping = dict(class_map)
    unknown = [old for old in mapping if old not in data.classes]
    if unknown:
        raise BadInputError(f"--class-map names {unknown}, which {what} does not have; its classes: "
                            f"{', '.join(data.classes)}")
    mapped = [mapping.get(c, c) for c in data.classes]
    target = list(classes) if classes else sorted(set(mapped))
    missing = [c for c in target if c not in mapped]
    if missing:
        raise BadInputError(f"classes {missing} are not in {what} (its classes"
                            f"{' after --class-map' if mapping else ''}: {', '.join(sorted(set(mapped)))}); "
                            "fix --classes or map a class onto them with --class-map OLD=NEW")
    if target == list(data.classes) and not mapping:
        return data
    lut = torch.tensor([target.index(m) if m in target else -1 for m in mapped], dtype=torch.int64)
    new = lut[data.labels]
    keep = torch.nonzero(new >= 0).flatten()
    paths = [data.paths[i] for i in keep.tolist()] if data.paths else []
    return FaceData(data.images[keep], new[keep], target, paths, data.skipped, data.source)
