"""The ASGI layer in front of the API: a request id on every request, the API key, the queue
bound, and request bodies read to a limit within a deadline. Every refusal is a JSON `Error`.

Bodies of the recognition routes are read here, in memory, before any parser sees them:
reading stops at the limit (413), a body that does not arrive within `body_timeout` seconds
(a slow client, a Content-Length larger than what is sent) gets 408, and the route then parses
the bytes it was handed. Only `max_queue` such requests are admitted at once; the next gets 503
with Retry-After before its body is read.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import uuid

from .config import ServeLimits
from .decode import mb

log = logging.getLogger("ferlab.serve")

#: Room for the multipart boundary and part headers (or JSON and base64 padding) around the image.
BODY_OVERHEAD = 64 * 1024
#: After refusing a body that is still arriving, read (and drop) this much more, for at most
#: `_DRAIN_S`, so the client is reading when the connection closes instead of getting a reset
#: that discards the answer.
_DRAIN_BYTES, _DRAIN_S = 16 * 2**20, 1.0
RECOGNITION_PATHS = frozenset({"/v1/predict", "/v1/predict/annotated", "/v1/predict/batch",
                               "/predict", "/predict/annotated"})
#: Routes that need the API key when one is set: every /v1 route and the old aliases.
_LEGACY_KEYED = frozenset({"/predict", "/predict/annotated", "/health"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class Guard:
    """ASGI middleware: see the module docstring. `api_key` None means no key is needed."""

    def __init__(self, app, limits: ServeLimits, api_key: str | None = None):
        self.app, self.limits, self.api_key = app, limits, api_key
        self.active = 0  # admitted recognition requests; the event loop is one thread, so a plain int

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        rid = headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID.fullmatch(rid) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        send = _tag(send, rid)
        path = scope["path"]
        try:
            if self.api_key is not None and (path.startswith("/v1/") or path in _LEGACY_KEYED):
                self._check_key(headers)
            if scope["method"] != "POST" or path not in RECOGNITION_PATHS:
                return await self.app(scope, receive, send)
            if self.active >= self.limits.max_queue:
                raise Refused(503, f"busy: {self.active} requests are being recognised or waiting (the limit is "
                                   f"{self.limits.max_queue}); retry shortly", {"retry-after": "1"})
        except Refused as e:
            return await refuse(send, receive, e, rid)
        self.active += 1
        try:
            body = await self._read_body(headers, receive, path)
        except Refused as e:
            self.active -= 1  # free the place before draining what more of the body comes
            return await refuse(send, receive, e, rid)
        except _Disconnected:  # the client went away: nobody to answer
            self.active -= 1
            return None
        except BaseException:  # cancelled: the server is stopping
            self.active -= 1
            raise
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.active -= 1

    def _check_key(self, headers: dict[str, str]) -> None:
        given = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if not given or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise Refused(401, "missing or wrong API key: send it in the X-API-Key header (or Authorization: Bearer)",
                          {"www-authenticate": "Bearer"})

    async def _read_body(self, headers: dict[str, str], receive, path: str) -> bytes:
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        allowed = ("multipart/form-data",) if path.endswith("/batch") else ("multipart/form-data", "application/json")
        if kind not in allowed:
            raise Refused(415, f"send the image as {' or '.join(allowed)} (got {kind or 'no Content-Type'})")
        # base64 in JSON is 4/3 the file's size
        image_bytes = self.limits.max_bytes * 4 // 3 if kind == "application/json" else self.limits.max_bytes
        limit = image_bytes + BODY_OVERHEAD
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Refused(413, f"upload too large ({mb(int(declared))}); the limit is {mb(self.limits.max_bytes)}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                raise Refused(408, f"the request body did not arrive within {self.limits.body_timeout:g} s "
                                   f"({size} bytes came)") from None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"upload too large (over the limit of {mb(self.limits.max_bytes)}; reading "
                                   "stopped there)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _Disconnected(Exception):
    pass


async def refuse(send, receive, error: Refused, rid: str | None) -> None:
    """Answer `error` as JSON and close the connection, reading what more of the body arrives
    within `_DRAIN_S` before the close (see `_DRAIN_BYTES`)."""
    log.info("request %s refused with %d: %s", rid, error.status, error.detail)
    body = json.dumps({"detail": error.detail, "request_id": rid}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")] + [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    loop = asyncio.get_running_loop()
    deadline, drained = loop.time() + _DRAIN_S, 0
    try:
        while drained < _DRAIN_BYTES:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            drained += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
    except asyncio.TimeoutError:
        pass
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def overloaded(scope, receive, send) -> None:
    """The answer past the connection cap (uvicorn's own is plain text)."""
    if scope["type"] == "http":
        busy = Refused(503, "too many open connections; retry shortly", {"retry-after": "1"})
        await refuse(send, receive, busy, None)


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _tag(send, rid: str):
    async def tagged(message):
        if message["type"] == "http.response.start" and not any(k.lower() == b"x-request-id"
                                                                for k, _ in message.get("headers", [])):
            message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
        await send(message)

    return tagged


def _replay(body: bytes, receive):
    """A `receive` that hands over the whole body once, then waits for the client to go."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
