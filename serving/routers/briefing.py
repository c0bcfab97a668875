"""The weekly briefing for command staff (viewers): one or two printable pages as PDF or HTML."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from hotspot.features.errors import HotspotError
from hotspot.serving.auth import ApiKey
from hotspot.serving.dependencies import Product, State, require, validation_error, week_problem
from hotspot.serving.live import stored_live_record
from hotspot.serving.responses import errors
from hotspot.serving.schemas import WEEK_PATTERN, check_week

router = APIRouter(prefix="/v1/briefing", tags=["briefing"])

Reader = Annotated[ApiKey, Depends(require("forecasts:read"))]

MEDIA_TYPES = {"pdf": "application/pdf", "html": "text/html; charset=utf-8"}

BRIEFING_RESPONSES = {
    200: {"description": "The briefing of the week with what forecasts the service's weeks (auto by default, "
                         "or the pinned model; HOTSPOT_FORECAST_MODEL): the title (area, product, week, model, when "
                         "made), a map of the top cells with the area's outline and "
                         "place labels, the top N table with places and reasons, what changed since last week, "
                         "how last week's forecast did beside the best baseline on the same week, the live record of "
                         "the published forecasts (where `hotspot cycle` has scored some), the caveat that "
                         "recorded incidents are policing data, and provenance. PDF by default, HTML with "
                         "`?format=html`; one or two A4 or Letter pages.",
          "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}},
                      "text/html": {"schema": {"type": "string"}}},
          "headers": {"X-Hotspot-Week": {"description": "start of the week briefed", "schema": {"type": "string"}}}},
    **errors(401, 403, 404, 422, 503),
}


@router.get("", response_class=Response, responses=BRIEFING_RESPONSES,
            summary="The weekly briefing for command staff as PDF or HTML (viewers)")
def weekly_briefing(
    state: State, _: Reader, product: Product,
    week: Annotated[str | None, Query(pattern=WEEK_PATTERN, description="YYYY-MM-DD start of the week "
                                      "[default: the first week not yet recorded]",
                                      json_schema_extra={"format": "date"})] = None,
    format: Annotated[Literal["pdf", "html"], Query(description="pdf or html")] = "pdf",  # noqa: A002 - the name users type
    top: Annotated[int, Query(ge=1, le=100, description="cells in the top list and on the map")] = 10,
    paper: Annotated[Literal["a4", "letter"], Query(description="page size")] = "a4",
) -> Response:
    forecaster = product.forecaster
    if week is not None:
        try:
            check_week(week)
        except ValueError as exc:
            raise validation_error("query", "week", str(exc), week) from None
    if forecaster.needs_champion:  # auto (the default) and a pinned version need no champion
        try:
            forecaster.load_champion()
        except HotspotError as exc:
            raise HTTPException(503, str(exc).splitlines()[0]) from None
    live = stored_live_record(state.store, state.area, product.name)  # the viewers' briefing carries it too
    try:
        body, week_start = forecaster.briefing_page(week, top, format, paper, live if live["n_weeks"] else None)
    except (ValueError, IndexError, HotspotError) as exc:
        # a real date that is no week of the data: there is no briefing of it (404, like an unpublished forecast)
        raise HTTPException(404, f"no briefing for the week of {week}: {week_problem(forecaster, week, exc)}") \
            from None
    filename = f"briefing-{product.cfg.model_key}-{week_start}.{format}"  # AREA-PRODUCT with [[products]]
    return Response(body, media_type=MEDIA_TYPES[format],
                    headers={"X-Hotspot-Week": week_start,
                             "Content-Disposition": f'inline; filename="{filename}"'})
