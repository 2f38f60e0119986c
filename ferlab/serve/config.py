"""Options of `ferlab serve` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import check, option
from ..predict.config import DetectorConfig, PredictTTA

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: The environment variable read for the API key when --api-key is not given.
API_KEY_ENV = "FERLAB_API_KEY"


@dataclass(frozen=True)
class ServeLimits:
    """What one server process accepts at once; each limit answers with a JSON error, never a hang."""

    max_bytes: int = option(MAX_UPLOAD_BYTES, "largest accepted image file in bytes, and largest request body "
                                              "(a batch shares it); 413 above it, reading stops at the limit")
    max_pixels: int = option(50_000_000, "largest accepted image in pixels (width x height, read from the file's "
                                         "header before decoding); 413 above it", metavar="N")
    max_queue: int = option(8, "requests recognised or waiting at once per worker; more get 503 with Retry-After",
                            metavar="N")
    max_connections: int = option(64, "open connections per worker; more get 503", metavar="N")
    body_timeout: float = option(20.0, "seconds a request body may take to arrive; 408 after", metavar="S")
    max_batch: int = option(16, "images per POST /v1/predict/batch", metavar="N")

    def __post_init__(self):
        problems = []
        for name in ("max_bytes", "max_pixels", "max_queue", "max_connections", "max_batch"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.body_timeout > 0:
            problems.append(f"body_timeout must be > 0, got {self.body_timeout}")
        check(self, problems, "serve limits")


@dataclass(frozen=True)
class ServeConfig:
    model: str = option("default", "checkpoint: a run directory, a .pt file, or a bundled model ('default', 'tiny')")
    host: str = option("127.0.0.1", "address to listen on; 0.0.0.0 for every interface (see the README's warning)")
    port: int = option(8000, "TCP port (0: any free port, printed on startup)")
    detector: DetectorConfig = option(factory=DetectorConfig, help="face detection")
    limits: ServeLimits = option(factory=ServeLimits, help="request limits")
    device: str = option("auto", "where the model runs: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    # Server-wide, not per request: a client that could ask for 10 views per face would multiply
    # the server's work by 10 past every limit below.
    tta: PredictTTA = option(
        "none", "test-time augmentation of each face, for every request: flip (2x the classifier's work), "
                "flip_shift (10x; the bundled default's recorded TTA), auto (the checkpoint's recorded one)")
    workers: int = option(1, "server processes, each with its own copy of the model", metavar="N")
    threads: int = option(2, "images recognised in parallel per worker, each by its own face detector "
                             "(the model is shared)", metavar="N")
    api_key: str | None = option(None, "require this key (header X-API-Key or Authorization: Bearer) on every "
                                       f"/v1 route; default: ${API_KEY_ENV}, else no key", metavar="KEY")
    cors_origin: tuple[str, ...] = option((), "let pages from these origins call the API from a browser (CORS); "
                                              "default: none", metavar="ORIGIN,...")

    def __post_init__(self):
        problems = []
        if not 0 <= self.port < 65536:
            problems.append(f"port must be in 0-65535, got {self.port}")
        if self.workers < 1:
            problems.append(f"workers must be >= 1, got {self.workers}")
        if self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads}")
        if self.api_key is not None and not self.api_key.strip():
            problems.append("api_key must not be empty")
        if "*" in self.cors_origin and len(self.cors_origin) > 1:
            problems.append("cors_origin '*' allows every origin; give it alone")
        check(self, problems, "serve options")
