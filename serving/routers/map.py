"""The map page for command staff. The page and its bundled Leaflet hold no data: the page asks for an API key
and reads forecasts from /v1/forecasts with it, so the data stays behind the viewer role."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from hotspot.serving.dependencies import State
from hotspot.serving.headers import map_policy, tile_source
from hotspot.serving.routers.pages import products
from hotspot.training.pages import render

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # the page's script, styles and bundled Leaflet
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
router = APIRouter(include_in_schema=False)


def config_script(config: dict) -> str:
    """The page's one inline script (allowed by its hash): the map's config as JSON, "<" escaped so that no
    "</script>" in a value can end the script early."""
    config_json = json.dumps(config).replace("<", "\\u003c")
    return f"window.HOTSPOT_MAP = {config_json};"


@router.get("/map", response_class=HTMLResponse)
def map_page(state: State, product: str | None = None) -> HTMLResponse:
    settings = state.settings
    picker = products(state, product)  # ?product= chooses; the default when absent or unknown
    # titles only where the config lists [[products]]: a single-product area's map reads as before
    named = picker["products"] if state.cfg is not None and state.cfg.has_products else []
    script = config_script({"area": state.area, "tiles": settings.map_tile_url,
                            "tileAttribution": settings.map_tile_attribution if settings.map_tile_url else None,
                            "products": named})
    # Markup: the script is already safe (JSON with "<" escaped) and must reach the page byte for byte, since the
    # Content-Security-Policy allows it by its hash
    page = render("map.html.j2", folder=TEMPLATES, inline_script=Markup(script), **picker)
    policy = map_policy(script, tile_source(settings.map_tile_url))
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "Content-Security-Policy": policy})


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/map")
