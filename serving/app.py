"""The FastAPI application: factory, lifespan, middleware and error handlers.

`hotspot serve` runs `create_app` under uvicorn; settings come from HOTSPOT_* environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from hotspot.serving.dependencies import document_products
from hotspot.serving.hotpath import LatestForecastFastPath, ReportFastPath
from hotspot.serving.middleware import ServiceMiddleware, methods_by_path
from hotspot.serving.rate_limit import RateLimiter, document_429
from hotspot.serving.routers import areas, briefing, forecasts, health, models, pages, reports
from hotspot.serving.routers import map as map_router
from hotspot.serving.routers import trends as trends_router
from hotspot.serving.routers.map import STATIC_DIR
from hotspot.serving.settings import Settings
from hotspot.serving.state import ServiceState

log = logging.getLogger("hotspot.serving")

DESCRIPTION = """Weekly crime-hotspot forecasts and the reports that judge them.

Every `/v1` endpoint needs an API key (`X-API-Key` header) whose role allows it: **viewer** reads forecasts,
**auditor** also reads reports and models, **analyst** also publishes. Published forecasts are immutable; each
names the model version, data fingerprint and time that made it. Recorded incidents are policing data, not ground
truth. The map for command staff is at [/map](/map); the reports, per model version, at [/reports](/reports) (both
ask for the key in the page and send it as a header).
"""

# Pattern mismatches say what was expected instead of quoting the regular expression.
PATTERN_MESSAGES = {
    "bbox": "bbox must be four numbers minlon,minlat,maxlon,maxlat (WGS84 degrees: longitudes -180..180, latitudes "
            "-90..90), e.g. -79.42,43.64,-79.37,43.67",
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
            document_429(schema)
            state = getattr(app.state, "hotspot", None)
            if state is not None:
                trends_router.document_areas(schema, state)
                document_products(schema, state)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


async def _refresh_caches(state: ServiceState, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await run_in_threadpool(state.refresh_caches)
        except Exception as exc:  # noqa: BLE001 - the caches expire by themselves; requests then ask the database
            log.warning("cache refresh failed: %s", exc)


async def _refresh_reports(state: ServiceState) -> None:
    """Pick up new report runs within reports.ttl_s; a task of its own, so a slow MLflow never holds up the key and
    pointer refresh above. Ticks at most every second, so a changed ttl_s takes effect soon."""
    while True:
        await asyncio.sleep(min(state.reports.ttl_s, 1.0) if state.reports.ttl_s > 0 else 1.0)
        if state.reports.ttl_s > 0:
            await run_in_threadpool(state.refresh_reports)


def _settle() -> None:
    """Move what start-up made (modules, the model, the panel) out of the garbage collector's sight: a full
    collection over millions of long-lived objects would otherwise pause every request now and then."""
    gc.collect()
    gc.freeze()


def _warm_panel(state: ServiceState) -> None:
    try:
        state.forecaster.panel()
    except Exception as exc:  # noqa: BLE001 - the first publication will report it
        log.warning("panel not built at start-up: %s", exc)
        return
    _settle()


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
        for product in state.products.values():
            if not await run_in_threadpool(product.forecaster.try_load_champion, 0.0) \
                    and product.forecaster.needs_champion:
                log.warning("%s: %s", "not ready" if product is state.default else f"product {product.name}",
                            product.forecaster.error)
        if state.forecaster is not None:
            if settings.warm_panel:  # build the panel in the background so the first publication is quick
                threading.Thread(target=_warm_panel, args=(state,), name="hotspot-panel", daemon=True).start()
        elif state.config_error:
            log.warning("not ready: %s", state.config_error)
        await run_in_threadpool(state.refresh_reports)  # rendered once here; requests never ask MLflow
        _settle()
        tasks = [asyncio.create_task(_flush_access_log(state, settings.access_log_flush_s))]
        if settings.cache_ttl_s > 0:
            tasks.append(asyncio.create_task(_refresh_caches(state, settings.cache_ttl_s / 2)))
        if state.reports is not None:
            tasks.append(asyncio.create_task(_refresh_reports(state)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await run_in_threadpool(state.close)

    # /docs and /redoc are pages.py's, with their scripts from this server rather than FastAPI's default CDN
    app = FastAPI(title="hotspot", version=version("hotspot"), description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_public_key, settings.rate_limit_public_address)
    app.add_middleware(LatestForecastFastPath)  # inside ServiceMiddleware: fast answers are logged too
    app.add_middleware(ReportFastPath)
    app.add_middleware(ServiceMiddleware, max_body_bytes=settings.max_body_bytes, allowed_methods=methods_by_path(app))
    app.add_exception_handler(RequestValidationError, _validation_problem)
    for router in (health.router, forecasts.router, areas.router, briefing.router, reports.router, models.router,
                   map_router.router, trends_router.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(pages.DOCS_ASSETS, StaticFiles(directory=pages.docs_assets()), name="docs-assets")
    _errors_as_json(app)
    return app

