"""Registered model versions, the champion and each version's run metrics (auditors and analysts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from hotspot.serving.auth import ApiKey
from hotspot.serving.dependencies import Product, State, require
from hotspot.serving.responses import errors
from hotspot.serving.schemas import ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, responses=errors(401, 403, 404, 422, 503),
            summary="Versions of a product's registered model, which one is champion, and their metrics")
def list_models(state: State, _: Annotated[ApiKey, Depends(require("models:read"))], product: Product):
    listing = product.models.listing()
    if listing is None:
        raise HTTPException(404, not_registered(state, product))
    return listing


def not_registered(state, product) -> str:
    """Why a product has no registered model, and the command that registers one."""
    if not state.cfg.has_products:
        return f"no model registered for {state.area} yet: run `hotspot train --config {state.cfg.source_path}`"
    return (f"no model registered for {product.title} in {state.area} yet: run `hotspot train --config "
            f"{state.cfg.source_path} --product {product.name}`")
