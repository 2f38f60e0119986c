"""The HTTP API and web page: `app` (the FastAPI app around one Recognizer), `config` (the
verb's options, torch-free) and `web/index.html` (the page)."""
from ..lazy import exports

_API = {"create_app": "app", "serve": "app", "decode_image": "app", "ServeConfig": "config", "MAX_UPLOAD_BYTES": "config"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
