"""The `ferlab train` command line that reproduces a run from its resolved config."""
from __future__ import annotations

import shlex
from dataclasses import fields, is_dataclass

from ..config import default_of
from ..data.augment_config import AugmentRanges
from ..train.config import TrainConfig


def _flag(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def changed_options(config: dict) -> dict[str, object]:
    """The options of `config` (a run's config.yaml) whose value is not `TrainConfig`'s default,
    in the order `TrainConfig` declares them; options this ferlab does not know are left out."""
    out = {}
    for f in fields(TrainConfig):
        if f.name not in config or not f.metadata.get("cli", True):
            continue
        value, default = config[f.name], default_of(f)
        if is_dataclass(default):  # nested options (augmentation ranges) are flags of their own
            out.update({k: v for k, v in (value or {}).items() if v != getattr(default, k, v)})
            continue
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if value != default:
            out[f.name] = value
    return out


def train_command(config: dict) -> str:
    """`ferlab train` with every option of `config` that differs from its default, so the same data,
    architecture and schedule train again."""
    parts = ["ferlab", "train"]
    by_name = {f.name: f for f in fields(TrainConfig)}
    by_name.update({f.name: f for f in fields(AugmentRanges)})
    for name, value in changed_options(config).items():
        f = by_name[name]
        if isinstance(value, bool):
            parts.append(_flag(f) if value else "--no-" + _flag(f)[2:])
        elif isinstance(value, tuple):
            parts += [_flag(f), ",".join(map(str, value))]
        else:
            parts += [_flag(f), str(value)]
    return shlex.join(parts)
