"""`ferlab serve`: the HTTP API and web page."""
from __future__ import annotations

import argparse

from ..detect import DETECTORS


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="HTTP API (POST /predict) and a web page for uploads and webcam snapshots",
        description="Load the model once and serve POST /predict (JSON), POST /predict/annotated (PNG), "
                    "GET /health and the web page at GET / with uvicorn. Interactive API docs are at /docs.")
    p.add_argument("--model", default="default",
                   help="checkpoint file, run directory or 'default' (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every interface "
                   "(default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    p.add_argument("--detector", default="yunet", choices=DETECTORS, help="face detector (default: %(default)s)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from ..serve import serve

    print(f"serving {args.model} on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    serve(args.model, host=args.host, port=args.port, detector=args.detector)
    return 0
