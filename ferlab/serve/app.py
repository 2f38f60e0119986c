"""The HTTP API and web page: a FastAPI app around one model, loaded once when the app is made.

Routes (the README's "Serve it over HTTP" has the table):
- ``GET /healthz`` (alive), ``GET /readyz`` (the model answers one tiny inference),
  ``GET /v1/models`` (id, classes, preprocessing, detector);
- ``POST /v1/predict``: one image, as multipart field ``file`` or JSON ``{"image": "<base64>"}``,
  with the detector options ``threshold``, ``min_face`` and ``largest`` as query parameters ->
  a `schemas.Prediction`; ``POST /v1/predict/batch``: several ``file`` fields -> one record each;
  ``POST /v1/predict/annotated``: the image with boxes and a legend of probabilities, as PNG;
- ``GET /``: the web page (``web/index.html``); ``/docs`` and ``/redoc`` (`docs`);
- the old ``POST /predict``, ``POST /predict/annotated`` and ``GET /health`` still answer.

Every error is a JSON `schemas.Error` with the request id that the log shows (400, 401, 408, 413,
415, 500, 503; never 422). Limits and the API key are enforced by `guard.Guard` before a route runs.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..checkpoint import Loaded
from ..config import to_dict
from ..predict.config import DetectorConfig
from . import schemas
from .config import ServeConfig, ServeLimits
from .decode import UploadError, decode_base64
from .docs import add_docs
from .engine import Engine, error_record
from .guard import Guard

log = logging.getLogger("ferlab.serve")
_IMAGE_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/json": {"schema": schemas.ImageJSON.model_json_schema()}}}
_BATCH_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}
_PNG = {200: {"content": {"image/png": {}}, "description": "the image with a numbered box per face and, beside "
                                                            "it, each face's probabilities; header X-Ferlab-Faces "
                                                            "gives the count"}}
_RECOGNITION_ERRORS = schemas.errors(400, 401, 408, 413, 415, 500, 503)
_THRESHOLD = Query(None, description="minimum face detector score, in (0, 1) (default: the server's)")
_MIN_FACE = Query(None, description="ignore faces narrower than this many pixels (default: the server's)")
_LARGEST = Query(None, description="keep only the largest face (default: the server's)")


def create_app(model: str | Path | Loaded = "default", detector: DetectorConfig | str = "yunet", *,
               limits: ServeLimits = ServeLimits(), threads: int = ServeConfig.threads, api_key: str | None = None,
               cors_origins: tuple[str, ...] = (), device: str = "auto", tta: str = "none") -> FastAPI:
    """A FastAPI app serving `model` (a checkpoint reference or a `Loaded`) with the face detector
    `detector` (a `DetectorConfig` or a detector name); `api_key` None needs no key; `tta` as in
    `Recognizer`."""
    from .. import __version__

    detector = DetectorConfig(name=detector) if isinstance(detector, str) else detector
    engine = Engine(model, detector, threads=threads, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
                    device=device, tta=tta)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        engine.close()

    app = FastAPI(title="ferlab", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Facial expression recognition: the faces in a photo, their boxes and expression "
                              "probabilities.")
    app.state.engine, app.state.recognizer = engine, engine.base
    model_info = schemas.ModelInfo(id=engine.loaded.model_name, classes=engine.classes,
                                   preprocessing=engine.base.preprocess.to_dict(), detector=to_dict(detector),
                                   tta=engine.base.tta, ferlab=__version__)
    _add_error_handlers(app)

    @app.get("/healthz", response_model=schemas.Status, tags=["health"])
    async def healthz() -> dict:
        """The server process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=schemas.Status, tags=["health"], responses=schemas.errors(503))
    async def readyz() -> dict:
        """The model is loaded and answers one tiny inference (503 while it cannot, within 10 s)."""
        try:
            await asyncio.wait_for(engine.ready(), 10)
        except asyncio.TimeoutError:
            raise UploadError(503, "not ready: the model did not answer within 10 s") from None
        return {"status": "ready"}

    @app.get("/v1/models", response_model=schemas.Models, tags=["models"], responses=schemas.errors(401))
    async def models() -> dict:
        """The model this server runs: its classes, preprocessing and face detector."""
        return {"models": [model_info]}

    async def predict_one(request: Request, threshold, min_face, largest, annotate: bool):
        options = engine.options(threshold, min_face, largest)
        name, data = await _image_of(request)
        return await engine.recognise(name, data, options, annotate)

    @app.post("/v1/predict", response_model=schemas.Prediction, tags=["predict"], responses=_RECOGNITION_ERRORS,
              openapi_extra={"requestBody": _IMAGE_BODY})
    async def predict(request: Request, threshold: float | None = _THRESHOLD, min_face: int | None = _MIN_FACE,
                      largest: bool | None = _LARGEST) -> dict:
        """Every face in one image, with its box, landmarks and class probabilities."""
        return (await predict_one(request, threshold, min_face, largest, annotate=False)).record

    @app.post("/v1/predict/annotated", response_class=Response, tags=["predict"],
              responses={**_PNG, **_RECOGNITION_ERRORS}, openapi_extra={"requestBody": _IMAGE_BODY})
    async def predict_annotated(request: Request, threshold: float | None = _THRESHOLD,
                                min_face: int | None = _MIN_FACE, largest: bool | None = _LARGEST) -> Response:
        """The image with a numbered box per face and a legend of probabilities beside it, as PNG."""
        res = await predict_one(request, threshold, min_face, largest, annotate=True)
        return Response(res.png, media_type="image/png", headers={"X-Ferlab-Faces": str(len(res.record["faces"]))})

    @app.post("/v1/predict/batch", response_model=schemas.BatchPrediction, tags=["predict"],
              responses=_RECOGNITION_ERRORS, openapi_extra={"requestBody": _BATCH_BODY})
    async def predict_batch(request: Request, threshold: float | None = _THRESHOLD, min_face: int | None = _MIN_FACE,
                            largest: bool | None = _LARGEST) -> dict:
        """Several images (repeated multipart field `file`): one record each, in order; a file that
        cannot be read gets a record whose `error` says why."""
        options = engine.options(threshold, min_face, largest)
        form = await request.form(max_files=limits.max_batch + 1)
        files = [f for key in ("file", "files") for f in form.getlist(key)]
        if not files:
            raise UploadError(400, "no file uploaded; send the images as repeated multipart fields 'file'")
        if not all(isinstance(f, UploadFile) for f in files):
            raise UploadError(400, "every 'file' field of a batch must be a file, not text")
        if len(files) > limits.max_batch:
            raise UploadError(400, f"{len(files)} images; a batch takes at most {limits.max_batch}")
        results = []
        for i, f in enumerate(files):
            name = _name(f, f"upload-{i + 1}")
            try:
                data = await _read(f, name)
                results.append((await engine.recognise(name, data, options)).record)
            except UploadError as e:
                results.append(error_record(name, e))
        return {"results": results}

    @app.post("/predict", response_model=schemas.Prediction, tags=["old routes"], deprecated=True,
              responses=_RECOGNITION_ERRORS, openapi_extra={"requestBody": _IMAGE_BODY})
    async def predict_old(request: Request) -> dict:
        """The same as POST /v1/predict."""
        return (await predict_one(request, None, None, None, annotate=False)).record

    @app.post("/predict/annotated", response_class=Response, tags=["old routes"], deprecated=True,
              responses={**_PNG, **_RECOGNITION_ERRORS}, openapi_extra={"requestBody": _IMAGE_BODY})
    async def predict_annotated_old(request: Request) -> Response:
        """The same as POST /v1/predict/annotated."""
        return await predict_annotated(request, None, None, None)

    @app.get("/health", tags=["old routes"], deprecated=True, responses=schemas.errors(401))
    async def health() -> dict:
        """Model name, classes, preprocessing and detector name (see GET /v1/models)."""
        return {"status": "ok", "model": model_info.id, "classes": model_info.classes,
                "preprocess": model_info.preprocessing, "detector": detector.name, "ferlab": __version__}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(web_page())

    add_docs(app)
    app.openapi = lambda: _openapi(app, api_key is not None)
    app.add_middleware(Guard, limits=limits, api_key=api_key)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "X-Ferlab-Faces"])
    return app


async def _image_of(request: Request) -> tuple[str, bytes]:
    """The one image of a multipart (field `file`) or JSON (`schemas.ImageJSON`) request."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = schemas.ImageJSON.model_validate_json(await request.body())
        except ValidationError as e:
            raise UploadError(400, "send JSON {\"image\": \"<base64>\", \"name\": \"optional\"} ("
                                   + "; ".join(f"{'.'.join(map(str, x['loc'])) or 'body'}: {x['msg']}"
                                               for x in e.errors()) + ")") from None
        name = body.name or "upload"
        return name, decode_base64(body.image)
    form = await request.form(max_files=1)
    file = form.get("file")
    if file is None:
        raise UploadError(400, "no file uploaded; send the image as the multipart form field 'file'")
    name = _name(file, "upload")
    return name, await _read(file, name)


def _name(file, default: str) -> str:
    return (file.filename or default)[:255] if isinstance(file, UploadFile) else default


async def _read(file, name: str) -> bytes:
    if not isinstance(file, UploadFile):
        raise UploadError(400, f"{name}: the form field 'file' must be a file, not text")
    return await file.read()


def _add_error_handlers(app: FastAPI) -> None:
    def error(request: Request, status: int, detail: str, headers: dict | None = None) -> JSONResponse:
        rid = getattr(request.state, "request_id", None)
        return JSONResponse({"detail": detail, "request_id": rid}, status_code=status,
                            headers={**(headers or {}), **({"X-Request-ID": rid} if rid else {})})

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        return error(request, exc.status, exc.detail, {"Retry-After": "1"} if exc.status == 503 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(request, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error(request, 400, f"invalid request ({problems})")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        rid = getattr(request.state, "request_id", None)
        log.error("request %s (%s %s) failed", rid, request.method, request.url.path, exc_info=exc)
        return error(request, 500, f"internal error (request id {rid}: the server's log has the details)")


def _openapi(app: FastAPI, keyed: bool) -> dict:
    """FastAPI's schema without its 422 answers (validation errors are 400 here), with the API key."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path, ops in spec["paths"].items():
            for op in ops.values():
                op["responses"].pop("422", None)
                if keyed and (path.startswith("/v1/") or path in ("/predict", "/predict/annotated", "/health")):
                    op["security"] = [{"APIKey": []}]
        components = spec.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        if keyed:
            components["securitySchemes"] = {"APIKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
        app.openapi_schema = spec
    return app.openapi_schema


def web_page() -> str:
    return (resources.files("ferlab.serve") / "web" / "index.html").read_text(encoding="utf-8")

