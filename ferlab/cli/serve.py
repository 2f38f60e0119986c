"""`ferlab serve`: the HTTP API and web page."""
from __future__ import annotations

import argparse

from ..serve.config import ServeConfig
from .options import add_options, build


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="HTTP API (POST /predict) and a web page for uploads and webcam snapshots",
        description="Load the model once and serve POST /predict (JSON), POST /predict/annotated (PNG), "
                    "GET /health and the web page at GET / with uvicorn. Interactive API docs are at /docs.")
    add_options(p, ServeConfig)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from ..serve.app import serve

    cfg = build(args, ServeConfig)
    print(f"serving {cfg.model} on http://{cfg.host}:{cfg.port}/ (Ctrl-C stops)", flush=True)
    serve(cfg)
    return 0
