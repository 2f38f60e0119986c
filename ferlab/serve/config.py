"""Options of `ferlab serve` (torch-free: the CLI is derived from them)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import check, option
from ..predict.config import DetectorConfig

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    model: str = option("default", "checkpoint: a run directory, a .pt file, or a bundled model ('default', 'tiny')")
    host: str = option("127.0.0.1", "address to listen on; 0.0.0.0 for every interface (see the README's warning)")
    port: int = option(8000, "TCP port")
    detector: DetectorConfig = option(factory=DetectorConfig, help="face detection")
    max_bytes: int = option(MAX_UPLOAD_BYTES, "largest accepted upload in bytes (413 above it)")

    def __post_init__(self):
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port must be in 1-65535, got {self.port}")
        if self.max_bytes < 1:
            problems.append(f"max_bytes must be >= 1, got {self.max_bytes}")
        check(self, problems, "serve options")
