"""Registered model versions, the champion and each version's run metrics (auditors and analysts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from hotspot.serving.auth import ApiKey
from hotspot.serving.dependencies import State, require
from hotspot.serving.responses import errors
from hotspot.serving.schemas import ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, responses=errors(401, 403, 404, 503),
            summary="Versions of the area's model, which one is champion, and their metrics")
def list_models(state: State, _: Annotated[ApiKey, Depends(require("models:read"))]):
    if state.models is None:
        raise HTTPException(503, state.config_error or "no study area configured")
    listing = state.models.listing()
    if listing is None:
        raise HTTPException(404, f"no model registered for {state.area} yet: run `hotspot train --config "
                                 f"{state.cfg.source_path}`")
    return listing
