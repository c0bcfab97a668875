"""ASGI middleware: request-body cap (413, declared or chunked), HEAD answered as GET without the body, security
headers on every response, access log, and 405 answers that list every method of a path."""

from __future__ import annotations

import json
import re
import time

from fastapi import FastAPI

from hotspot.serving.auth import KEY_SCOPE, REFUSED_KEY_SCOPE
from hotspot.serving.headers import SECURITY_HEADERS, policy_for

UNLOGGED = ("/health", "/ready", "/static/", "/static-docs/", "/docs", "/openapi.json", "/redoc", "/favicon.ico")
_CSP = b"content-security-policy"


class BodyTooLarge(Exception):
    pass


class ServiceMiddleware:
    """Plain ASGI middleware (cheaper than BaseHTTPMiddleware): caps request bodies (413), answers HEAD as GET
    without the body, adds the security headers, and records every request in the access log with the key id and
    role that made it, never the key."""

    def __init__(self, app, max_body_bytes: int, allowed_methods=None):
        self.app, self.max_body_bytes = app, max_body_bytes
        self.allowed_methods = allowed_methods  # path -> methods, to answer 405 with every method of the path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500, "started": False}
        limit = self.max_body_bytes
        head = scope["method"] == "HEAD"
        # a copy: the server keeps its own scope, so it still knows the request was HEAD and sends no body
        inner = {**scope, "method": "GET"} if head else scope
        csp = policy_for(scope["path"])

        async def send_tracking(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                if message["status"] == 405 and self.allowed_methods is not None:
                    message = _with_allow(message, self.allowed_methods(scope["path"]))
                message = _with_security_headers(message, csp)
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise BodyTooLarge
            if length is None and b"transfer-encoding" in headers:
                # chunked: read it all here, against the cap, before the app starts parsing it (a BodyTooLarge
                # raised from inside FastAPI's body parsing would come out as 400)
                receive = await _read_capped(receive, limit)
            await self.app(inner, receive, send_tracking)
        except BodyTooLarge:
            if status["started"]:
                raise
            await _send_json(send_tracking, 413, {"detail": f"request body larger than {limit} bytes"})
        finally:
            path = scope["path"]
            if not path.startswith(UNLOGGED):
                state = getattr(scope["app"].state, "hotspot", None)
                if state is not None:
                    state.access.record(key=inner.get(KEY_SCOPE), method=scope["method"], path=path,
                                        status=status["code"], duration_ms=(time.perf_counter() - start) * 1000,
                                        refused_key_id=inner.get(REFUSED_KEY_SCOPE))


async def _read_capped(receive, limit: int):
    """Read the whole request body (BodyTooLarge past `limit` bytes); a receive that hands it over in one piece."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            break
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] \
        if message["type"] == "http.request" else [message]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def _with_security_headers(message: dict, csp: bytes) -> dict:
    """nosniff, no framing, no referrer and a Content-Security-Policy (the route's own when it set one)."""
    headers = list(message.get("headers", []))
    if not any(k.lower() == _CSP for k, _ in headers):
        headers.append((_CSP, csp))
    names = {k.lower() for k, _ in headers}
    headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
    return {**message, "headers": headers}


def _with_allow(message: dict, methods: list[str]) -> dict:
    """Starlette answers 405 with the methods of the first route that matched the path only; list them all."""
    if not methods:
        return message
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(methods).encode()))
    return {**message, "headers": headers}


def methods_by_path(app: FastAPI):
    """path -> the methods the OpenAPI spec documents for it (HEAD with GET, as ServiceMiddleware serves it)."""
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
