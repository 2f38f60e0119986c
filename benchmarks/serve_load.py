"""Load test of `ferlab serve` on loopback: requests/s and latency for a one-face photo, and the
server's peak memory when three 177-Mpixel PNGs arrive at once.

    .venv/bin/python benchmarks/serve_load.py --out benchmarks/results/serve_load.json

Starts a real server process (bundled default model, default options) on 127.0.0.1, sends a
640x480 JPEG of the astronaut (one face) as `POST /v1/predict` from `--connections` keep-alive
connections until `--requests` have been answered or `--seconds` have passed, then sends three
decompression-bomb PNGs (13300x13300, 0.5 MB each) at once. Every request goes to 127.0.0.1 and
the run is bounded in count and time. The client shares the machine's cores with the server,
so the figures are for both together; the load average is recorded before and after.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import struct
import threading
import time
import zlib
from urllib.parse import urlsplit

import numpy as np

from ferlab.fileio import write_json
from ferlab.serve.launch import ServerProcess

TARGETS = {"requests_per_s": 50.0, "p95_ms": 120.0, "bomb_peak_rss_gb": 1.5}


def photo_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((640, 480)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bomb_png(side: int = 13300) -> bytes:
    """A valid RGB PNG of side x side black pixels, compressed to about 0.5 MB."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    z = zlib.compressobj(9)
    rows = b"\0" * ((1 + 3 * side) * 64)
    idat = b"".join(z.compress(rows) for _ in range(side // 64)) + z.compress(b"\0" * ((1 + 3 * side) * (side % 64)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat + z.flush()) + chunk(b"IEND", b""))


def multipart(name: str, data: bytes, kind: str) -> tuple[bytes, str]:
    boundary = "ferlab-load-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(conn: http.client.HTTPConnection, path: str, body: bytes, ctype: str) -> tuple[int, bytes]:
    conn.request("POST", path, body, {"Content-Type": ctype})
    r = conn.getresponse()
    return r.status, r.read()


def load(url: str, body: bytes, ctype: str, connections: int, requests: int, seconds: float) -> dict:
    host = urlsplit(url)
    assert host.hostname == "127.0.0.1", "load is only ever sent to loopback"
    latencies, statuses, errors = [], {}, []
    lock = threading.Lock()
    left = [requests]
    deadline = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            t = time.perf_counter()
            try:
                status, data = post(conn, "/v1/predict", body, ctype)
                ok = status == 200 and len(json.loads(data)["faces"]) == 1
            except (OSError, http.client.HTTPException, ValueError) as e:
                status, ok = type(e).__name__, False
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if not ok:
                    errors.append(str(status))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"connections": connections, "requests": len(latencies), "seconds": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 1), "failures": len(errors), "statuses": statuses,
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
            "mean_ms": round(float(ms.mean()), 1)}


def bombs(url: str, n: int = 3) -> list:
    host = urlsplit(url)
    body, ctype = multipart("bomb.png", bomb_png(), "image/png")
    out = [None] * n

    def send(i):
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        status, data = post(conn, "/v1/predict", body, ctype)
        out[i] = {"status": status, "detail": json.loads(data).get("detail")}
        conn.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--requests", type=int, default=1500, help="stop after this many answers")
    ap.add_argument("--seconds", type=float, default=60, help="or after this long")
    ap.add_argument("--serve-args", default="", help="extra `ferlab serve` options, e.g. '--workers 2'")
    ap.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = ap.parse_args()
    body, ctype = multipart("astronaut_640x480.jpg", photo_jpeg(), "image/jpeg")
    serve_args = args.serve_args.split()
    with ServerProcess(serve_args) as server:
        idle_rss = server.peak_rss()
        load(server.url, body, ctype, 2, 40, 30)  # warm-up: threads, detectors, allocator
        load_before = os.getloadavg()
        run = load(server.url, body, ctype, args.connections, args.requests, args.seconds)
        load_after = os.getloadavg()
        rss_after_load = server.peak_rss()
        bomb = bombs(server.url)
        rss_after_bombs = server.peak_rss()
        alive = server.proc.poll() is None
    result = {
        "what": "ferlab serve on 127.0.0.1 (real process, default model and options): POST /v1/predict of a "
                "640x480 one-face JPEG from keep-alive connections; then three 13300x13300 PNGs (0.5 MB) at once",
        "command": f"python benchmarks/serve_load.py --connections {args.connections} --requests {args.requests} "
                   f"--seconds {args.seconds:g}" + (f" --serve-args '{args.serve_args}'" if args.serve_args else ""),
        "serve_args": serve_args, "load": run,
        "bombs": {"answers": bomb, "server_alive": alive},
        "peak_rss_mb": {"idle": round(idle_rss / 2**20), "after_load": round(rss_after_load / 2**20),
                        "after_bombs": round(rss_after_bombs / 2**20)},
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in load_after],
        "cpu_count": os.cpu_count(), "targets": TARGETS,
        "met": {"requests_per_s": run["requests_per_s"] >= TARGETS["requests_per_s"],
                "p95_ms": run["p95_ms"] <= TARGETS["p95_ms"], "no_failures": run["failures"] == 0,
                "bomb_peak_rss": rss_after_bombs / 2**30 < TARGETS["bomb_peak_rss_gb"]},
    }
    write_json(args.out, result, "load test results")
    keys = ("load", "peak_rss_mb", "loadavg_before", "loadavg_after", "met")
    print(json.dumps({k: result[k] for k in keys}, indent=1))


if __name__ == "__main__":
    main()
