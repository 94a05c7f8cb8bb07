"""An ASGI middleware that turns bad requests into a 4xx naming the problem, before any parsing.

BentoML reads a whole body into memory and answers some malformed bodies with a 500. In front of
the API routes this middleware refuses, with a JSON ``{"error": ...}``:

- a ``Content-Length`` that is not a number (400) or over ``max_body_bytes`` (413), and a body
  that grows past the limit while it streams in (413): nothing over the limit is buffered;
- an empty body (400), a body that is not UTF-8 (400, with the offset of the first bad byte);
- a ``Content-Type`` other than JSON (415), a ``Content-Encoding`` (415);
- an ``X-Request-ID`` that is not 1-128 characters of ``A-Z a-z 0-9 . _ : -`` (400).

BentoML's validation errors (400) get a one-line ``error`` naming each field and its problem
(``amount: Field required; country: Field required``); pydantic's list stays in ``detail``. A list
body over its item limit is a 413 naming the limit.
"""

from __future__ import annotations

import json
import re

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
JSON_TYPES = ("application/json", "text/json")
# pydantic's message for a non-nullable string that is only whitespace (schema.NOT_BLANK).
BLANK_MESSAGE = "String should match pattern '\\S'"


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


def summarize_errors(detail: list) -> str:
    """``loc: msg; ...`` from pydantic's error list, e.g. ``[0].amount: Field required``."""
    parts = []
    for item in detail[:10]:
        if not isinstance(item, dict):
            continue
        where = ""
        for part in item.get("loc", []):
            if part == "root":
                continue
            where += f"[{part}]" if isinstance(part, int) else f"{'.' if where else ''}{part}"
        where = where or "request body"  # "body" may name a field of the record
        message = item.get("msg", "invalid")
        if message == BLANK_MESSAGE:
            message = "must not be blank"
        parts.append(f"{where}: {message}")
    if len(detail) > 10:
        parts.append(f"... and {len(detail) - 10} more")
    return "; ".join(parts)


def _too_many_items(detail: list) -> bool:
    """The body is a list longer than the limit (a 413 naming it, not a 400)."""
    return bool(detail) and all(
        isinstance(item, dict)
        and item.get("type") == "too_long"
        and all(part == "root" for part in item.get("loc", []))
        for item in detail
    )


class RequestGuard:
    """Pure ASGI middleware; ``paths``: the API routes it guards (others pass through)."""

    def __init__(self, app, *, max_body_bytes: int, paths: tuple[str, ...]):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        problem = self._check_headers(scope)
        if problem is None:
            body, problem = await self._read(receive)
        if problem is not None:
            return await _respond(send, *problem)

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, _ReadableErrors(send))

    def _check_headers(self, scope) -> tuple[int, bytes] | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return _error(400, "Content-Length is not a number")
                if length > self.max_body_bytes:
                    return _error(
                        413, f"body of {length} bytes is over the limit of {self.max_body_bytes}"
                    )
            elif name == b"content-type":
                media = value.split(b";", 1)[0].strip().decode("latin-1").lower()
                if media and media not in JSON_TYPES:
                    return _error(
                        415,
                        f"Content-Type {media!r} is not supported: "
                        "send JSON with 'Content-Type: application/json'",
                    )
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                return _error(415, "Content-Encoding is not supported: send an uncompressed body")
            elif name == REQUEST_ID_HEADER and not REQUEST_ID.fullmatch(value.decode("latin-1")):
                return _error(400, "X-Request-ID must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        return None

    async def _read(self, receive) -> tuple[bytes, tuple[int, bytes] | None]:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", _error(400, "client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", _error(413, f"body is over the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body.strip():
            return body, _error(400, "empty body: send the record as a JSON object")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return body, _error(400, f"body is not valid UTF-8 (bad byte at offset {exc.start})")
        return body, None


async def _respond(send, status: int, payload: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class _ReadableErrors:
    """Wraps ``send``: a 400 with a pydantic ``detail`` list gets a one-line ``error``."""

    def __init__(self, send):
        self.send = send
        self.start = None
        self.chunks: list[bytes] = []

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            if message["status"] != 400:
                return await self.send(message)
            self.start = message
            return None
        if self.start is None:
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return None
        body = b"".join(self.chunks)
        status = 400
        try:
            data = json.loads(body)
            if isinstance(data, dict) and isinstance(data.get("detail"), list):
                data["error"] = summarize_errors(data["detail"])
                body = json.dumps(data).encode()
                if _too_many_items(data["detail"]):
                    status = 413
        except ValueError:
            pass
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
