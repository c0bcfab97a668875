"""Published forecasts: read (GeoJSON or CSV, top N, bounding box) and publish (analysts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hotspot.features.errors import HotspotError
from hotspot.serving.auth import ApiKey
from hotspot.serving.db import Publication, PublicationExists
from hotspot.serving.dependencies import (
    ForecastQuery,
    Product,
    State,
    forecast_query,
    require,
    validation_error,
    week_problem,
)
from hotspot.serving.rendering import GEOJSON
from hotspot.serving.responses import errors
from hotspot.serving.schemas import (
    WEEK_PATTERN,
    ForecastCollection,
    PublicationList,
    PublicationSummary,
    PublishRequest,
    check_week,
)

router = APIRouter(prefix="/v1/forecasts", tags=["forecasts"])

Reader = Annotated[ApiKey, Depends(require("forecasts:read"))]
Publisher = Annotated[ApiKey, Depends(require("forecasts:publish"))]
Query_ = Annotated[ForecastQuery, Depends(forecast_query)]

PROVENANCE_HEADERS = {name: {"description": text, "schema": {"type": "string"}} for name, text in {
    "X-Hotspot-Model": "registered model name", "X-Hotspot-Model-Version": "model version",
    "X-Hotspot-Data-Fingerprint": "fingerprint of the incident data", "X-Hotspot-Created-At": "when it was made",
    "X-Hotspot-Week": "period start", "X-Hotspot-Publication-Version": "version of the week's publication",
}.items()}

FORECAST_RESPONSES = {
    200: {"model": ForecastCollection, "headers": PROVENANCE_HEADERS,
          "description": "GeoJSON FeatureCollection (RFC 7946, WGS84) of cells in rank order, or CSV "
                         "(rank, cell_id, lon, lat, risk, percentile, reasons) with `?format=csv` or "
                         "`Accept: text/csv`; provenance in `metadata` and in the X-Hotspot-* headers",
          "content": {"text/csv": {"schema": {"type": "string"}}}},
    **errors(401, 403, 404, 422, 503),
}


class GeoJSONResponse(JSONResponse):
    """Declares application/geo+json in the OpenAPI spec (the handlers return pre-rendered bytes)."""

    media_type = GEOJSON


def _summary(pub: Publication, default: bool) -> PublicationSummary:
    query = f"?version={pub.version}" + ("" if default else f"&product={pub.product}")
    return PublicationSummary(id=pub.id, area=pub.area, product=pub.product, week=pub.week, version=pub.version,
                              model=pub.model_name,
                              model_version=pub.model_version, model_run_id=pub.model_run_id,
                              data_fingerprint=pub.data_fingerprint, code_version=pub.code_version,
                              created_at=pub.created_at, published_by=pub.published_by, cells=pub.n_cells,
                              url=f"/v1/forecasts/{pub.week}{query}")



def _of(state: State, product) -> str:
    """The area, and the product where the area has several: how a message names whose forecast is missing."""
    return f"{product.title} in {state.area}" if state.cfg.has_products else str(state.area)


def _require_area(state: State) -> None:
    if state.cfg is None:
        raise HTTPException(503, state.config_error or "no study area configured")


async def _respond(state: State, pub: Publication, q: ForecastQuery) -> Response:
    rendered = state.renderer.cached(pub, q.top, q.bbox, q.fmt)
    if rendered is None:
        rendered = await run_in_threadpool(state.renderer.render, pub, q.top, q.bbox, q.fmt)
    return Response(rendered.body, media_type=rendered.media_type, headers=rendered.headers)


@router.get("", response_model=PublicationList, responses=errors(401, 403, 422, 503),
            summary="Published forecasts, newest week first")
def list_publications(state: State, _: Reader, product: Product,
                      limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 200):
    _require_area(state)
    default = product is state.default
    return PublicationList(area=state.area, product=product.name, product_title=product.title,
                           publications=[_summary(p, default) for p in state.store.list(state.area, product.name,
                                                                                        limit)])


@router.get("/latest", response_class=GeoJSONResponse, response_model=None, responses=FORECAST_RESPONSES,
            summary="The latest published forecast (highest version of the most recent week)")
async def latest_forecast(state: State, q: Query_, _: Reader, product: Product, request: Request) -> Response:
    _require_area(state)
    fresh, pub = state.latest_cached(product.name)
    if not fresh:
        pub = await run_in_threadpool(state.latest_publication, product.name)
    if pub is None:
        raise HTTPException(404, f"no forecast published yet for {_of(state, product)}")
    response = await _respond(state, pub, q)
    state.memo.remember(request.scope["query_string"], request.headers.get("accept", "").encode("latin-1"),
                        product.name, pub.id, response)
    return response


@router.get("/{week}", response_class=GeoJSONResponse, response_model=None, responses=FORECAST_RESPONSES,
            summary="The forecast published for one week (its highest version unless ?version=)")
async def week_forecast(
    state: State, q: Query_, _: Reader, product: Product,
    week: Annotated[str, Path(pattern=WEEK_PATTERN, description="YYYY-MM-DD period start",
                              json_schema_extra={"format": "date"})],
    version: Annotated[int | None, Query(ge=1, le=1_000_000, description="a given version of the week")] = None,
) -> Response:
    _require_area(state)
    try:
        check_week(week)
    except ValueError as exc:
        raise validation_error("path", "week", str(exc), week) from None
    fresh, pub = state.week_cached(week, version, product.name)
    if not fresh:
        pub = await run_in_threadpool(state.week_publication, week, version, product.name)
    if pub is None:
        which = f"version {version} of " if version else ""
        raise HTTPException(404, f"no forecast published for {which}the week of {week} for {_of(state, product)}")
    return await _respond(state, pub, q)


@router.post("", status_code=201, response_model=PublicationSummary,
             responses=errors(400, 401, 403, 409, 413, 422, 503),
             summary="Compute a week's forecast of a product (auto, or the pinned model) and publish it (analysts)")
def publish_forecast(body: PublishRequest, state: State, key: Publisher, product: Product,
                     response: Response) -> PublicationSummary:
    _require_area(state)
    forecaster = product.forecaster
    named = product.name if state.cfg.has_products else None
    with state.publish_lock:
        if body.week and not body.new_version:  # refuse before computing anything
            existing = state.store.find(state.area, product.name, body.week)
            if existing is not None:
                raise HTTPException(409, str(PublicationExists(state.area, body.week, existing.version, named)))
        if forecaster.needs_champion:  # auto (the default) and a pinned version need no champion
            try:
                forecaster.load_champion()
            except HotspotError as exc:
                raise HTTPException(503, str(exc).splitlines()[0]) from None
        try:
            rows = forecaster.forecast(body.week)
        except (ValueError, IndexError, HotspotError) as exc:
            raise validation_error("body", "week", week_problem(forecaster, body.week, exc), body.week) from None
        try:
            pub = state.store.publish(state.area, product.name, rows.week, rows.metadata, rows.cells,
                                      new_version=body.new_version, published_by=key.key_id)
        except PublicationExists as exc:
            raise HTTPException(409, str(exc)) from None
    state.published(pub)
    forecaster.log_publication(rows, pub.id, pub.version)
    summary = _summary(pub, product is state.default)
    response.headers["Location"] = summary.url
    return summary
