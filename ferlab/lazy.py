"""Lazy package exports (PEP 562): `ferlab.train.fit` works, yet importing `ferlab.train.config`
to build the command line does not import torch through the package's `__init__`."""
from __future__ import annotations

from importlib import import_module


def exports(package: str, names: dict[str, str]):
    """A module `__getattr__` that imports `names[attr]` (a submodule of `package`) on first use."""

    def __getattr__(attr: str):
        if attr in names:
            return getattr(import_module(f"{package}.{names[attr]}"), attr)
        raise AttributeError(f"module {package!r} has no attribute {attr!r}")

    return __getattr__
