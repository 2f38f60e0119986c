"""The API's request and response models (pydantic), so /openapi.json documents every field,
and the error responses each route can give."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_FACE_EXAMPLE = {"box": [178, 63, 90, 113], "score": 0.9323,
                 "landmarks": [[200.1, 101.8], [247.1, 102.6], [220.4, 124.5], [198.6, 142.8], [239.7, 143.6]],
                 "label": "happy", "probs": {"angry": 0.012, "disgust": 0.001, "fear": 0.02, "happy": 0.91,
                                             "neutral": 0.04, "sad": 0.007, "surprise": 0.01}}


class Face(BaseModel):
    """One face: where it is and what the model thinks of it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_FACE_EXAMPLE]})
    box: tuple[int, int, int, int] = Field(description="x, y, width, height in pixels of the upright image "
                                                       "(EXIF orientation applied)")
    score: float = Field(ge=0, le=1, description="face detector confidence (1.0 when the image was taken as the face)")
    landmarks: list[tuple[float, float]] | None = Field(
        description="five [x, y] points (eyes, nose tip, mouth corners) in the same pixels, or null")
    label: str = Field(description="the most probable class")
    probs: dict[str, float] = Field(description="probability of every class, in the model's class order")


class Prediction(BaseModel):
    """Every face in one image. No face is not an error: `faces` is empty and `note` says why."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"path": "me.jpg", "width": 512, "height": 512, "faces": [_FACE_EXAMPLE], "error": None, "note": None}]})
    path: str | None = Field(description="the uploaded file's name")
    width: int | None = Field(description="width of the upright image in pixels (null when it could not be read)")
    height: int | None = Field(description="height of the upright image in pixels")
    faces: list[Face]
    error: str | None = Field(description="why this image could not be processed (batch records only; a single "
                                          "upload is answered 400/413 instead)")
    note: str | None = Field(description="why no face was found, when none was")


class BatchPrediction(BaseModel):
    """One record per uploaded file, in upload order."""

    results: list[Prediction]


class ImageJSON(BaseModel):
    """An image sent as JSON instead of a multipart file."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"image": "iVBORw0KGgo...", "name": "me.png"}]})
    image: str = Field(description="the image file's bytes, base64-encoded (a data: URL works too)")
    name: str | None = Field(None, max_length=255, description="a name for the record's `path`")


class ModelInfo(BaseModel):
    id: str = Field(description="the model's registry name")
    classes: list[str] = Field(description="the classes, in the order of `probs`")
    preprocessing: dict = Field(description="how a face crop becomes the model's input (size, channels, mean, std, "
                                            "crop margin)")
    detector: dict = Field(description="the face detector and its default options")
    tta: str = Field(description="the test-time augmentation applied to every face: none, flip or flip_shift")
    ferlab: str = Field(description="ferlab version")


class Models(BaseModel):
    models: list[ModelInfo]


class Status(BaseModel):
    status: str


class Error(BaseModel):
    """Every error, whatever the route."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"detail": "me.txt: not an image (format not recognised)", "request_id": "3f2a9c0d41b6e7a8"}]})
    detail: str = Field(description="what was wrong and how to fix it")
    request_id: str | None = Field(None, description="the id in the server's log (also the X-Request-ID header)")


def errors(*codes: int) -> dict:
    """The OpenAPI `responses` entry of the error codes a route can answer."""
    text = {400: "bad request: no image, not an image, invalid options", 401: "missing or wrong API key",
            408: "the request body did not arrive in time", 413: "file, body or image pixels over the limit",
            415: "body is not multipart/form-data or application/json", 500: "unexpected server error (see the log)",
            503: "busy (queue full) or not ready; retry after the Retry-After header's seconds"}
    return {c: {"model": Error, "description": text[c]} for c in codes}
