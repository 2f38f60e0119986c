"""`ferlab serve`: the HTTP API and web page."""
from __future__ import annotations

import argparse

from ..serve.config import ServeConfig
from .options import add_options, build


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="HTTP API (POST /v1/predict) and a web page for uploads and webcam snapshots",
        description="Load the model once and serve the API (POST /v1/predict, /v1/predict/batch, "
                    "/v1/predict/annotated; GET /v1/models, /healthz, /readyz) and the web page at GET / with "
                    "uvicorn. API docs are at /docs and /redoc. Listens on 127.0.0.1 unless --host says otherwise.")
    add_options(p, ServeConfig)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from ..serve.server import serve

    cfg = build(args, ServeConfig)
    serve(cfg, ready=lambda url: print(f"serving {cfg.model} on {url} (Ctrl-C stops)", flush=True))
    return 0
