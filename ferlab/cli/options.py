"""Derive argparse options from the typed config dataclass, so options are defined once."""
from __future__ import annotations

import argparse
from typing import Literal, get_args, get_origin

from ..config import config_fields


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per TrainConfig field. Defaults are None so that only options given on the
    command line override the recipe and config file; the help shows the built-in default."""
    for name, typ, default, help_ in config_fields():
        flag = "--" + name.replace("_", "-")
        text = f"{help_} (default: {default!r})"
        if typ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif get_origin(typ) is Literal:
            parser.add_argument(flag, choices=get_args(typ), default=None, help=text)
        elif get_origin(typ) is tuple:
            parser.add_argument(flag, default=None, metavar="A,B,...", help=text)
        else:
            parser.add_argument(flag, type=typ, default=None, help=text)


def config_overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name, *_ in config_fields() if getattr(args, name, None) is not None}
