"""Liveness and readiness probes (no API key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hotspot.serving.dependencies import State
from hotspot.serving.schemas import ChampionInfo, Health, PublishedWeek, Readiness
from hotspot.training.tracking import code_version

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="The process is up")
def health() -> Health:
    return Health(code_version=code_version())


@router.get("/ready", response_model=Readiness,
            summary="The area is configured, a forecast is published, and the champion is loaded if pinned",
            responses={503: {"model": Readiness, "description": "not ready; `problems` says why"}})
async def ready(state: State):
    problems: list[str] = []
    champion = None
    if state.cfg is None:
        problems.append(state.config_error or "no study area configured")
    elif await run_in_threadpool(state.forecaster.try_load_champion):
        champion = ChampionInfo(name=state.forecaster.ref.name, version=state.forecaster.ref.version)
    elif state.forecaster.needs_champion:  # auto fits its choice from the data; a champion is needed only when pinned
        problems.append(state.forecaster.error or "no champion model loaded")
    pub = await run_in_threadpool(state.latest_publication)
    if pub is None and state.cfg is not None:
        problems.append("no forecast published yet: an analyst publishes one with POST /v1/forecasts")
    body = Readiness(ready=not problems, area=state.area, champion=champion,
                     forecasts_with=state.forecaster.forecasts_with if state.forecaster is not None else None,
                     latest_forecast=PublishedWeek(week=pub.week, version=pub.version) if pub else None,
                     problems=problems)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)
