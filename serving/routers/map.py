"""The map page for command staff. The page and its bundled Leaflet hold no data: the page asks for an API key
and reads forecasts from /v1/forecasts with it, so the data stays behind the viewer role."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from serving.dependencies import State

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _template() -> str:
    return (STATIC_DIR / "map.html").read_text(encoding="utf-8")


@router.get("/map", response_class=HTMLResponse)
def map_page(state: State) -> HTMLResponse:
    config = {"area": state.area, "tiles": state.settings.map_tile_url}
    page = _template().replace("__HOTSPOT_MAP_CONFIG__", json.dumps(config).replace("<", "\\u003c"))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/map")
