"""Command-line options derived from a verb's config dataclass, by field type, so that every
option is declared once (in the config) and means the same in every verb.

Defaults are `argparse.SUPPRESS`: only the options given on the command line reach the config,
so a recipe or config file is overridden by exactly what the user typed, and the help shows the
config's own default.
"""
from __future__ import annotations

import argparse
import types
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Union, get_args, get_origin, get_type_hints

from ..config import default_of, literal_choices


def add_options(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = (), _prefix: str = "") -> None:
    """One argument per field of the dataclass `cls` (nested dataclasses are flattened)."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        typ = hints[f.name]
        dest = _prefix + f.name
        if is_dataclass(typ):
            add_options(parser, typ, skip=skip, _prefix=dest + ".")
            continue
        meta = f.metadata
        default = default_of(f)
        shown = "" if default in (None, (), "") else f" (default: {_show(default)})"
        kw: dict = {"help": (meta.get("help", "") + shown).replace("%", "%%"), "default": argparse.SUPPRESS}
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if meta.get("const") is not None:
            kw.update(nargs="?", const=meta["const"])
        base, optional = _unwrap(typ)
        choices = literal_choices(typ)
        if meta.get("positional"):
            if get_origin(base) is tuple:
                kw["nargs"] = "*"
                kw["type"] = _parser(meta.get("parse") or get_args(base)[0])
            else:
                kw["type"] = _parser(meta.get("parse") or base)
                if default not in (None, ""):
                    kw["nargs"] = "?"
            kw["metavar"] = kw.get("metavar", f.name.upper())
            parser.add_argument(dest, **kw)
            continue
        flags = [meta.get("flag") or "--" + f.name.replace("_", "-"), *meta.get("aliases", ())]
        if meta.get("aliases"):
            kw["help"] += f" [old spelling{'s' if len(meta['aliases']) > 1 else ''} {', '.join(meta['aliases'])}]"
        if base is bool:
            parser.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, **kw)
        elif choices:
            parser.add_argument(*flags, dest=dest, choices=choices, **kw)
        elif meta.get("parse"):
            kw.setdefault("metavar", f.name.upper())
            parser.add_argument(*flags, dest=dest, type=_parser(meta["parse"]), **kw)
        elif get_origin(base) is tuple:
            elem = get_args(base)[0]
            kw.setdefault("metavar", "A,B,...")
            parser.add_argument(*flags, dest=dest, type=_comma_list(elem), **kw)
        else:
            kw.setdefault("metavar", f.name.upper())
            parser.add_argument(*flags, dest=dest, type=Path if base is Path else base, **kw)


def given(args: argparse.Namespace, cls, *, _prefix: str = "") -> dict:
    """The fields of `cls` that were given on the command line, nested configs as dicts."""
    values = vars(args)
    out = {}
    hints = get_type_hints(cls)
    for f in fields(cls):
        dest = _prefix + f.name
        if is_dataclass(hints[f.name]):
            sub = given(args, hints[f.name], _prefix=dest + ".")
            if sub:
                out[f.name] = sub
        elif dest in values:
            out[f.name] = values[dest]
    return out


def build(args: argparse.Namespace, cls, **extra):
    """An instance of `cls` from the given options (nested configs built too) and `extra`."""
    values = {**given(args, cls), **extra}
    hints = get_type_hints(cls)
    for name, v in list(values.items()):
        if is_dataclass(hints.get(name)) and isinstance(v, dict):
            values[name] = hints[name](**v)
    return cls(**values)


def _unwrap(typ):
    """`X | None` -> (X, True); anything else -> (typ, False)."""
    if get_origin(typ) in (Union, types.UnionType):
        args = [a for a in get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return typ, False


def _parser(fn):
    """A config's parse function, its ValueError message shown by argparse as it is."""
    def parse(text: str):
        try:
            return fn(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = getattr(fn, "__name__", "value")
    return parse


def _comma_list(elem):
    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            return tuple(elem(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {elem.__name__}") from None

    return parse


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)

