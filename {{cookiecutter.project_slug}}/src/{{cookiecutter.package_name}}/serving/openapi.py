"""The API's OpenAPI document (``GET /docs.json``), with what BentoML's generator leaves out.

BentoML's document lists only 200/400/404/500, marks no request body as required, and flattens
the ``/classify`` body into a copy of the record model that drops ``null`` from the optional
fields. :class:`OpenAPIAmender`, an ASGI middleware, rewrites the document on its way out: the
body is required, ``/classify`` refers to the record model itself, and every status the API
answers is listed (``ERRORS``).
"""

from __future__ import annotations

import json

DOCS_PATH = "/docs.json"
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What was wrong, in one line"}},
}
# Statuses the service answers besides 200, by route (None: every API route).
ERRORS = {
    400: (None, "Malformed JSON, a field missing, of the wrong type or out of range (named)"),
    409: ("/classify", "The X-Request-ID was already used (each request needs its own id)"),
    413: (None, "The body is over the size limit, or the list over its item limit (named)"),
    415: (None, "Content-Type is not JSON, or the body is compressed"),
    503: (None, "Overloaded: the request could not start within its deadline"),
}


def amend(spec: dict, paths: tuple[str, ...], record: str) -> dict:
    """``spec`` (BentoML's document) with the request bodies and statuses of ``paths``;
    ``record`` names the schema of one record (the model ``/classify`` takes)."""
    components = spec.get("components", {}).get("schemas", {})
    for path in paths:
        operation = spec.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        body = operation.setdefault("requestBody", {})
        body["required"] = True
        media = body.get("content", {}).get("application/json", {})
        if media.get("schema", {}).get("type") == "object" and record in components:
            media["schema"] = {"$ref": f"#/components/schemas/{record}"}
        responses = operation.setdefault("responses", {})
        for status, (route, description) in ERRORS.items():
            if route in (None, path):
                responses[str(status)] = {
                    "description": description,
                    "content": {"application/json": {"schema": ERROR_SCHEMA}},
                }
    return spec


class OpenAPIAmender:
    """Pure ASGI middleware: passes everything through but ``GET /docs.json``, amended."""

    def __init__(self, app, *, paths: tuple[str, ...], record: str):
        self.app = app
        self.paths = paths
        self.record = record

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != DOCS_PATH or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        start, chunks = None, []

        async def capture(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start is not None and start["status"] == 200:
            body = json.dumps(amend(json.loads(body), self.paths, self.record)).encode()
        headers = [(k, v) for k, v in (start or {}).get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        status = start["status"] if start is not None else 500
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
