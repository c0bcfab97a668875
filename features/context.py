"""Context layers (Risk Terrain Modeling style): static point and polygon layers turned into per-cell features.

Point layers give, per cell: the count in the cell, the distance from the cell centre to the nearest point, and a
Gaussian kernel density at each configured bandwidth. Polygon layers give area-weighted means of their numeric
attributes. Every layer is reprojected to the area CRS first.
"""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from hotspot.features.config import ContextLayerConfig
from hotspot.features.errors import InputError
from hotspot.features.grid import Grid
from hotspot.features.registry import Feature


def _points_from_columns(layer: ContextLayerConfig, table) -> gpd.GeoDataFrame:
    missing = [c for c in (layer.lon, layer.lat) if c not in table.columns]
    if missing:
        raise InputError(f"{layer.path}: context layer '{layer.name}' has no column(s) {missing}")
    lon = pd.to_numeric(table[layer.lon], errors="coerce")
    lat = pd.to_numeric(table[layer.lat], errors="coerce")
    bad = ~(lon.between(-180, 180) & lat.between(-90, 90)) | ((lon == 0) & (lat == 0))
    if bad.any():
        warnings.warn(f"{layer.path}: {int(bad.sum())} row(s) of '{layer.name}' have no valid {layer.lon}/{layer.lat}"
                      " and are skipped",
                      stacklevel=2)
    return gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon[~bad], lat[~bad]), crs="EPSG:4326")


def read_layer(layer: ContextLayerConfig, grid: Grid) -> gpd.GeoDataFrame:
    """Read a context layer, check its geometry kind, drop empty geometries (counted) and project it to the grid."""
    path = layer.path
    try:
        if layer.lon and path.suffix.lower() in (".csv", ".txt", ".gz"):
            gdf = pd.read_csv(path)
        else:
            gdf = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types
        raise InputError(f"{path}: cannot read context layer '{layer.name}' ({exc})") from None
    if len(gdf) == 0:
        raise InputError(f"{path}: context layer '{layer.name}' has no features")
    if layer.lon:
        gdf = _points_from_columns(layer, gdf)
        if gdf.empty:
            raise InputError(f"{path}: context layer '{layer.name}' has no valid {layer.lon}/{layer.lat} values")
    if gdf.crs is None:
        raise InputError(f"{path}: context layer '{layer.name}' has no CRS")
    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    if empty.all():
        raise InputError(f"{path}: context layer '{layer.name}' has no geometries")
    if empty.any():
        warnings.warn(f"{path}: {int(empty.sum())} feature(s) of '{layer.name}' have no geometry and are skipped",
                      stacklevel=2)
        gdf = gdf[~empty]
    kinds = set(gdf.geom_type)
    wanted = {"Polygon", "MultiPolygon"} if layer.attributes else {"Point", "MultiPoint"}
    if not kinds <= wanted:
        what = "polygons (it lists attributes)" if layer.attributes else "points (list attributes for polygons)"
        raise InputError(f"{path}: context layer '{layer.name}' must hold {what}, found {sorted(kinds)}")
    missing = [a for a in layer.attributes if a not in gdf.columns]
    if missing:
        raise InputError(f"{path}: context layer '{layer.name}' has no column(s) {missing}")
    gdf = gdf.to_crs(grid.crs)
    return gdf.explode(index_parts=False) if "MultiPoint" in kinds else gdf


def point_features(name: str, points: np.ndarray, grid: Grid, bandwidths_m: list[float],
                   path: str = "", label: str | None = None) -> list[Feature]:
    """Count in cell, distance to nearest and kernel density of a point layer (points: (N, 2) in the area CRS)."""
    label = label or name.replace("_", " ")
    cell = grid.locate(points[:, 0], points[:, 1])
    count = np.bincount(cell[cell >= 0], minlength=grid.n_cells).astype(np.float32)
    if not (cell >= 0).any():
        warnings.warn(f"{path}: no feature of context layer '{name}' lies in the study area; its counts are zero",
                      stacklevel=2)
    centres = np.column_stack([grid.x, grid.y])
    tree = cKDTree(points)
    distance, _ = tree.query(centres, k=1)
    out = [
        Feature(f"ctx_{name}_count", count, f"{name}: features in the cell", "features",
                reason=f"{{count}} {label} in this cell"),
        Feature(f"ctx_{name}_dist_m", distance.astype(np.float32), f"{name}: distance from the cell centre to the "
                "nearest feature", "m", reason=f"the nearest of the {label} is {{dist}} m away"),
    ]
    for bw in bandwidths_m:
        # exact Gaussian kernel sum over points within 3 bandwidths, in features per km^2
        pairs = cKDTree(centres).sparse_distance_matrix(tree, 3 * bw, output_type="coo_matrix")
        weights = np.exp(-0.5 * (pairs.data / bw) ** 2)
        density = np.bincount(pairs.row, weights=weights, minlength=grid.n_cells) / (2 * np.pi * (bw / 1000) ** 2)
        out.append(Feature(f"ctx_{name}_kde{bw:g}m", density.astype(np.float32),
                           f"{name}: Gaussian kernel density, bandwidth {bw:g} m", "features per km2",
                           reason=f"many {label} within about {bw:g} m ({{rate}} per km²)"))
    return out


def polygon_features(name: str, polygons: gpd.GeoDataFrame, attributes: list[str], grid: Grid) -> list[Feature]:
    """Area-weighted mean of each attribute over the part of each cell the polygons cover (NaN where none do)."""
    cells = grid.polygons()[["cell_id", "geometry"]].reset_index(names="cell")
    pieces = gpd.overlay(cells, polygons[attributes + ["geometry"]], how="intersection", keep_geom_type=True)
    if pieces.empty:
        warnings.warn(f"no polygon of context layer '{name}' overlaps the study area; its features are missing",
                      stacklevel=2)
    weight = pieces.geometry.area.to_numpy()
    out = []
    for attr in attributes:
        values = pd.to_numeric(pieces[attr], errors="coerce").to_numpy(dtype=np.float64)
        ok = np.isfinite(values)
        num = np.bincount(pieces["cell"].to_numpy()[ok], weights=weight[ok] * values[ok], minlength=grid.n_cells)
        den = np.bincount(pieces["cell"].to_numpy()[ok], weights=weight[ok], minlength=grid.n_cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(den > 0, num / den, np.nan)
        out.append(Feature(f"ctx_{name}_{attr}", mean.astype(np.float32),
                           f"{name}: area-weighted mean of {attr} over the cell", "as in the layer",
                           reason=f"{name.replace('_', ' ')} here: {attr.replace('_', ' ')} {{value}}"))
    return out

