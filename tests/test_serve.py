"""The HTTP API and web page, in-process (TestClient) and once over a real socket with uvicorn."""
from __future__ import annotations

import io
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import save_checkpoint
from ferlab.labels import FER2013_CLASSES
from ferlab.predict import Recognizer
from ferlab.preprocess import Preprocess
from ferlab.serve import MAX_UPLOAD_BYTES, create_app

testclient = pytest.importorskip("fastapi.testclient")
skdata = pytest.importorskip("skimage.data")
torch.set_num_threads(1)

FACE_X, FACE_Y = (178, 268), (63, 176)  # the astronaut's face in the 512x512 image


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", preprocess=Preprocess(crop_margin=0.1))


@pytest.fixture(scope="module")
def client(ckpt):
    return testclient.TestClient(create_app(str(ckpt)))


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A generated 48x48 grayscale 'face crop': small images skip detection, as in `ferlab predict`."""
    yy, xx = np.mgrid[:48, :48]
    img = 80 + 100 * np.exp(-((xx - 24) ** 2 + (yy - 22) ** 2) / 200)
    img[16:19, 14:20] = img[16:19, 28:34] = 30  # eyes
    img[32:34, 18:30] = 40  # mouth
    return img.astype(np.uint8)


def test_health_describes_the_checkpoint(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "fernet_tiny" and h["classes"] == list(FER2013_CLASSES)
    assert Preprocess.from_dict(h["preprocess"]) == Preprocess(crop_margin=0.1) and h["detector"] == "yunet"


def test_predict_face_crop_is_the_predict_json_record(client, ckpt, face):
    r = client.post("/predict", files={"file": ("face.png", _png(face), "image/png")})
    assert r.status_code == 200
    record = r.json()
    assert set(record) == {"path", "faces", "error"} and record["error"] is None
    assert len(record["faces"]) == 1 and record["faces"][0]["box"] == [0, 0, 48, 48]
    assert list(record["faces"][0]["probs"]) == list(FER2013_CLASSES)
    assert record == Recognizer(ckpt).predict(face, name="face.png").to_dict()


def test_predict_photo_finds_the_one_face(client):
    r = client.post("/predict", files={"file": ("astronaut.png", _png(skdata.astronaut()), "image/png")})
    assert r.status_code == 200
    faces = r.json()["faces"]
    assert len(faces) == 1
    x, y, w, h = faces[0]["box"]
    assert FACE_X[0] < x + w / 2 < FACE_X[1] and FACE_Y[0] < y + h / 2 < FACE_Y[1]
    assert len(faces[0]["landmarks"]) == 5 and sum(faces[0]["probs"].values()) == pytest.approx(1, abs=1e-4)


def test_predict_annotated_is_a_png_of_the_upload(client):
    photo = skdata.astronaut()
    r = client.post("/predict/annotated", files={"file": ("a.png", _png(photo), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.headers["x-ferlab-faces"] == "1"
    img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert img.shape == photo.shape and (img != photo).any()


@pytest.mark.parametrize("files, status, message", [
    ({"file": ("notes.txt", b"hello, not an image", "text/plain")}, 400, "notes.txt: not an image"),
    ({"file": ("empty.png", b"", "image/png")}, 400, "empty.png: the upload is empty"),
    ({"file": ("cut.png", None, "image/png")}, 400, "cut.png: unreadable image"),
    ({"photo": ("a.png", b"x", "image/png")}, 400, "form field 'file'"),
])
def test_bad_uploads_are_400_with_a_reason(client, face, files, status, message):
    if files.get("file", (None, 0))[1] is None:
        files = {"file": ("cut.png", _png(face)[:60], "image/png")}  # truncated PNG
    for path in ("/predict", "/predict/annotated"):
        r = client.post(path, files=files)
        assert r.status_code == status and message in r.json()["detail"]


def test_too_large_uploads_are_413(ckpt, face):
    small = testclient.TestClient(create_app(ckpt, max_bytes=2000))
    png = _png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))  # ~4 kB, under the
    r = small.post("/predict", files={"file": ("big.png", png, "image/png")})  # multipart allowance
    assert r.status_code == 413 and "upload too large" in r.json()["detail"]
    r = small.post("/predict", files={"file": ("big.png", b"\0" * 100_000, "image/png")})  # refused from its length
    assert r.status_code == 413 and "limit is" in r.json()["detail"]
    assert small.post("/predict", files={"file": ("f.png", _png(face), "image/png")}).status_code == 200
    assert MAX_UPLOAD_BYTES == 20 * 2**20


def test_web_page_has_the_upload_form_and_webcam(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<form id="upload-form"' in page and 'type="file" name="file"' in page
    assert "getUserMedia" in page and '"/predict"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no CDN: works offline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_over_http(ckpt, face):
    httpx = pytest.importorskip("httpx")
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ckpt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/predict", files={"file": ("face.png", _png(face), "image/png")}, timeout=20)
        assert r.status_code == 200 and len(r.json()["faces"]) == 1
        assert httpx.get(f"{base}/health", timeout=10).json()["model"] == "fernet_tiny"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_cli_serve_loads_the_model_once_and_runs_uvicorn(ckpt, monkeypatch, capsys):
    import uvicorn
    from fastapi import FastAPI

    from ferlab.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert main(["serve", "--model", str(ckpt), "--port", "8123"]) == 0
    (app, kw), = calls
    assert isinstance(app, FastAPI) and app.state.recognizer.classes == list(FER2013_CLASSES)
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8123
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert main(["serve", "--model", str(ckpt.parent / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
