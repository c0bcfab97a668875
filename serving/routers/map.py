"""The map page for command staff. The page and its bundled Leaflet hold no data: the page asks for an API key
and reads forecasts from /v1/forecasts with it, so the data stays behind the viewer role."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from hotspot.serving.dependencies import State
from hotspot.serving.headers import map_policy, tile_source

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(include_in_schema=False)
CONFIG_SLOT = "__HOTSPOT_MAP_CONFIG__"
INLINE_SCRIPT = f"window.HOTSPOT_MAP = {CONFIG_SLOT};"  # the page's one inline script, allowed by its hash


@lru_cache(maxsize=1)
def _template() -> str:
    page = (STATIC_DIR / "map.html").read_text(encoding="utf-8")
    if f"<script>{INLINE_SCRIPT}</script>" not in page:  # its hash would allow nothing and the map would not start
        raise RuntimeError(f"serving/static/map.html must hold <script>{INLINE_SCRIPT}</script>")
    return page


@router.get("/map", response_class=HTMLResponse)
def map_page(state: State) -> HTMLResponse:
    config = {"area": state.area, "tiles": state.settings.map_tile_url}
    script = INLINE_SCRIPT.replace(CONFIG_SLOT, json.dumps(config).replace("<", "\\u003c"))
    page = _template().replace(INLINE_SCRIPT, script)
    policy = map_policy(script, tile_source(state.settings.map_tile_url))
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "Content-Security-Policy": policy})


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/map")
