"""The study-area outline and the named areas cells are called after (features.places), for the map's background.

Computed once from the panel the service forecasts from (built once, `HOTSPOT_WARM_PANEL`) and kept as rendered
bytes, since neither changes while the service runs.
"""

from __future__ import annotations

import json
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from hotspot.features.errors import HotspotError
from hotspot.serving.auth import ApiKey
from hotspot.serving.dependencies import State, require
from hotspot.serving.rendering import GEOJSON
from hotspot.serving.responses import errors
from hotspot.serving.schemas import AreaCollection

router = APIRouter(prefix="/v1/areas", tags=["areas"])

_cache: dict[int, tuple[object, bytes]] = {}  # id(prepared) -> (prepared, rendered collection)
_lock = threading.Lock()


def area_collection(prepared) -> dict:
    """The outline of the study area and its named areas as a WGS84 FeatureCollection; the outline alone where the
    config names no places."""
    import geopandas as gpd
    import numpy as np

    from hotspot.features.places import Places

    boundary = prepared.incidents.area
    places = prepared.places
    if places is None:
        empty = gpd.GeoDataFrame({"name": [], "n_cells": [], "label_x": [], "label_y": []}, geometry=[],
                                 crs=boundary.crs)
        places = Places(np.empty(0, dtype=object), empty, "none")
    return places.to_geojson(boundary)


def rendered_areas(state) -> bytes:
    """The areas of the service's panel as GeoJSON bytes, with the area's products, computed on the first call and
    reused."""
    prepared = state.forecaster.panel()
    with _lock:
        hit = _cache.get(id(prepared))
        if hit is not None and hit[0] is prepared:
            return hit[1]
        collection = area_collection(prepared)
        products = [p.describe(default=p is state.default) for p in state.products.values()]
        collection = {"type": collection["type"], "origin": collection.get("origin"), "products": products,
                      **{k: v for k, v in collection.items() if k not in ("type", "origin")}}
        body = json.dumps(collection, separators=(",", ":")).encode()
        _cache.clear()
        _cache[id(prepared)] = (prepared, body)
        return body


@router.get("", response_model=None, response_class=Response,
            responses={200: {"model": AreaCollection, "content": {GEOJSON: {}},
                             "description": "GeoJSON FeatureCollection (RFC 7946, WGS84): the study-area outline "
                                            "(kind = outline) first, then one feature per named area (kind = area) "
                                            "with its name, its number of cells and the point where its label "
                                            "goes; `products` (a foreign member) lists the area's forecast "
                                            "products with name, title and offences"},
                       **errors(401, 403, 503)},
            summary="The study-area outline, its named areas (the places forecast cells are named after) and its "
                    "forecast products")
async def get_areas(state: State, _: Annotated[ApiKey, Depends(require("forecasts:read"))]) -> Response:
    if state.cfg is None or state.forecaster is None:
        raise HTTPException(503, state.config_error or "no study area configured")
    try:
        body = await run_in_threadpool(rendered_areas, state)
    except (HotspotError, ValueError) as exc:
        raise HTTPException(503, str(exc).splitlines()[0]) from None
    return Response(body, media_type=GEOJSON)
