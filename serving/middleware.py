"""ASGI middleware: request-body cap (413), access log, and 405 answers that list every method of a path."""

from __future__ import annotations

import json
import re
import time

from fastapi import FastAPI

from serving.auth import KEY_SCOPE, REFUSED_KEY_SCOPE

UNLOGGED = ("/health", "/ready", "/static/", "/docs", "/openapi.json", "/redoc", "/favicon.ico")


class BodyTooLarge(Exception):
    pass


class ServiceMiddleware:
    """Plain ASGI middleware (cheaper than BaseHTTPMiddleware): caps request bodies (413) and records every
    request in the access log with the key id and role that made it, never the key."""

    def __init__(self, app, max_body_bytes: int, allowed_methods=None):
        self.app, self.max_body_bytes = app, max_body_bytes
        self.allowed_methods = allowed_methods  # path -> methods, to answer 405 with every method of the path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500, "started": False}
        limit, received = self.max_body_bytes, 0

        async def send_tracking(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                if message["status"] == 405 and self.allowed_methods is not None:
                    message = _with_allow(message, self.allowed_methods(scope["path"]))
            await send(message)

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise BodyTooLarge
            await self.app(scope, receive_limited, send_tracking)
        except BodyTooLarge:
            if status["started"]:
                raise
            await _send_json(send_tracking, 413, {"detail": f"request body larger than {limit} bytes"})
        finally:
            path = scope["path"]
            if not path.startswith(UNLOGGED):
                state = getattr(scope["app"].state, "hotspot", None)
                if state is not None:
                    state.access.record(key=scope.get(KEY_SCOPE), method=scope["method"], path=path,
                                        status=status["code"], duration_ms=(time.perf_counter() - start) * 1000,
                                        refused_key_id=scope.get(REFUSED_KEY_SCOPE))


def _with_allow(message: dict, methods: list[str]) -> dict:
    """Starlette answers 405 with the methods of the first route that matched the path only; list them all."""
    if not methods:
        return message
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(methods).encode()))
    return {**message, "headers": headers}


def methods_by_path(app: FastAPI):
    """path -> the methods the OpenAPI spec documents for it (HEAD with GET, as Starlette serves it)."""
    table: list[tuple[re.Pattern, list[str]]] = []

    def methods(path: str) -> list[str]:
        if not table:
            for template, operations in app.openapi()["paths"].items():
                verbs = {m.upper() for m in operations}
                verbs |= {"HEAD"} if "GET" in verbs else set()
                table.append((re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"),
                              sorted(verbs)))
        return next((verbs for pattern, verbs in table if pattern.match(path)), [])

    return methods


async def _send_json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
