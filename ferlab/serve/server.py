"""`ferlab serve`: load the model, bind the port, say so, and run uvicorn (one process or several).

The order is what makes the startup line true: the model is loaded first (a bad checkpoint fails
before anything listens), then the socket is bound here (a port in use or an invalid address is
a one-line error), and only then is `ready(url)` called. With `workers` > 1 the socket is shared
by that many uvicorn processes, each of which loads its own copy of the model.
"""
from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Callable

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from ..config import to_dict
from ..predict.config import DetectorConfig
from .config import API_KEY_ENV, ServeConfig, ServeLimits
from .guard import overloaded

#: Where the parent hands a worker process its configuration (workers > 1).
_WORKER_ENV = "FERLAB_SERVE_WORKER_CONFIG"


def serve(cfg: ServeConfig, ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; `ready(url)` is called once the port is bound and the model loaded."""
    api_key = cfg.api_key or os.environ.get(API_KEY_ENV) or None
    _share_cores(cfg)
    if cfg.workers == 1:
        app = _app(cfg, api_key)
    else:
        _check_model(cfg)
        os.environ[_WORKER_ENV] = json.dumps({**to_dict(cfg), "api_key": api_key})
        app = f"{__name__}:worker_app"
    sock = _bind(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    config = uvicorn.Config(app, factory=cfg.workers > 1, workers=cfg.workers, http=_Protocol,
                            limit_concurrency=cfg.limits.max_connections + 1, timeout_keep_alive=5,
                            log_config=_log_config(), access_log=True)
    try:
        if cfg.workers == 1:
            _Server(config, lambda: ready and ready(url)).run(sockets=[sock])
        else:
            if ready:
                ready(url)
            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def worker_app():
    """The app of one worker process (uvicorn's factory, workers > 1)."""
    d = json.loads(os.environ[_WORKER_ENV])
    cfg = ServeConfig(**{**d, "detector": DetectorConfig(**d["detector"]), "limits": ServeLimits(**d["limits"]),
                         "cors_origin": tuple(d["cors_origin"])})
    _share_cores(cfg)
    return _app(cfg, d["api_key"])


def _app(cfg: ServeConfig, api_key: str | None):
    from .app import create_app

    return create_app(cfg.model, cfg.detector, limits=cfg.limits, threads=cfg.threads, api_key=api_key,
                      cors_origins=cfg.cors_origin, device=cfg.device, tta=cfg.tta)


def _check_model(cfg: ServeConfig) -> None:
    from .. import checkpoint
    from ..predict.detect import make_detector

    checkpoint.load(cfg.model)
    make_detector(cfg.detector)


def _share_cores(cfg: ServeConfig) -> None:
    """One intra-op thread per recognising thread: requests, not layers, run in parallel."""
    import cv2
    import torch

    n = max(1, (os.cpu_count() or 1) // (cfg.threads * cfg.workers))
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _log_config() -> dict:
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["ferlab.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return log_config


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering past the connection cap with the API's JSON 503
    (uvicorn's own answer there is plain text)."""

    def _start_asgi_task(self, cycle, app):
        super()._start_asgi_task(cycle, overloaded if app is service_unavailable else app)


class _Server(uvicorn.Server):
    """A uvicorn server that calls `on_started()` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]):
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            self.on_started()
