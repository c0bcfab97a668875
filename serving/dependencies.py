"""Request dependencies: the service state, API-key authentication, role checks and forecast query parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from hotspot.serving.auth import KEY_ID_CHARS, KEY_SCOPE, PERMISSIONS, REFUSED_KEY_SCOPE, ApiKey
from hotspot.serving.rate_limit import RateLimiter
from hotspot.serving.schemas import BBOX_PATTERN, MAX_TOP
from hotspot.serving.state import ProductService, ServiceState, UnknownProduct

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey",
                              description="an API key made with `hotspot keys create --role ROLE` "
                                          "(`Authorization: Bearer KEY` works too)")


async def get_state(request: Request) -> ServiceState:
    """The service state of the app serving the request."""
    # async on purpose, here and below: FastAPI runs plain `def` dependencies in a worker thread, which costs more
    # than the work itself on the hot path
    return request.app.state.hotspot


State = Annotated[ServiceState, Depends(get_state)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


async def current_key(request: Request, header_key: Annotated[str | None, Security(api_key_header)] = None) -> ApiKey:
    """The caller's active API key; 401 when it is missing, unknown or revoked, 429 when a public key or its
    address is over its rate limit."""
    key = header_key
    if not key:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    if not key:
        raise _unauthorized("missing API key: send it in the X-API-Key header")
    state: ServiceState = request.app.state.hotspot
    digest = state.keys.digest(key)
    record = None
    if digest is not None:
        record = state.keys.cached(digest) or await run_in_threadpool(state.keys.lookup, digest)
    if record is None:
        if digest is not None:  # looks like a key: log which one was refused (its public id, never the key)
            request.scope[REFUSED_KEY_SCOPE] = key[:KEY_ID_CHARS]
        raise _unauthorized("invalid or revoked API key")
    request.scope[KEY_SCOPE] = record
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        refusal = limiter.check(record.role, record.key_id, request.client.host if request.client else None)
        if refusal is not None:
            raise HTTPException(429, refusal.detail, headers={"Retry-After": str(refusal.retry_after_s)})
    return record


def require(permission: str):
    """A dependency that lets through keys whose role has `permission` (403 otherwise)."""
    allowed = [role for role, perms in PERMISSIONS.items() if permission in perms]

    async def check(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
        if not key.can(permission):
            raise HTTPException(403, f"role '{key.role}' may not do this ({permission}); it needs "
                                     f"{' or '.join(allowed)}")
        return key

    return check


def validation_error(where: str, field: str, message: str, value) -> RequestValidationError:
    """A 422 error naming where (query, path, body), the field, what was wrong and the value given."""
    return RequestValidationError([{"loc": (where, field), "msg": message, "type": "value_error", "input": value}])


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """`?bbox=` as (min_lon, min_lat, max_lon, max_lat), or None when absent; a 422 names what is wrong."""
    if text is None:
        return None
    try:
        minlon, minlat, maxlon, maxlat = (float(v) for v in text.split(","))
    except ValueError:
        raise validation_error("query", "bbox", "bbox must be four numbers minlon,minlat,maxlon,maxlat", text) \
            from None
    problems = []
    if not (-180 <= minlon <= 180 and -180 <= maxlon <= 180):
        problems.append("longitudes must lie in -180..180")
    if not (-90 <= minlat <= 90 and -90 <= maxlat <= 90):
        problems.append("latitudes must lie in -90..90")
    if minlon > maxlon or minlat > maxlat:
        problems.append("min must not exceed max (minlon,minlat,maxlon,maxlat)")
    if problems:
        raise validation_error("query", "bbox", "bbox " + "; ".join(problems), text)
    return minlon, minlat, maxlon, maxlat


BBOX_HELP = ("minlon,minlat,maxlon,maxlat (WGS84 degrees; longitudes -180..180, latitudes -90..90, as the pattern "
             "says): only cells that intersect this box. Each min must not exceed its max (minlon <= maxlon, "
             "minlat <= maxlat), which the pattern cannot say: a box that breaks it gets 422")


@dataclass(frozen=True)
class ForecastQuery:
    top: int | None
    bbox: tuple[float, float, float, float] | None
    fmt: Literal["geojson", "csv"]


async def forecast_query(
    request: Request,
    top: Annotated[int | None, Query(ge=1, le=MAX_TOP,
                                     description="only the N highest-risk cells (after bbox)")] = None,
    bbox: Annotated[str | None, Query(pattern=BBOX_PATTERN, max_length=200, description=BBOX_HELP)] = None,
    format: Annotated[Literal["geojson", "csv"] | None, Query(description="response format; default from the Accept "
                                                                          "header (text/csv), else GeoJSON")] = None,
) -> ForecastQuery:
    """The query parameters every forecast route takes, checked together."""
    fmt = format
    if fmt is None:
        accept = request.headers.get("accept", "")
        csv_at = accept.find("text/csv")
        json_at = min((i for i in (accept.find("json"),) if i >= 0), default=len(accept) + 1)
        fmt = "csv" if 0 <= csv_at < json_at else "geojson"
    return ForecastQuery(top, parse_bbox(bbox), fmt)

PRODUCT_HELP = ("the forecast product: one of the area's products (`products` of `/v1/areas`: name, title and "
                "offences; the enum lists them) [default: the first]; any other gets 422 naming them")


async def product_param(
    state: State,
    product: Annotated[str | None, Query(max_length=100, description=PRODUCT_HELP)] = None,
) -> ProductService:
    """The product a request asks for with `?product=` (default: the area's first); 422 naming the products there
    are for any other, 503 when no study area is configured."""
    if not state.products:
        raise HTTPException(503, state.config_error or "no study area configured")
    try:
        return state.product(product)
    except UnknownProduct as exc:
        raise validation_error("query", "product", str(exc), product) from None


Product = Annotated[ProductService, Depends(product_param)]


def document_products(schema: dict, state: ServiceState) -> None:
    """List the area's products as the enum of every `?product=` in the OpenAPI spec."""
    if not state.products:
        return
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("name") == "product" and param.get("in") == "query":
                    param["schema"] = {"type": "string", "enum": list(state.products), "maxLength": 100}


def week_problem(forecaster, week: str | None, exc: Exception) -> str:
    """Why `week` cannot be forecast; a date pandas cannot hold (before 1677, after 2262) is named like any other
    date that is no period start."""
    from pandas.errors import OutOfBoundsDatetime

    if isinstance(exc, OutOfBoundsDatetime):
        starts = forecaster.panel().panel.period_starts
        return f"{week} is not a period start of this panel (periods run {starts[0].date()} .. {starts[-1].date()})"
    return str(exc).splitlines()[0]
