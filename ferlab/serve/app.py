"""The HTTP API and web page: a FastAPI app around one Recognizer, loaded once when the app is made.

Endpoints:
- ``POST /predict``: multipart field ``file`` (an image) -> the JSON record `ferlab predict --json`
  writes: ``{"path", "faces": [{"box", "score", "landmarks", "label", "probs"}], "error"}``.
- ``POST /predict/annotated``: the same upload -> the image with boxes and probability bars, as PNG.
- ``GET /health``: model name, classes, preprocessing and detector.
- ``GET /``: a single-page web UI (``ferlab/serve/web/index.html``): upload or webcam snapshot.

Uploads that are empty or not an image get 400, larger than `max_bytes` (20 MB) 413, each with a
``detail`` message that says which.
"""
from __future__ import annotations

import io
import threading
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..checkpoint import Loaded
from ..predict.config import DetectorConfig
from .config import MAX_UPLOAD_BYTES, ServeConfig

#: Room for the multipart boundary and part headers around the file in a request's Content-Length.
_MULTIPART_OVERHEAD = 64 * 1024


def create_app(model: str | Path | Loaded = "default", detector: DetectorConfig | str = "yunet", *,
               max_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """A FastAPI app serving `model` (a checkpoint reference or a `Loaded`) with the face detector
    `detector` (a `DetectorConfig` or a detector name)."""
    from .. import __version__
    from ..predict.recognizer import Recognizer

    detector = DetectorConfig(name=detector) if isinstance(detector, str) else detector
    recognizer = Recognizer(model, detector)
    # One recognizer serves every request; its detector keeps per-call state (OpenCV's YuNet
    # input size), so requests take turns.
    lock = threading.Lock()
    loaded = recognizer.loaded
    app = FastAPI(title="ferlab", version=__version__,
                  description="Facial expression recognition: faces, their boxes and expression probabilities.")
    app.state.recognizer = recognizer

    @app.exception_handler(RequestValidationError)
    async def bad_form(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": "send the image as a file in the multipart form field 'file' "
                                       f"({'; '.join(e['msg'] for e in exc.errors())})"}, status_code=400)

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        # Answer from the declared length, before the multipart parser spools the body to disk.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes + _MULTIPART_OVERHEAD:
            return JSONResponse({"detail": f"upload too large ({_mb(int(length))}); the limit is {_mb(max_bytes)}"},
                                status_code=413)
        return await call_next(request)

    def read_upload(file: UploadFile | None) -> tuple[str, np.ndarray]:
        if file is None:
            raise HTTPException(400, "no file uploaded; send the image as the multipart form field 'file'")
        name = file.filename or "upload"
        data = file.file.read(max_bytes + 1)
        if not data:
            raise HTTPException(400, f"{name}: the upload is empty")
        if len(data) > max_bytes:
            raise HTTPException(413, f"{name}: upload too large (over the limit of {_mb(max_bytes)})")
        return name, decode_image(name, data)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": loaded.model_name, "classes": recognizer.classes,
                "preprocess": recognizer.preprocess.to_dict(), "detector": detector.name, "ferlab": __version__}

    @app.post("/predict")
    def predict(file: UploadFile | None = File(None)) -> dict:
        """Faces in the uploaded image, as one `ferlab predict --json` record."""
        name, rgb = read_upload(file)
        with lock:
            return recognizer.predict(rgb, name=name).to_dict()

    @app.post("/predict/annotated", response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the annotated image"}})
    def predict_annotated(file: UploadFile | None = File(None)) -> Response:
        """The uploaded image with a box, label and probability bars per face, as PNG."""
        from PIL import Image

        from ..predict.annotate import draw_faces

        name, rgb = read_upload(file)
        with lock:
            res = recognizer.predict(rgb, name=name)
        img = draw_faces(rgb, [f.box for f in res.faces], [f.probs for f in res.faces], recognizer.classes,
                         note=None if res.faces else "no face found")
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png", headers={"X-Ferlab-Faces": str(len(res.faces))})

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(web_page())

    return app


def _mb(n: int) -> str:
    return f"{n / 2**20:.3g} MB"


def decode_image(name: str, data: bytes) -> np.ndarray:
    """Uploaded bytes -> upright HxWx3 uint8 RGB, or HTTP 400 saying why not."""
    from ..predict.images import read_image

    try:
        return read_image(io.BytesIO(data))
    except ValueError as e:
        raise HTTPException(400, f"{name}: {e}; upload a JPEG, PNG, BMP, WebP or TIFF image") from None


def web_page() -> str:
    return (resources.files("ferlab.serve") / "web" / "index.html").read_text(encoding="utf-8")


def serve(cfg: ServeConfig) -> None:
    """Load the model and run the app with uvicorn until interrupted."""
    import uvicorn

    app = create_app(cfg.model, cfg.detector, max_bytes=cfg.max_bytes)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
