"""The one convention for every verb's typed config: frozen dataclasses whose fields are declared
with `option(default, "help")`.

`ferlab.cli.options` derives each verb's command-line flags from these fields by their types
(bool, int, float, str, Literal choices, tuples, `X | None`, nested configs), so a default and its
help are written once. This module imports neither torch nor OpenCV: building the CLI stays fast.
"""
from __future__ import annotations

from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints


def option(default: Any = MISSING, help: str = "", *, factory=None, flag: str | None = None,
           aliases: tuple[str, ...] = (), positional: bool = False, metavar: str | None = None,
           parse=None, cli: bool = True, const: Any = None):
    """A config field with its help text.

    flag: the command-line spelling when it is not `--field-name`; aliases: old spellings kept
    working (deprecated); positional: a positional argument (tuples take any number); parse: a
    function str -> value for the CLI; cli=False keeps the field off the command line; const: the
    value of the flag given without one (`--pretrained` alone)."""
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "positional": positional, "metavar": metavar,
            "parse": parse, "cli": cli, "const": const}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def literal_problems(cfg) -> list[str]:
    """One message per Literal-typed field whose value is not among its choices."""
    problems = []
    hints = get_type_hints(type(cfg))
    for f in fields(cfg):
        choices = literal_choices(hints[f.name])
        value = getattr(cfg, f.name)
        if choices and value not in choices and not (value is None and type(None) in get_args(hints[f.name])):
            problems.append(f"{f.name} must be one of {list(choices)}, got {getattr(cfg, f.name)!r}")
    return problems


def literal_choices(typ) -> tuple | None:
    """The choices of `Literal[...]` (also inside `X | None`), else None."""
    if get_origin(typ) is Literal:
        return get_args(typ)
    args = [a for a in get_args(typ) if a is not type(None)]
    if len(args) == 1 and get_origin(args[0]) is Literal:
        return get_args(args[0])
    return None


def check(cfg, problems: list[str], what: str) -> None:
    """Raise one ValueError listing every problem (Literal choices included) of a config."""
    problems = literal_problems(cfg) + problems
    if problems:
        raise ValueError(f"invalid {what}:\n  " + "\n  ".join(problems))


def default_of(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def to_dict(cfg) -> dict:
    """A config as plain data (nested configs as dicts, tuples as lists), for YAML and JSON."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = to_dict(v) if is_dataclass(v) else list(v) if isinstance(v, tuple) else v
    return out


def index_list(text: str) -> tuple[int, ...]:
    """'0-7,12' -> (0, 1, ..., 7, 12): channel or filter indices on the command line."""
    out = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a list of indices such as 0-7,12") from None
    return tuple(out)
