"""`ferlab` command line. Each verb lives in a small module of this package that only parses
arguments, calls one library function and prints; this file just assembles them."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that each define `add_parsers(subparsers)`; every parser sets `func(args) -> int`.
VERB_MODULES = ["models", "train", "evaluate", "predict", "export", "bench", "explain", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferlab", description="Facial expression recognition toolkit.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in VERB_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue  # verb module not written yet
            raise
        mod.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError, OSError) as e:
        # Library errors are written for users: print them plainly, no traceback.
        print(f"ferlab {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
