"""Accuracy and fairness reports (auditors and analysts), as JSON or as the HTML page, rendered from MLflow runs; the
latest of each kind, or the one of a registered model version (`?version=`), and an index of them per version. Also
the live record (how the published forecasts did against what was recorded, beside the baselines; auditors and
analysts) and the weekly cycles with their drift and decay flags (analysts), both read from the publication store."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from hotspot.serving.artifacts import REPORTS, Report, ReportsUnavailable, report_response
from hotspot.serving.auth import ApiKey
from hotspot.serving.dependencies import Product, State, require
from hotspot.serving.live import stored_live_record
from hotspot.serving.responses import errors
from hotspot.serving.routers.models import not_registered
from hotspot.serving.schemas import (  # the bytes are rendered in artifacts.py
    CycleList,
    LiveReport,
    ReportEnvelope,
    ReportIndex,
)

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Auditor = Annotated[ApiKey, Depends(require("reports:read"))]
LiveReader = Annotated[ApiKey, Depends(require("live:read"))]
CycleReader = Annotated[ApiKey, Depends(require("cycles:read"))]
LIVE_CYCLES = 5  # the latest cycles shown beside the live record
Format = Annotated[Literal["json", "html"] | None, Query(description="json (default) or html; `Accept: text/html` "
                                                                     "also gives the page")]
Version = Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description="a registered model version (see "
                                      "`/v1/reports`): its report instead of the latest [default: the latest]")]
REPORT_RESPONSES = {200: {"model": ReportEnvelope, "content": {"text/html": {"schema": {"type": "string"}}},
                          "description": "the latest report (or the one of `?version=`) with the MLflow run that "
                                         "logged it, or its HTML page"},
                    **errors(401, 403, 404, 422, 503)}
PAGES = "/reports"  # the browser pages (routers/pages.py) that ask for the key and show these reports


def _listing(product) -> dict | None:
    try:
        return product.models.listing()
    except Exception as exc:  # noqa: BLE001 - the registry is MLflow: unreachable is a 503, not a 500
        raise HTTPException(503, f"model registry not readable: {str(exc).splitlines()[0] if str(exc) else exc}") \
            from None


async def _serve(state: State, kind: str, request: Request, format: str | None, version: str | None,
                 product) -> Response:
    # MLflow-free for the latest report: the bytes rendered when the background refresh first saw its run;
    # hotpath.ReportFastPath answers most such requests before they get here, with the same report_response. A
    # version's report is one of the kept runs too; only the version list comes from the (cached) registry.
    try:
        report = product.reports.latest(kind)
        if version is not None:
            report = await run_in_threadpool(_version_report, state, kind, version, product)
    except ReportsUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    if report is None:
        raise HTTPException(404, product.reports.missing_message(kind))
    wants_html = format == "html" or (format is None and "text/html" in request.headers.get("accept", ""))
    response = report_response(report, wants_html, request.headers.get("accept-encoding", ""))
    if response is None:
        raise HTTPException(404, f"the {kind} report of run {report.run_id} has no HTML page")
    return response


def _version_report(state, kind: str, version: str, product) -> Report:
    listing = _listing(product)
    if listing is None:
        raise HTTPException(404, f"{not_registered(state, product)}; so no version {version}")
    entry = next((v for v in listing["versions"] if v["version"] == version), None)
    if entry is None:
        known = ", ".join(v["version"] for v in listing["versions"])
        raise HTTPException(404, f"no version {version} of model {listing['name']}; versions: {known}")
    report = product.reports.for_version(kind, entry)
    if report is None:
        raise HTTPException(404, f"no {kind} report for version {version} of model {listing['name']}: "
                                 + product.reports.missing_message(kind).split(": ", 1)[-1])
    return report


def _link(kind: str, report: Report | None, version: str | None = None, product: str | None = None) -> dict | None:
    if report is None:
        return None
    params = ([f"version={version}"] if version is not None else []) + ([f"product={product}"] if product else [])
    query = "?" + "&".join(params) if params else ""
    return {"run_id": report.run_id, "created_at": report.created_at,
            "data_fingerprint": report.tags.get("data_fingerprint"), "code_version": report.tags.get("code_version"),
            "json": f"{router.prefix}/{kind}{query}",
            "html": f"{router.prefix}/{kind}{query}{'&' if query else '?'}format=html",
            "page": f"{PAGES}/{kind}{query}"}


def _index(state, product) -> dict:
    from hotspot.serving.routers.trends import area_names

    named = None if product is state.default else product.name  # links name a product other than the default
    try:
        latest = {kind: _link(kind, product.reports.latest(kind), product=named) for kind in REPORTS}
        listing = _listing(product)
        versions = []
        for v in (listing or {}).get("versions", []):
            versions.append({
                "version": v["version"], "champion": v["champion"], "aliases": v["aliases"], "status": v["status"],
                "created_at": v["created_at"], "run_id": v["run_id"], "data_fingerprint": v["data_fingerprint"],
                "reports": {kind: _link(kind, product.reports.for_version(kind, v), v["version"], named)
                            for kind in REPORTS}})
    except ReportsUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    areas = area_names(state.cfg) or []
    return {"area": state.area, "product": product.name, "product_title": product.title,
            "model": listing["name"] if listing else None,
            "champion": listing["champion"] if listing else None, "versions": versions, "latest": latest,
            "trends": {"areas": areas, "json": "/v1/trends", "page": f"{PAGES}/trends",
                       "made": "on request, from the data the published forecasts are made from"},
            "note": None if listing else not_registered(state, product)}


@router.get("", response_model=ReportIndex, responses=errors(401, 403, 422, 503),
            summary="Every registered model version with the reports that judge it, the latest reports and the trends")
async def report_index(state: State, _: Auditor, product: Product):
    return await run_in_threadpool(_index, state, product)


@router.get("/accuracy", response_model=None, responses=REPORT_RESPONSES,
            summary="The latest accuracy report (backtest: every model beside the baselines on the same weeks)")
async def accuracy_report(state: State, request: Request, _: Auditor, product: Product, format: Format = None,
                          version: Version = None) -> Response:
    return await _serve(state, "accuracy", request, format, version, product)


@router.get("/fairness", response_model=None, responses=REPORT_RESPONSES,
            summary="The latest fairness audit")
async def fairness_report(state: State, request: Request, _: Auditor, product: Product, format: Format = None,
                          version: Version = None) -> Response:
    return await _serve(state, "fairness", request, format, version, product)


def _flags(report: dict, product: str | None = None) -> list[dict]:
    """A cycle report's flags: all of them, or only `product`'s and the area's own (no product) when given."""
    flags = [f for f in report.get("flags") or [] if isinstance(f, dict)]
    return flags if product is None else [f for f in flags if f.get("product") in (None, product)]


def _live(state, product, weeks: int | None) -> dict:
    area, name = state.area, product.name
    record = stored_live_record(state.store, area, name, weeks)
    cycles = [{"id": c["id"], "week": c["week"], "status": c["status"], "sentence": c["report"].get("sentence"),
               "flags": _flags(c["report"], name)} for c in state.store.cycles(area, LIVE_CYCLES)]
    return {"area": area, "product": name, **record, "cycles": cycles}


def _cycles(state, limit: int) -> dict:
    if state.area is None:
        raise HTTPException(503, state.config_error or "no study area configured")
    return {"area": state.area,
            "cycles": [{**{k: c[k] for k in ("id", "week", "status", "started_at", "finished_at",
                                             "data_fingerprint")},
                        "sentence": c["report"].get("sentence"), "flags": _flags(c["report"]),
                        "products": c["report"].get("products") or {}} for c in state.store.cycles(state.area, limit)]}


@router.get("/live", response_model=LiveReport, responses=errors(401, 403, 422, 503),
            summary="The live record: each published forecast scored against what was recorded, beside the baselines")
async def live_report(
    state: State, _: LiveReader, product: Product,
    weeks: Annotated[int | None, Query(ge=1, le=520, description="only the last N weeks scored [default: all]")] = None,
):
    """Every week whose published forecast `hotspot cycle` has scored, oldest first, with the baselines' scores of the
    same weeks, the best baseline (chosen in hindsight), the mean of each metric beside it with the paired difference
    and its 95% interval, the weeks re-scored after late records, and the latest cycles with this product's flags.
    Nothing scored yet is a 200 whose `sentence` says so (`n_weeks` 0): the product exists, its record is empty."""
    return await run_in_threadpool(_live, state, product, weeks)


@router.get("/cycles", response_model=CycleList, responses=errors(401, 403, 422, 503),
            summary="The recent weekly cycles (newest first) with their drift and decay flags (analysts)")
async def cycle_list(
    state: State, _: CycleReader,
    limit: Annotated[int, Query(ge=1, le=200, description="how many cycles, newest first")] = 20,
):
    return await run_in_threadpool(_cycles, state, limit)
