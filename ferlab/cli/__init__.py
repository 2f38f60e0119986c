"""`ferlab` command line. Each verb lives in a small module of this package that derives its
options from the verb's config dataclass (`options`), calls one library function and prints;
this file assembles them. Building the parser imports neither torch nor OpenCV."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that each define `add_parsers(subparsers)`; every parser sets `func(args) -> int`.
VERB_MODULES = ["models", "train", "augment_preview", "evaluate", "predict", "explain", "report", "export", "serve", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferlab", description="Facial expression recognition toolkit.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in VERB_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"ferlab {args.verb}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, RuntimeError, OSError) as e:
        # Library errors are written for users: print them plainly, no traceback.
        print(f"ferlab {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
