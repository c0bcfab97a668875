"""Next-period forecast: risk per cell from a fitted forecaster, ranked, as a GeoJSON FeatureCollection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from hotspot.features.area import WGS84
from hotspot.features.config import StudyConfig
from hotspot.features.locking import write_text_atomically
from hotspot.features.panel import Panel
from hotspot.features.places import Places, position_name
from hotspot.models import Forecaster
from hotspot.training import tracking
from hotspot.training.registry import ModelRef

NOTE = ("Risk is the expected count of recorded incidents in the period; recorded incidents are policing data, "
        "not ground truth.")


def forecast_cells(panel: Panel, model: Forecaster, t: int, reasons: int = 3,
                   places: Places | None = None) -> gpd.GeoDataFrame:
    """Risk, rank (1 = highest) and percentile of every cell for period t, with cell squares in WGS84, and each
    cell's `place` name (features.places; the cell centre in degrees where the config names no places).

    Models that explain their forecasts (`Forecaster.explain`: LightGBM, the count baselines, blends) add
    `reasons`: up to `reasons` sentences per cell on what raises its risk most, and `reason_details` with the
    features, values and contributions behind them.
    """
    from hotspot.training.reasons import cell_reasons

    known = panel.until(t)
    risk = np.asarray(model.predict(known), dtype=np.float64)
    order = np.argsort(-risk, kind="stable")
    rank = np.empty(len(risk), dtype=np.int32)
    rank[order] = np.arange(1, len(risk) + 1)
    cells = panel.grid.polygons().to_crs(WGS84)
    cells.geometry = shapely.transform(cells.geometry.values, lambda c: np.round(c, 6))
    cells["lon"], cells["lat"] = np.round(panel.grid.lon, 6), np.round(panel.grid.lat, 6)
    cells["place"] = (places.cell_place if places is not None
                      else [position_name(lon, lat) for lon, lat in zip(panel.grid.lon, panel.grid.lat)])
    cells["period_start"] = str(panel.period_starts[t].date())
    cells["risk"] = np.round(risk, 6)
    cells["rank"] = rank
    # share of cells with lower risk, in percent: the top cell is near 100, ties share a value
    cells["percentile"] = np.round(100.0 * (np.searchsorted(np.sort(risk), risk, side="left") / len(risk)), 2)
    if reasons > 0 and hasattr(model, "explain"):
        cells["reasons"], cells["reason_details"] = cell_reasons(model, known, top=reasons)
    return cells.drop(columns=["x", "y"]).sort_values("rank").reset_index(drop=True)


def forecast_provenance(cfg: StudyConfig, panel: Panel, t: int, ref: ModelRef, data_fingerprint: str | None,
                        with_model_fingerprint: bool = False, selection: dict | None = None) -> dict:
    """What made the forecast of period t: period, model version, data fingerprint, code version, area and the note.

    The one definition for the command line's forecast file and the API's publications; a publication also names
    the data fingerprint the model was trained on (`with_model_fingerprint`), in that place, so that its stored
    JSON keeps its key order. `selection`, last, is what `auto` chose and why (training/forecast_model.py says what
    `model` and `model_version` hold then); None for a registered version.
    """
    provenance = {"period_start": str(panel.period_starts[t].date()), "model": ref.name,
                  "model_version": ref.version, "model_run_id": ref.run_id, "data_fingerprint": data_fingerprint}
    if with_model_fingerprint:
        provenance["model_data_fingerprint"] = ref.data_fingerprint
    provenance.update({"code_version": tracking.code_version(), "area": cfg.area.name,
                       "product": cfg.product.name, "product_title": cfg.product.label,
                       "cell_size_m": panel.grid.cell_size_m, "retrospective": bool(t < panel.n_periods),
                       "note": NOTE, "selection": selection})
    return provenance


def write_geojson(cells: gpd.GeoDataFrame, path: Path, metadata: dict) -> Path:
    """Write an RFC 7946 FeatureCollection (WGS84, lon/lat order) with provenance as foreign members, atomically."""
    collection = cells.to_geo_dict(drop_id=True)
    collection.update({"metadata": {**metadata, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                    "crs": "urn:ogc:def:crs:OGC:1.3:CRS84", "cells": int(len(cells))}})
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, json.dumps(collection, separators=(",", ":")))
