"""Accuracy and fairness reports (auditors and analysts), as JSON or as the HTML page, rendered from MLflow runs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from hotspot.serving.artifacts import ReportsUnavailable, report_response
from hotspot.serving.auth import ApiKey
from hotspot.serving.dependencies import State, require
from hotspot.serving.responses import errors
from hotspot.serving.schemas import ReportEnvelope  # documents the JSON form; the bytes are rendered in artifacts.py

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Auditor = Annotated[ApiKey, Depends(require("reports:read"))]
Format = Annotated[Literal["json", "html"] | None, Query(description="json (default) or html; `Accept: text/html` "
                                                                     "also gives the page")]
REPORT_RESPONSES = {200: {"model": ReportEnvelope, "content": {"text/html": {"schema": {"type": "string"}}},
                          "description": "the latest report with the MLflow run that logged it, or its HTML page"},
                    **errors(401, 403, 404, 422, 503)}


async def _serve(state: State, kind: str, request: Request, format: str | None) -> Response:
    # async and MLflow-free: the report is the bytes rendered when the background refresh first saw its run;
    # hotpath.ReportFastPath answers most requests before they get here, with the same report_response
    if state.reports is None:
        raise HTTPException(503, state.config_error or "no study area configured")
    try:
        report = state.reports.latest(kind)
    except ReportsUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    if report is None:
        raise HTTPException(404, state.reports.missing_message(kind))
    wants_html = format == "html" or (format is None and "text/html" in request.headers.get("accept", ""))
    response = report_response(report, wants_html, request.headers.get("accept-encoding", ""))
    if response is None:
        raise HTTPException(404, f"the {kind} report of run {report.run_id} has no HTML page")
    return response


@router.get("/accuracy", response_model=None, responses=REPORT_RESPONSES,
            summary="The latest accuracy report (backtest: every model beside the baselines on the same weeks)")
async def accuracy_report(state: State, request: Request, _: Auditor, format: Format = None) -> Response:
    return await _serve(state, "accuracy", request, format)


@router.get("/fairness", response_model=None, responses=REPORT_RESPONSES,
            summary="The latest fairness audit")
async def fairness_report(state: State, request: Request, _: Auditor, format: Format = None) -> Response:
    return await _serve(state, "fairness", request, format)
