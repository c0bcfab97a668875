"""Browser pages for the reports and the API docs, all served from this server (they work offline).

The report pages (`/reports`, `/reports/accuracy|fairness|trends`) hold no data and need no key to load: their
script (static/reports.js, with the key dialog of static/keydialog.js) asks for the API key, keeps it in the tab's
sessionStorage, fetches the report from the API with it in the X-API-Key header (never in a URL or a cookie) and
shows the report's HTML in a sandboxed srcdoc frame. `/docs` (Swagger UI) and `/redoc` use the copies of their
scripts that the fastapi-offline package ships, instead of FastAPI's default CDN.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from hotspot.serving.auth import PERMISSIONS
from hotspot.serving.dependencies import State
from hotspot.serving.headers import docs_policy, report_page_policy
from hotspot.training.pages import render

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
DOCS_ASSETS = "/static-docs"  # where app.py mounts docs_assets()
router = APIRouter(include_in_schema=False)

# what each page shows, and the permission its API route asks for (the page names the roles that have it)
PAGES = {
    "accuracy": ("Accuracy report", "reports:read",
                 "every model beside the baselines on the same backtest weeks"),
    "fairness": ("Fairness audit", "reports:read", "who is flagged, against population and recorded incidents"),
    "briefing": ("Weekly briefing", "forecasts:read", "the printable briefing for command staff: the top cells with "
                                                      "place and reasons, what changed, how last week did"),
    "trends": ("Trends", "trends:read", "recorded incidents per offence group and area, with seasonally adjusted "
                                        "change"),
}


def docs_assets() -> Path:
    """The folder of Swagger UI's and ReDoc's scripts and styles (the fastapi-offline package's copies)."""
    return Path(str(files("fastapi_offline") / "static"))


# ReDoc's sidebar shows the Redocly logo from its CDN, unconditionally (ReDoc 2.5): served with that one address
# replaced by an empty data: image, which ReDoc drops when it does not load, so the page fetches nothing external
REDOC_JS = "redoc.standalone.js"
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def redoc_script() -> bytes:
    """ReDoc's standalone script as fastapi-offline ships it, less its one external image."""
    return (docs_assets() / REDOC_JS).read_bytes().replace(REDOC_LOGO, b"data:,")


def roles_with(permission: str) -> str:
    """The roles that have `permission`, for a sentence: 'auditor or analyst'."""
    roles = [role for role, perms in PERMISSIONS.items() if permission in perms and role != "public"]
    return ", ".join(roles[:-1]) + (" or " if len(roles) > 1 else "") + roles[-1]


def _page(template: str, **context) -> HTMLResponse:
    return HTMLResponse(render(template, folder=TEMPLATES, **context),
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": report_page_policy()})


def products(state, product: str | None) -> dict:
    """The picker's products (name, title; the default first) and the one chosen by `?product=` (the default when
    absent or unknown: the API then names the products there are)."""
    listed = [{"name": p.name, "title": p.title} for p in state.products.values()]
    names = [p["name"] for p in listed]
    return {"products": listed, "product": product if product in names else (names[0] if names else None)}


@router.get("/reports", response_class=HTMLResponse)
def reports_index_page(state: State, product: str | None = None) -> HTMLResponse:
    return _page("reports_index.html.j2", area=state.area or "", roles=roles_with("reports:read"),
                 **products(state, product))


@router.get("/reports/{kind}", response_class=HTMLResponse)
def report_page(state: State, kind: Literal["accuracy", "fairness", "trends", "briefing"],
                product: str | None = None) -> HTMLResponse:
    title, permission, about = PAGES[kind]
    # trends describe the area's records, whatever the product
    return _page("report_page.html.j2", kind=kind, title=title, about=about, area=state.area or "",
                 roles=roles_with(permission), **(products(state, product) if kind != "trends" else {"products": []}))


def _inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", html, re.S)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    # validatorUrl null: Swagger UI would otherwise show a badge image fetched from an outside validator
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}
    page = get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: API docs",
                               swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png", swagger_ui_parameters=parameters)
    html = page.body.decode("utf-8")
    return HTMLResponse(html, headers={"Content-Security-Policy": docs_policy(_inline_scripts(html))})


@router.get(f"{DOCS_ASSETS}/{REDOC_JS}")  # before app.py's mount of the folder, so this copy is the one served
def redoc_js() -> Response:
    return Response(redoc_script(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    app = request.app
    page = get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title}: API reference",
                          redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                          redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
    html = page.body.decode("utf-8")
    return HTMLResponse(html, headers={"Content-Security-Policy": docs_policy(_inline_scripts(html))})
