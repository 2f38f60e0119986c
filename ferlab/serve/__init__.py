"""The HTTP API and web page: `app` (the FastAPI app), `engine` (where images are recognised),
`guard` (limits and the API key, in front of the app), `decode` (bounded image decoding),
`schemas` (the typed requests and responses), `docs` (offline API docs), `server` (uvicorn, one
process or several), `config` (the verb's options, torch-free) and `web/index.html` (the page)."""
from ..lazy import exports

_API = {"create_app": "app", "serve": "server", "ServeConfig": "config", "ServeLimits": "config",
        "MAX_UPLOAD_BYTES": "config"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
