"""`ferlab serve` as a child process on loopback, for tests and benchmarks that need a real server.

    with ServerProcess(["--model", "tiny"]) as server:
        httpx.get(server.url + "healthz")
        server.peak_rss()  # bytes, the server's high-water mark (Linux)
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

_STARTED = re.compile(r"^serving .* on (http://\S+/)")


class ServerProcess:
    """`ferlab serve --host 127.0.0.1 --port 0 ARGS` in a child process, until the context exits."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 90.0):
        self.args, self.env, self.timeout = list(args), env, timeout
        self.lines: list[str] = []
        self.url = ""
        self._started = threading.Event()

    def __enter__(self) -> "ServerProcess":
        cmd = [sys.executable, "-m", "ferlab", "serve", "--host", "127.0.0.1", "--port", "0", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(self.env or {})})
        threading.Thread(target=self._read, daemon=True).start()
        if not self._started.wait(self.timeout) or not self.url:
            self.stop()
            raise RuntimeError("ferlab serve did not start:\n" + "\n".join(self.lines[-30:]))
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """Ctrl-C, then a kill if it has not stopped within 15 s; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def peak_rss(self) -> int:
        """The peak resident memory in bytes (VmHWM) of the server and its worker processes."""
        return sum(_hwm(pid) for pid in [self.pid, *_children(self.pid)])

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = _STARTED.match(line)
            if m:
                self.url = m.group(1)
                self._started.set()
        self._started.set()  # exited before (or after) its startup line


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
