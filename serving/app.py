"""The FastAPI application: factory, lifespan, middleware and error handlers.

`hotspot serve` runs `create_app` under uvicorn; settings come from HOTSPOT_* environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from hotspot import __version__
from serving.dependencies import KEY_SCOPE
from serving.routers import forecasts, health, map as map_router, models, reports
from serving.routers.map import STATIC_DIR
from serving.settings import Settings
from serving.state import ServiceState

log = logging.getLogger("hotspot.serving")

DESCRIPTION = """Weekly crime-hotspot forecasts and the reports that judge them.

Every `/v1` endpoint needs an API key (`X-API-Key` header) whose role allows it: **viewer** reads forecasts,
**auditor** also reads reports and models, **analyst** also publishes. Published forecasts are immutable; each
names the model version, data fingerprint and time that made it. Recorded incidents are policing data, not ground
truth. The map for command staff is at [/map](/map).
"""

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
                                        status=status["code"], duration_ms=(time.perf_counter() - start) * 1000)


def _with_allow(message: dict, methods: list[str]) -> dict:
    """Starlette answers 405 with the methods of the first route that matched the path only; list them all."""
    if not methods:
        return message
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(methods).encode()))
    return {**message, "headers": headers}


def _methods_by_path(app: FastAPI):
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


# Pattern mismatches say what was expected instead of quoting the regular expression.
PATTERN_MESSAGES = {
    "bbox": "bbox must be four numbers minlon,minlat,maxlon,maxlat (WGS84 degrees), e.g. -79.42,43.64,-79.37,43.67",
    "week": "week must be a date YYYY-MM-DD, e.g. 2019-12-30",
}


async def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with every problem in one readable line (`detail`) and as a list (`errors`)."""
    issues = []
    for e in exc.errors():
        loc = [x if isinstance(x, int) else str(x) for x in e.get("loc", ())]
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "string_pattern_mismatch" and loc and loc[-1] in PATTERN_MESSAGES:
            msg = PATTERN_MESSAGES[loc[-1]]
        issues.append({"loc": loc, "msg": msg, "type": str(e.get("type", "value_error"))})
    detail = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in issues) or "invalid request"
    return JSONResponse({"detail": detail, "errors": issues}, status_code=422)


async def _flush_access_log(state: ServiceState, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await run_in_threadpool(state.access.flush)
        except Exception as exc:  # noqa: BLE001 - keep serving; rows stay in the log lines
            log.warning("access log not written: %s", exc)


def _errors_as_json(app: FastAPI) -> None:
    """Error responses are application/json even where the success response is GeoJSON; FastAPI files every
    documented response under the route's media type, so move the error ones back."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    for code, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if code[0] in "45" and "application/geo+json" in content:
                            response["content"] = {"application/json": content["application/geo+json"]}
            for name in ("HTTPValidationError", "ValidationError"):  # every 422 is a ValidationProblem
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _configure_logging(settings: Settings) -> None:
    """Service messages and access lines to stderr, unless the host process set up logging already."""
    service_log = logging.getLogger("hotspot")
    if not service_log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        service_log.addHandler(handler)
        service_log.setLevel(logging.INFO)
    logging.getLogger("hotspot.access").setLevel(logging.INFO if settings.access_log_lines else logging.WARNING)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (default: from the environment)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _configure_logging(settings)
        state = await run_in_threadpool(ServiceState.open, settings)
        app.state.hotspot = state
        if state.forecaster is not None:
            if not await run_in_threadpool(state.forecaster.try_load_champion, 0.0):
                log.warning("not ready: %s", state.forecaster.error)
            if settings.warm_panel:  # build the panel in the background so the first publication is quick
                threading.Thread(target=state.forecaster.panel, name="hotspot-panel", daemon=True).start()
        elif state.config_error:
            log.warning("not ready: %s", state.config_error)
        flusher = asyncio.create_task(_flush_access_log(state, settings.access_log_flush_s))
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await run_in_threadpool(state.close)

    app = FastAPI(title="hotspot", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.add_middleware(ServiceMiddleware, max_body_bytes=settings.max_body_bytes, allowed_methods=_methods_by_path(app))
    app.add_exception_handler(RequestValidationError, _validation_problem)
    for router in (health.router, forecasts.router, reports.router, models.router, map_router.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _errors_as_json(app)
    return app

