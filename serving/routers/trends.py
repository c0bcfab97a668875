"""Trends per offence group and area (analysis.trends): the full aggregated view for staff, the public view for the
`public` role.

Trends are computed from the same panel the service forecasts from (built once, `HOTSPOT_WARM_PANEL`), and kept per
panel and view, so they always describe the data the published forecasts came from and need no earlier step.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse

from hotspot.features.errors import HotspotError
from hotspot.serving.auth import ApiKey
from hotspot.serving.dependencies import State, current_key, validation_error
from hotspot.serving.responses import errors

router = APIRouter(prefix="/v1/trends", tags=["trends"])

_cache: dict[tuple[int, str], tuple[object, object]] = {}  # (id(panel), view) -> (panel, Trends)
_pages: dict[tuple[int, str, str], tuple[object, str]] = {}  # (id(panel), view, area) -> (panel, HTML page)
_lock = threading.Lock()
AREA_HELP = ("whose weekly rows to include: the whole area or a unit of `[trends] areas` (the listed values; any "
             "other gets 422) [default: the whole area]")


def area_names(cfg) -> list[str] | None:
    """The values `?area=` takes: the whole area and each unit of `[trends] areas`, as analysis.trends names them
    (None when the areas file cannot be read; the request then says so)."""
    from hotspot.analysis.trends import WHOLE_AREA

    tc = cfg.trends
    if tc.areas is None:
        return [WHOLE_AREA]
    try:
        import geopandas as gpd

        units = gpd.read_file(tc.areas)
        named = units.loc[~(units.geometry.isna() | units.geometry.is_empty), tc.name_column]
    except Exception:  # noqa: BLE001 - pyogrio raises several types; a missing column is a KeyError
        return None
    return [WHOLE_AREA, *sorted(set(named.astype(str)))]


def document_areas(schema: dict, state) -> None:
    """List the configured areas as the enum of `?area=` in the OpenAPI spec."""
    names = area_names(state.cfg) if state.cfg is not None else None
    operation = schema.get("paths", {}).get(router.prefix, {}).get("get", {})
    for param in operation.get("parameters", []):
        if param.get("name") == "area" and names:
            param["schema"] = {"type": "string", "enum": names}


async def trends_reader(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
    if not (key.can("trends:read") or key.can("trends:public")):
        raise HTTPException(403, f"role '{key.role}' may not read trends")
    return key


def _trends(state, public: bool):
    from hotspot.analysis.trends import compute_trends

    prepared = state.forecaster.panel()
    panel = prepared.panel
    view = "public" if public else "full"
    with _lock:
        hit = _cache.get((id(panel), view))
        if hit is not None and hit[0] is panel:
            return hit[1]
        trends = compute_trends(state.cfg, panel, public=public)
        trends.meta.update(data_fingerprint=prepared.incidents.fingerprint)
        for key in [k for k, (p, _) in _cache.items() if p is not panel]:
            del _cache[key]
        _cache[(id(panel), view)] = (panel, trends)
        return trends


def _page(state, trends, public: bool, area: str) -> str:
    """The trends' HTML page for one area, rendered once per panel, view and area (its figures take a while)."""
    from hotspot.analysis.trends import trends_page

    panel = state.forecaster.panel().panel
    key = (id(panel), "public" if public else "full", area)
    hit = _pages.get(key)
    if hit is not None and hit[0] is panel:
        return hit[1]
    page = trends_page(trends, area)
    with _lock:
        for stale in [k for k, (p, _) in _pages.items() if p is not panel]:
            del _pages[stale]
        if len(_pages) > 64:
            _pages.clear()
        _pages[key] = (panel, page)
    return page


@router.get("", response_model=None, responses={200: {"description": "trend tables (JSON): weekly rows of one area, "
                                                                     "yearly and change rows of every area, cells or "
                                                                     "public blocks and area units as GeoJSON; or "
                                                                     "the HTML page with `?format=html`",
                                                      "content": {"text/html": {"schema": {"type": "string"}}}},
                                                **errors(401, 403, 422, 503)},
            summary="Counts, rates and seasonally adjusted change per offence group and area")
def get_trends(
    state: State, key: Annotated[ApiKey, Depends(trends_reader)],
    view: Annotated[Literal["full", "public"] | None, Query(description="public: area units and blocks of "
                                                                        "privacy.public_cell_size_m with small counts "
                                                                        "suppressed (the only view of the public "
                                                                        "role)")] = None,
    area: Annotated[str | None, Query(max_length=200, description=AREA_HELP)] = None,
    format: Annotated[Literal["json", "html"] | None, Query(description="json (default) or html: the page with "
                                                                        "the figures and change tables of `area`")]
    = None,
):
    from hotspot.analysis.trends import WHOLE_AREA

    if state.cfg is None or state.forecaster is None:
        raise HTTPException(503, state.config_error or "no study area configured")
    public = view == "public" or not key.can("trends:read") or state.cfg.privacy.public
    try:
        trends = _trends(state, public)
    except (HotspotError, ValueError) as exc:
        raise HTTPException(503, str(exc).splitlines()[0]) from None
    area = area or WHOLE_AREA
    if area not in trends.meta["areas"]:
        raise validation_error("query", "area", f"unknown area {area!r}; areas: {trends.meta['areas'][:20]}", area)
    if format == "html":
        return HTMLResponse(_page(state, trends, public, area))
    return JSONResponse(trends.to_dict(weekly_area=area))
