"""Exports for partner agencies' GIS: forecasts and trends as GeoJSON, GeoPackage and CSV.

Only cells, blocks and area units are ever written (their squares or polygons and centres), never an incident.
List columns (a forecast's `reasons`) are joined with "; " and nested ones (`reason_details`) JSON-encoded for CSV
and GeoPackage; GeoJSON keeps them as they are. Every file is written to a temporary name and moved into place,
so a reader never sees half a file; an export of several files (a CSV and its `.meta.json`, the trend tables) holds
a lock beside them while it writes, so two exports at once leave one whole set, not a mix (features.locking).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from hotspot.analysis.trends import Trends
from hotspot.features import safe_csv
from hotspot.features.errors import HotspotError
from hotspot.features.locking import locked, replace_atomically

FORMATS = ("geojson", "gpkg", "csv")
SUFFIX = {"geojson": ".geojson", "gpkg": ".gpkg", "csv": ".csv"}


def parse_formats(text: str) -> list[str]:
    """'csv,gpkg' -> ['csv', 'gpkg']; HotspotError naming the known formats otherwise."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise HotspotError(f"unknown format(s) {unknown or [text]}; choose from {', '.join(FORMATS)}")
    return formats


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def flat_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns a CSV or GeoPackage can hold: lists of strings joined by '; ', other nested values as JSON, mixed
    count columns (ints and '< k') as text."""
    out = frame.copy()
    geometry = out.geometry.name if isinstance(out, gpd.GeoDataFrame) else None
    for col in out.columns:
        if col == geometry:
            continue
        values = out[col]
        if values.dtype != object:
            continue
        sample = next((v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))), None)
        if isinstance(sample, (list, tuple, np.ndarray)) and all(
                isinstance(x, str) for v in values if v is not None for x in v):
            out[col] = [None if v is None else "; ".join(v) for v in values]
        elif isinstance(sample, (list, tuple, dict, np.ndarray)):
            out[col] = [None if v is None else json.dumps(v, default=_json_default) for v in values]
        elif any(isinstance(v, str) for v in values):
            out[col] = [None if v is None else str(v) for v in values]
    return out


def write_geojson(gdf: gpd.GeoDataFrame, path: Path, metadata: dict | None = None) -> Path:
    """RFC 7946 FeatureCollection (WGS84) with `metadata` as a foreign member."""
    collection = gdf.to_crs("EPSG:4326").to_geo_dict(drop_id=True)
    if metadata:
        collection["metadata"] = metadata
    text = json.dumps(collection, separators=(",", ":"), default=_json_default)
    return replace_atomically(path, lambda tmp: tmp.write_text(text))


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """A plain table; geometry (if any) dropped: cell centres stay as lon/lat columns where the frame has them."""
    table = pd.DataFrame(flat_columns(frame))
    if isinstance(frame, gpd.GeoDataFrame):
        table = table.drop(columns=[frame.geometry.name])
    return safe_csv.write_csv(table, path)


def write_gpkg(layers: dict[str, pd.DataFrame], path: Path) -> Path:
    """One GeoPackage with a layer per table (non-spatial tables as attribute-only layers)."""
    import pyogrio

    def write(tmp: Path) -> None:
        for name, frame in layers.items():
            flat = flat_columns(frame)
            if isinstance(frame, gpd.GeoDataFrame):
                gpd.GeoDataFrame(flat, geometry=frame.geometry.name, crs=frame.crs).to_file(
                    tmp, layer=name, driver="GPKG", engine="pyogrio")
            else:
                pyogrio.write_dataframe(pd.DataFrame(flat), tmp, layer=name, driver="GPKG")

    return replace_atomically(path, write)


def export_forecast(cells: gpd.GeoDataFrame, path: Path, fmt: str, metadata: dict) -> Path:
    """A forecast (training.forecast.forecast_cells) as GeoJSON, GeoPackage (layer `forecast` + `metadata`) or CSV
    (with a `.meta.json` beside it)."""
    fmt = parse_formats(fmt)[0]
    with locked(path, what=f"exporting a forecast as {fmt}"):
        if fmt == "geojson":
            return write_geojson(cells, path, metadata)
        if fmt == "gpkg":
            values = [v if isinstance(v, str) else json.dumps(v, default=_json_default) for v in metadata.values()]
            meta = pd.DataFrame({"key": list(metadata), "value": values})
            return write_gpkg({"forecast": cells, "metadata": meta}, path)
        write_csv(cells, path)
        replace_atomically(path.with_name(path.name + ".meta.json"),
                           lambda tmp: tmp.write_text(json.dumps(metadata, indent=2, default=_json_default)))
        return path


def trends_layers(trends: Trends) -> dict[str, pd.DataFrame]:
    """The trend tables by layer name (cells, areas when configured, weekly, yearly, change)."""
    layers: dict[str, pd.DataFrame] = {"cells": trends.cells}
    if trends.areas is not None:
        layers["areas"] = trends.areas
    weekly = trends.weekly.assign(period_start=pd.to_datetime(trends.weekly["period_start"]).dt.strftime("%Y-%m-%d"))
    layers.update(weekly=weekly, yearly=trends.yearly, change=trends.change)
    return layers


def export_trends(trends: Trends, out_dir: Path, formats: list[str]) -> dict[str, Path]:
    """Write the trend tables in each format: GeoJSON for the spatial layers, one GeoPackage with every layer, CSV
    per table. Returns {name: path}."""
    paths: dict[str, Path] = {}
    layers = trends_layers(trends)
    meta = dict(trends.meta)
    with locked(out_dir / "trends", what="exporting the trend tables"):
        _write_trends(layers, meta, out_dir, formats, paths)
    return paths


def _write_trends(layers: dict[str, pd.DataFrame], meta: dict, out_dir: Path, formats: list[str],
                  paths: dict[str, Path]) -> None:
    for fmt in formats:
        if fmt == "geojson":
            for name in ("cells", "areas"):
                if name in layers:
                    paths[f"{name}_geojson"] = write_geojson(layers[name], out_dir / f"trends_{name}.geojson", meta)
        elif fmt == "gpkg":
            paths["gpkg"] = write_gpkg(layers, out_dir / "trends.gpkg")
        elif fmt == "csv":
            for name, frame in layers.items():
                paths[f"{name}_csv"] = write_csv(frame, out_dir / f"trends_{name}.csv")
