"""The HTTP API in-process (TestClient): routes, records, options, errors, the API key and CORS.
A real server process is tested in test_serve_process.py, the page in test_serve_browser.py."""
from __future__ import annotations

import base64
import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import save_checkpoint
from ferlab.labels import FER2013_CLASSES
from ferlab.predict import Recognizer
from ferlab.preprocess import Preprocess
from ferlab.serve import MAX_UPLOAD_BYTES, ServeLimits, create_app
from ferlab.serve.decode import UploadError
from ferlab.serve.engine import PixelBudget

testclient = pytest.importorskip("fastapi.testclient")
skdata = pytest.importorskip("skimage.data")

FACE_X, FACE_Y = (178, 268), (63, 176)  # the astronaut's face in the 512x512 image


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", preprocess=Preprocess(crop_margin=0.1))


@pytest.fixture(scope="module")
def client(ckpt):
    with testclient.TestClient(create_app(str(ckpt))) as c:
        yield c


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A generated 48x48 grayscale 'face crop': small images skip detection, as in `ferlab predict`."""
    yy, xx = np.mgrid[:48, :48]
    img = 80 + 100 * np.exp(-((xx - 24) ** 2 + (yy - 22) ** 2) / 200)
    img[16:19, 14:20] = img[16:19, 28:34] = 30  # eyes
    img[32:34, 18:30] = 40  # mouth
    return img.astype(np.uint8)


def _centre(face: dict) -> tuple[float, float]:
    x, y, w, h = face["box"]
    return x + w / 2, y + h / 2


def test_health_models_and_ready_describe_the_checkpoint(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "fernet_tiny" and h["classes"] == list(FER2013_CLASSES)
    assert Preprocess.from_dict(h["preprocess"]) == Preprocess(crop_margin=0.1) and h["detector"] == "yunet"
    (m,) = client.get("/v1/models").json()["models"]
    assert m["id"] == "fernet_tiny" and m["classes"] == list(FER2013_CLASSES)
    assert Preprocess.from_dict(m["preprocessing"]) == Preprocess(crop_margin=0.1)
    assert m["detector"]["name"] == "yunet" and m["detector"]["threshold"] == 0.75
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_predict_face_crop_is_the_predict_json_record(client, ckpt, face):
    for path in ("/v1/predict", "/predict"):  # the old route is an alias
        r = client.post(path, files={"file": ("face.png", _png(face), "image/png")})
        assert r.status_code == 200
        record = r.json()
        assert set(record) == {"path", "width", "height", "faces", "error", "note"}
        assert (record["width"], record["height"], record["note"]) == (48, 48, None)
        want = Recognizer(ckpt).predict(face, name="face.png").to_dict()
        assert {k: record[k] for k in ("path", "faces", "error")} == want


def test_predict_photo_finds_the_one_face(client):
    r = client.post("/v1/predict", files={"file": ("astronaut.png", _png(skdata.astronaut()), "image/png")})
    assert r.status_code == 200
    faces = r.json()["faces"]
    assert len(faces) == 1
    cx, cy = _centre(faces[0])
    assert FACE_X[0] < cx < FACE_X[1] and FACE_Y[0] < cy < FACE_Y[1]
    assert len(faces[0]["landmarks"]) == 5 and sum(faces[0]["probs"].values()) == pytest.approx(1, abs=1e-4)


def test_json_base64_and_data_url_give_the_multipart_record(client):
    data = _jpeg(skdata.astronaut())
    want = client.post("/v1/predict", files={"file": ("a.jpg", data, "image/jpeg")}).json()
    b64 = base64.b64encode(data).decode()
    assert client.post("/v1/predict", json={"image": b64, "name": "a.jpg"}).json() == want
    assert client.post("/v1/predict", json={"image": "data:image/jpeg;base64," + b64, "name": "a.jpg"}).json() == want
    r = client.post("/v1/predict", json={"image": "not base64!"})
    assert r.status_code == 400 and "base64" in r.json()["detail"]
    r = client.post("/v1/predict", json={"picture": b64})
    assert r.status_code == 400 and "image" in r.json()["detail"]


def test_large_jpeg_is_decoded_reduced_with_boxes_in_full_pixels(client):
    big = np.asarray(Image.fromarray(skdata.astronaut()).resize((5120, 5120), Image.BICUBIC))  # 10x, decoded at 1/2
    r = client.post("/v1/predict", files={"file": ("big.jpg", _jpeg(big), "image/jpeg")})
    record = r.json()
    assert r.status_code == 200 and (record["width"], record["height"]) == (5120, 5120) and len(record["faces"]) == 1
    cx, cy = _centre(record["faces"][0])
    assert 10 * FACE_X[0] < cx < 10 * FACE_X[1] and 10 * FACE_Y[0] < cy < 10 * FACE_Y[1]
    lx, ly = record["faces"][0]["landmarks"][0]
    assert 10 * FACE_X[0] < lx < 10 * FACE_X[1] and 10 * FACE_Y[0] < ly < 10 * FACE_Y[1]


def test_per_request_detector_options(client):
    photo = _png(skdata.astronaut())
    r = client.post("/v1/predict?min_face=400", files={"file": ("a.png", photo, "image/png")})
    assert r.status_code == 200 and r.json()["faces"] == [] and "min_face 400" in r.json()["note"]
    r = client.post("/v1/predict?threshold=0.5&largest=true", files={"file": ("a.png", photo)})
    assert len(r.json()["faces"]) == 1
    r = client.post("/v1/predict?threshold=2", files={"file": ("a.png", photo, "image/png")})
    assert r.status_code == 400 and "threshold must be in (0, 1)" in r.json()["detail"]
    r = client.post("/v1/predict?min_face=abc", files={"file": ("a.png", photo, "image/png")})
    assert r.status_code == 400 and "min_face" in r.json()["detail"]  # 400, never FastAPI's 422


def test_thin_images_get_no_face_and_a_reason(client):
    for shape in [(3, 4000, 3), (2000, 5, 3), (12, 900, 3)]:
        r = client.post("/v1/predict", files={"file": ("thin.png", _png(np.full(shape, 128, np.uint8)), "image/png")})
        assert r.status_code == 200, shape
        assert r.json()["faces"] == [] and "too thin for the face detector" in r.json()["note"]


def test_batch_gives_one_record_per_file_in_order(client, face):
    files = [("file", ("face.png", _png(face), "image/png")), ("file", ("notes.txt", b"hello", "text/plain")),
             ("file", ("astronaut.jpg", _jpeg(skdata.astronaut()), "image/jpeg"))]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["path"] for x in results] == ["face.png", "notes.txt", "astronaut.jpg"]
    assert [len(x["faces"]) for x in results] == [1, 0, 1]
    assert results[1]["error"].startswith("notes.txt: not an image") and results[0]["error"] is None
    too_many = [("file", (f"{i}.png", _png(face), "image/png")) for i in range(17)]
    r = client.post("/v1/predict/batch", files=too_many)
    assert r.status_code == 400 and "at most 16" in r.json()["detail"]


def test_annotated_png_has_the_photo_and_a_legend_beside_it(client):
    photo = skdata.astronaut()
    for path in ("/v1/predict/annotated", "/predict/annotated"):
        r = client.post(path, files={"file": ("a.tif", _tiff(photo), "image/tiff")})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.headers["x-ferlab-faces"] == "1"
        img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
        assert img.shape[0] == 512 and img.shape[1] > 512 + 100  # legend strip to the right
        x0, y0 = FACE_X[0] + 15, FACE_Y[0] + 15  # inside the face box: photo pixels, untouched
        assert np.array_equal(img[y0:FACE_Y[1] - 15, x0:FACE_X[1] - 15], photo[y0:FACE_Y[1] - 15, x0:FACE_X[1] - 15])


def _tiff(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="TIFF")
    return buf.getvalue()


@pytest.mark.parametrize("files, status, message", [
    ({"file": ("notes.txt", b"hello, not an image", "text/plain")}, 400, "notes.txt: not an image"),
    ({"file": ("empty.png", b"", "image/png")}, 400, "empty.png: the upload is empty"),
    ({"file": ("cut.png", None, "image/png")}, 400, "cut.png: unreadable image"),
    ({"photo": ("a.png", b"x", "image/png")}, 400, "form field 'file'"),
])
def test_bad_uploads_are_400_with_a_reason(client, face, files, status, message):
    if files.get("file", (None, 0))[1] is None:
        files = {"file": ("cut.png", _png(face)[:60], "image/png")}  # truncated PNG
    for path in ("/v1/predict", "/v1/predict/annotated", "/predict"):
        r = client.post(path, files=files)
        assert r.status_code == status and message in r.json()["detail"] and r.json()["request_id"]


def test_other_errors_are_json_with_the_request_id(client):
    r = client.post("/v1/predict", content=b"hello", headers={"Content-Type": "text/plain", "X-Request-ID": "abc-123"})
    assert r.status_code == 415 and r.json() == {"detail": r.json()["detail"], "request_id": "abc-123"}
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["request_id"] == r.headers["x-request-id"]
    r = client.get("/v1/predict")
    assert r.status_code == 405 and "detail" in r.json()


def test_too_large_uploads_are_413(ckpt, face):
    with testclient.TestClient(create_app(ckpt, limits=ServeLimits(max_bytes=2000, max_pixels=100_000))) as small:
        png = _png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))  # ~4 kB, under the
        r = small.post("/v1/predict", files={"file": ("big.png", png, "image/png")})  # multipart allowance
        assert r.status_code == 413 and "upload too large" in r.json()["detail"]
        r = small.post("/v1/predict", files={"file": ("big.png", b"\0" * 100_000, "image/png")})  # from its length
        assert r.status_code == 413 and "limit is" in r.json()["detail"]
        r = small.post("/v1/predict", files={"file": ("wide.png", _png(np.zeros((10, 20_000), np.uint8)), "image/png")})
        assert r.status_code == 413 and "0.2 Mpixels" in r.json()["detail"] and "0.1 Mpixels" in r.json()["detail"]
        assert small.post("/v1/predict", files={"file": ("f.png", _png(face), "image/png")}).status_code == 200
    assert MAX_UPLOAD_BYTES == 20 * 2**20


def test_api_key_guards_every_v1_route_and_the_aliases(ckpt, face):
    with testclient.TestClient(create_app(ckpt, api_key="s3cret")) as c:
        upload = {"file": ("f.png", _png(face), "image/png")}
        for method, path in [("get", "/v1/models"), ("post", "/v1/predict"), ("post", "/v1/predict/batch"),
                             ("post", "/v1/predict/annotated"), ("post", "/predict"), ("get", "/health")]:
            kw = {"files": upload} if method == "post" else {}
            r = getattr(c, method)(path, **kw)
            assert r.status_code == 401 and "API key" in r.json()["detail"], path
            assert getattr(c, method)(path, headers={"X-API-Key": "wrong"}, **kw).status_code == 401
            assert getattr(c, method)(path, headers={"X-API-Key": "s3cret"}, **kw).status_code == 200, path
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        for path in ("/healthz", "/readyz", "/", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        spec = c.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["APIKey"]["name"] == "X-API-Key"
        assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"APIKey": []}]


def test_cors_is_off_unless_origins_are_given(client, ckpt):
    pre = {"Origin": "http://example.test", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.get("/v1/models", headers={"Origin": "http://example.test"}).headers
    with testclient.TestClient(create_app(ckpt, cors_origins=("http://example.test",))) as c:
        r = c.options("/v1/predict", headers=pre)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://example.test"
        assert c.get("/v1/models", headers={"Origin": "http://example.test"}).headers["access-control-allow-origin"] \
            == "http://example.test"
        assert "access-control-allow-origin" not in c.options("/v1/predict", headers={**pre, "Origin": "http://evil.test"}).headers


def test_unexpected_errors_are_500_json_and_logged_with_the_request_id(ckpt, face, caplog):
    app = create_app(ckpt)

    def broken(*args):
        raise RuntimeError("detector exploded")

    app.state.engine._recognise = broken
    with testclient.TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR, "ferlab.serve"):
        r = c.post("/v1/predict", files={"file": ("f.png", _png(face), "image/png")})
    rid = r.json()["request_id"]
    assert r.status_code == 500 and rid in r.json()["detail"] and r.headers["x-request-id"] == rid
    assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_openapi_documents_typed_answers_and_real_error_codes(client):
    spec = client.get("/openapi.json").json()
    assert "422" not in str(spec) and "HTTPValidationError" not in spec["components"]["schemas"]
    op = spec["paths"]["/v1/predict"]["post"]
    assert {"400", "413", "415", "503"} <= set(op["responses"])
    assert set(op["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert [p["name"] for p in op["parameters"]] == ["threshold", "min_face", "largest"]
    schemas = spec["components"]["schemas"]
    assert {"box", "score", "landmarks", "label", "probs"} <= set(schemas["Face"]["properties"])
    assert schemas["Face"]["examples"] and schemas["Error"]["examples"] and schemas["Prediction"]["examples"]
    assert set(spec["paths"]) >= {"/healthz", "/readyz", "/v1/models", "/v1/predict", "/v1/predict/batch",
                                  "/v1/predict/annotated"}


def test_docs_pages_load_their_scripts_from_this_server(client):
    import re

    for path, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = client.get(path).text
        assert script in page and not re.search(r"""(src|href)=["']?(https?:)?//""", page), path
        url = re.search(r"""["']([^"']*%s)["']""" % re.escape(script), page).group(1)
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 100_000, url


def test_web_page_has_the_upload_form_and_webcam(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<form id="upload-form"' in page and 'type="file" name="file"' in page
    assert "getUserMedia" in page and '"/v1/predict"' in page and '"/v1/predict/annotated"' in page


def test_pixel_budget_bounds_decoded_pixels_in_flight():
    budget = PixelBudget(100, timeout=0.3)
    order = []
    with budget.hold(80):
        with pytest.raises(UploadError) as e:
            with budget.hold(50):
                pass
        assert e.value.status == 503
        with budget.hold(20):  # fits beside the 80
            order.append("small")
    start = time.monotonic()
    with budget.hold(10_000):  # larger than the budget: waits for all of it, never forever
        order.append("huge")
    assert order == ["small", "huge"] and time.monotonic() - start < 0.2 and budget.free == 100


def test_cli_serve_refuses_a_port_in_use_and_a_missing_model_without_a_startup_line(ckpt, capsys):
    import socket

    from ferlab.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model", str(ckpt), "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert "serving" not in out and f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert main(["serve", "--model", str(ckpt.parent / "missing.pt")]) == 2
    out, err = capsys.readouterr()
    assert "serving" not in out and "does not exist" in err
    with pytest.raises(SystemExit):
        main(["serve", "--port", "abc"])
    assert main(["serve", "--port", "70000"]) == 2
    assert "port must be in 0-65535" in capsys.readouterr().err


def test_server_wide_tta_averages_the_views_recognizer_averages(ckpt, face):
    lopsided = face.copy()
    lopsided[5:12, 2:10] = 250  # a mark on one side: the mirror differs, so flip TTA changes the probabilities
    png = _png(lopsided)
    with testclient.TestClient(create_app(str(ckpt), tta="flip")) as c:
        (m,) = c.get("/v1/models").json()["models"]
        assert m["tta"] == "flip"
        record = c.post("/v1/predict", files={"file": ("face.png", png, "image/png")}).json()
    assert record["faces"] == Recognizer(ckpt, tta="flip").predict(lopsided, name="face.png").to_dict()["faces"]
    plain = Recognizer(ckpt).predict(lopsided, name="face.png").to_dict()["faces"]
    assert record["faces"][0]["probs"] != plain[0]["probs"]
    with pytest.raises(ValueError, match="unknown tta"):
        create_app(str(ckpt), tta="ten_crop")


def test_cli_serve_takes_tta_and_refuses_unknown_names(capsys):
    from ferlab.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--tta {none,flip,flip_shift,auto}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["serve", "--tta", "ten_crop"])
    assert "ten_crop" in capsys.readouterr().err
