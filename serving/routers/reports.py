"""Accuracy and fairness reports (auditors and analysts), as JSON or as the HTML page, from MLflow."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from serving.auth import ApiKey
from serving.dependencies import State, require
from serving.responses import errors
from serving.schemas import ReportEnvelope

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Auditor = Annotated[ApiKey, Depends(require("reports:read"))]
Format = Annotated[Literal["json", "html"] | None, Query(description="json (default) or html; `Accept: text/html` "
                                                                     "also gives the page")]
REPORT_RESPONSES = {200: {"model": ReportEnvelope, "content": {"text/html": {"schema": {"type": "string"}}},
                          "description": "the latest report with the MLflow run that logged it, or its HTML page"},
                    **errors(401, 403, 404, 422, 503)}


def _serve(state: State, kind: str, request: Request, format: str | None):
    if state.reports is None:
        raise HTTPException(503, state.config_error or "no study area configured")
    report = state.reports.latest(kind)
    if report is None:
        raise HTTPException(404, state.reports.missing_message(kind))
    wants_html = format == "html" or (format is None and "text/html" in request.headers.get("accept", ""))
    if wants_html:
        if not report.html:
            raise HTTPException(404, f"the {kind} report of run {report.run_id} has no HTML page")
        return HTMLResponse(report.html)
    envelope = ReportEnvelope(kind=kind, run_id=report.run_id, created_at=report.created_at,
                              data_fingerprint=report.tags.get("data_fingerprint"),
                              code_version=report.tags.get("code_version"), tags=report.tags, report=report.data)
    return JSONResponse(envelope.model_dump(mode="json"))


@router.get("/accuracy", response_model=None, responses=REPORT_RESPONSES,
            summary="The latest accuracy report (backtest: every model beside the baselines on the same weeks)")
def accuracy_report(state: State, request: Request, _: Auditor, format: Format = None):
    return _serve(state, "accuracy", request, format)


@router.get("/fairness", response_model=None, responses=REPORT_RESPONSES,
            summary="The latest fairness audit")
def fairness_report(state: State, request: Request, _: Auditor, format: Format = None):
    return _serve(state, "fairness", request, format)
