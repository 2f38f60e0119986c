"""`ferlab serve` as a real process on loopback: startup, limits and faults over real sockets.

One server with small limits serves most tests: bodies over 2 MB, 3 requests in the queue,
6 connections, 1.5 s for a body."""
from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from conftest import save_checkpoint
from ferlab.serve.launch import ServerProcess

skdata = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc (Linux)")

LIMITS = ["--max-bytes", "2000000", "--max-queue", "3", "--max-connections", "6", "--body-timeout", "1.5"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    spool = tmp_path_factory.mktemp("spool")
    with ServerProcess(["--model", str(ckpt), *LIMITS], env={"TMPDIR": str(spool)}) as s:
        s.spool = spool
        yield s


def _addr(server) -> tuple[str, int]:
    u = urlsplit(server.url)
    return u.hostname, u.port


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _multipart(data: bytes, name: str = "a.png") -> tuple[bytes, str]:
    head = (f'--xx\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    return head + data + b"\r\n--xx--\r\n", "multipart/form-data; boundary=xx"


def _post(server, data: bytes, path: str = "/v1/predict", timeout: float = 30) -> tuple[int, dict, dict]:
    body, ctype = _multipart(data)
    conn = http.client.HTTPConnection(*_addr(server), timeout=timeout)
    conn.request("POST", path, body, {"Content-Type": ctype})
    r = conn.getresponse()
    out = r.status, dict(r.getheaders()), json.loads(r.read())
    conn.close()
    return out


def _response(sock: socket.socket, timeout: float) -> tuple[int, dict, dict]:
    """Read one HTTP response (Content-Length framed) from a raw socket."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(rest)


def _alive(server) -> bool:
    status, _, body = _get(server, "/readyz")
    return status == 200 and body == {"status": "ready"}


def _get(server, path: str) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection(*_addr(server), timeout=20)
    conn.request("GET", path)
    r = conn.getresponse()
    out = r.status, dict(r.getheaders()), json.loads(r.read())
    conn.close()
    return out


def test_startup_line_comes_once_serving_and_a_photo_is_recognised(server):
    line = next(i for i, x in enumerate(server.lines) if x.startswith("serving "))
    assert any("Application startup complete" in x for x in server.lines[:line])  # printed after uvicorn started
    assert server.url.startswith("http://127.0.0.1:")
    status, headers, record = _post(server, _png(skdata.astronaut()))
    assert status == 200 and len(record["faces"]) == 1 and headers["x-request-id"]
    assert _get(server, "/healthz")[2] == {"status": "ok"} and _alive(server)


def test_chunked_upload_without_length_stops_at_the_limit(server):
    sock = socket.create_connection(_addr(server))
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"\0" * 256 * 1024
    sent, answer = 0, {}
    reader = threading.Thread(target=lambda: answer.update(r=_response(sock, 30)))
    reader.start()
    try:
        while sent < 300 * 2**20 and reader.is_alive():
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
    except OSError:
        pass  # the server closed the connection after answering
    reader.join(30)
    sock.close()
    status, headers, body = answer["r"]
    assert status == 413 and "reading stopped there" in body["detail"] and body["request_id"]
    assert sent < 40 * 2**20  # 300 MB were offered; the server stopped reading a little past 2 MB
    assert not any(p.stat().st_size > 2**20 for p in server.spool.rglob("*") if p.is_file())  # nothing spooled
    assert _alive(server)


def test_a_lying_content_length_gets_408_in_time(server):
    sock = socket.create_connection(_addr(server))
    t = time.monotonic()
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
                 b"Content-Length: 100000\r\n\r\n--xx\r\n")
    status, headers, body = _response(sock, 10)
    sock.close()
    assert status == 408 and "did not arrive within 1.5 s" in body["detail"]
    assert 1.4 < time.monotonic() - t < 5 and headers["connection"] == "close"


def test_a_full_queue_answers_503_with_retry_after(server):
    slow = []
    for _ in range(3):  # admitted, bodies never finish: the queue of 3 is full
        s = socket.create_connection(_addr(server))
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
                  b"Content-Length: 5000\r\n\r\n--xx")
        slow.append(s)
    time.sleep(0.3)
    status, headers, body = _post(server, _png(np.zeros((40, 40, 3), np.uint8)))
    assert status == 503 and headers["retry-after"] == "1" and "busy" in body["detail"]
    assert [_response(s, 10)[0] for s in slow] == [408] * 3
    for s in slow:
        s.close()
    assert _post(server, _png(np.zeros((40, 40, 3), np.uint8)))[0] == 200  # the queue drained


def test_connections_over_the_cap_get_a_json_503(server):
    idle = [socket.create_connection(_addr(server)) for _ in range(6)]
    time.sleep(0.3)
    try:
        status, headers, body = _get(server, "/healthz")
        assert status == 503 and "too many open connections" in body["detail"] and headers["retry-after"] == "1"
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert _get(server, "/healthz")[0] == 200


def bomb_png(side: int = 13300) -> bytes:
    """A valid side x side RGB PNG (13300: 177 Mpixels) of about 0.5 MB; decoded, 530 MB. side % 100 == 0."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    z = zlib.compressobj(9)
    rows = b"\0" * ((1 + 3 * side) * 100)
    idat = b"".join(z.compress(rows) for _ in range(side // 100)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_three_decompression_bombs_at_once_keep_memory_bounded(server):
    bomb = bomb_png()
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow alone would decode it: it refuses only >179 Mpixels
        assert len(bomb) < 2**20 and Image.open(io.BytesIO(bomb)).size == (13300, 13300)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(_post(server, bomb))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [a[0] for a in answers] == [413] * 3 and all("13300x13300" in a[2]["detail"] for a in answers)
    assert server.peak_rss() < 1.5 * 2**30 and _alive(server)


def test_thin_images_are_never_500(server):
    for shape in [(1, 3000, 3), (4000, 2, 3), (15, 2000, 3), (2000, 20, 3)]:
        status, _, record = _post(server, _png(np.full(shape, 200, np.uint8)))
        assert status == 200 and record["faces"] == [] and record["note"], shape


def _serve(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferlab", "serve", *args], capture_output=True, text=True, timeout=120)


def test_startup_failures_are_one_line_and_print_no_startup_line(server, ckpt):
    _, port = _addr(server)
    for args, message in [(["--model", str(ckpt), "--port", str(port)], f"cannot listen on 127.0.0.1:{port}"),
                          (["--port", "70000"], "port must be in 0-65535"),
                          (["--model", str(ckpt), "--host", "no.such.host.invalid"], "cannot listen on")]:
        p = _serve(args)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)
        assert "serving" not in p.stdout and "Traceback" not in p.stderr


def test_two_workers_each_load_the_model_and_share_the_port(ckpt):
    with ServerProcess(["--model", str(ckpt), "--workers", "2", "--threads", "1"]) as s:
        for _ in range(6):
            status, _, record = _post(s, _png(skdata.astronaut()))
            assert status == 200 and len(record["faces"]) == 1
        deadline = time.monotonic() + 30
        while sum("Application startup complete" in x for x in s.lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sum("Started server process" in x for x in s.lines) == 2
        assert sum("Application startup complete" in x for x in s.lines) == 2
