"""A synthetic region ten times Toronto, for the scale-out work (issue 18), made from the real Toronto pattern.

    python benchmarks/synth_region.py                       # 10 tiles -> outputs/synth-region/ (needs ../shared/data)
    python benchmarks/synth_region.py --tiles 20 --out /tmp/r20

The city (its boundary, its 140 neighbourhoods with their census columns, and its 240,992 incidents of 2014-2021)
is laid out `--tiles` times side by side in its own metric CRS (a row of 5 tiles, then the next row), each copy a
place of its own: every tile gets a rate factor (lognormal, sd `--rate-sd`, mean 1), every incident of the city is
copied into the tile a Poisson(factor) number of times, each copy moved by up to `--jitter-m` metres (and kept only
inside the tile's boundary) and by up to 3 days (clipped to the years of the data). So the region keeps Toronto's
hot spots, seasons and offence mix, at ten times the cells (about 100,000 at 250 m) and incidents (about 2.4
million), with tiles that differ in level. Neighbourhoods are renamed "T3 Moss Park" and so on, so places, trends and
the fairness audit have areas; context layers are left out (they are Toronto's, 2018 snapshots).

Writes incidents.parquet (the source's columns: row_id, datetime_local, Lat, Long, MCI, premises_type,
Neighbourhood, hood_id), boundary.geojson, neighbourhoods.geojson and region.toml (configs/toronto.toml's settings,
its paths replaced, no context layers), and prints the sizes and the seconds taken.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.affinity
from pyproj import Transformer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "toronto"
COLUMNS = ["row_id", "datetime_local", "Lat", "Long", "MCI", "premises_type", "Neighbourhood", "hood_id"]
PER_ROW = 5  # tiles in a row


def layout(bounds: tuple[float, float, float, float], tiles: int, gap: float) -> list[tuple[float, float]]:
    """The (dx, dy) of each tile: rows of PER_ROW copies of the city's bounding box, `gap` metres apart."""
    minx, miny, maxx, maxy = bounds
    w, h = maxx - minx + gap, maxy - miny + gap
    return [((k % PER_ROW) * w, (k // PER_ROW) * h) for k in range(tiles)]


def make_region(tiles: int, out: Path, seed: int = 0, rate_sd: float = 0.3, jitter_m: float = 60.0,
                shared: Path = SHARED) -> dict:
    """Write the region's files to `out`; returns the figures printed."""
    rng = np.random.default_rng(seed)
    boundary = gpd.read_file(shared / "boundary.geojson")
    crs = boundary.estimate_utm_crs()
    city = boundary.to_crs(crs).union_all()
    hoods = gpd.read_file(shared / "neighbourhoods.geojson").to_crs(crs)
    rows = pd.read_parquet(shared / "incidents_mci_2014_2021.parquet")
    rows = rows.loc[rows["Lat"].between(-90, 90) & rows["Long"].between(-180, 180) & (rows["Lat"] != 0)]
    to_metres = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_degrees = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x, y = to_metres.transform(rows["Long"].to_numpy(), rows["Lat"].to_numpy())
    when = pd.to_datetime(rows["datetime_local"]).to_numpy()
    first, last = when.min(), when.max()
    factors = np.exp(rng.normal(0, rate_sd, tiles))
    factors /= factors.mean()
    offsets = layout(city.bounds, tiles, gap=2_000)
    parts, shapes, hood_parts = [], [], []
    next_id = 0
    for k, ((dx, dy), factor) in enumerate(zip(offsets, factors)):
        tile = shapely.affinity.translate(city, dx, dy)
        shapes.append(tile)
        copies = rng.poisson(factor, len(rows))
        idx = np.repeat(np.arange(len(rows)), copies)
        tx = x[idx] + dx + rng.uniform(-jitter_m, jitter_m, len(idx))
        ty = y[idx] + dy + rng.uniform(-jitter_m, jitter_m, len(idx))
        inside = shapely.contains_xy(tile, tx, ty)
        idx, tx, ty = idx[inside], tx[inside], ty[inside]
        shift = rng.integers(-3 * 24 * 60, 3 * 24 * 60 + 1, len(idx)).astype("timedelta64[m]")
        t = np.clip(when[idx] + shift, first, last)
        lon, lat = to_degrees.transform(tx, ty)
        src = rows.iloc[idx]
        parts.append(pd.DataFrame({
            "row_id": np.arange(next_id, next_id + len(idx)), "datetime_local": t, "Lat": lat, "Long": lon,
            "MCI": src["MCI"].to_numpy(), "premises_type": src["premises_type"].to_numpy(),
            "Neighbourhood": (f"T{k + 1} " + src["Neighbourhood"].astype(str)).to_numpy(),
            "hood_id": (src["hood_id"].astype("Int64") + 1000 * (k + 1)).to_numpy()}))
        next_id += len(idx)
        h = hoods.copy()
        h["geometry"] = h.geometry.translate(dx, dy)
        h["hood_name"] = f"T{k + 1} " + h["hood_name"].astype(str)
        h["hood_id"] = h["hood_id"].astype(int) + 1000 * (k + 1)
        hood_parts.append(h)
    out.mkdir(parents=True, exist_ok=True)
    incidents = pd.concat(parts, ignore_index=True)
    incidents.to_parquet(out / "incidents.parquet", index=False)
    gpd.GeoDataFrame({"name": ["synthetic region"]}, geometry=[shapely.MultiPolygon(
        [p for s in shapes for p in getattr(s, "geoms", [s])])], crs=crs).to_crs("EPSG:4326").to_file(
        out / "boundary.geojson", driver="GeoJSON")
    gpd.GeoDataFrame(pd.concat(hood_parts, ignore_index=True), crs=crs).to_crs("EPSG:4326").to_file(
        out / "neighbourhoods.geojson", driver="GeoJSON")
    (out / "region.toml").write_text(region_config(out))
    area_km2 = sum(s.area for s in shapes) / 1e6
    return {"tiles": tiles, "incidents": len(incidents), "area_km2": round(area_km2),
            "cells_250m_about": int(area_km2 * 16), "rate_factors": [round(float(f), 2) for f in factors]}


def region_config(out: Path) -> str:
    """configs/toronto.toml with the region's files, area name synth-region and no context layers."""
    text = (REPO / "configs" / "toronto.toml").read_text()
    text = text.split("# Context layers")[0] + "# Forecast products" + text.split("# Forecast products", 1)[1]
    text = re.sub(r'(?m)^name = "toronto"$', 'name = "synth-region"', text, count=1)
    text = re.sub(r'(?m)^boundary = ".*"$', f'boundary = "{(out / "boundary.geojson").resolve()}"', text)
    text = re.sub(r'(?m)^path = ".*incidents_mci_2014_2021.parquet"$',
                  f'path = "{(out / "incidents.parquet").resolve()}"', text)
    text = re.sub(r'(?m)^areas = ".*neighbourhoods.geojson"$',
                  f'areas = "{(out / "neighbourhoods.geojson").resolve()}"', text)
    return ("# A synthetic region ten times Toronto (benchmarks/synth_region.py); Toronto's settings otherwise.\n"
            + text.split("\n", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=10, help="copies of the city (default 10)")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "synth-region")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-sd", type=float, default=0.3, help="sd of the tiles' log rate factors")
    parser.add_argument("--jitter-m", type=float, default=60.0, help="how far each copy is moved, at most (m)")
    args = parser.parse_args()
    if not (SHARED / "incidents_mci_2014_2021.parquet").exists():
        sys.exit(f"needs the Toronto data at {SHARED} (see ../shared/data/README.md)")
    start = time.perf_counter()
    figures = make_region(args.tiles, args.out, args.seed, args.rate_sd, args.jitter_m)
    print(f"{figures['tiles']} tiles, {figures['incidents']:,} incidents, {figures['area_km2']:,} km2 (about "
          f"{figures['cells_250m_about']:,} cells of 250 m), rate factors {figures['rate_factors']}; "
          f"{time.perf_counter() - start:.1f} s -> {args.out / 'region.toml'}")


if __name__ == "__main__":
    main()
