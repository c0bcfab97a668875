"""Place names for cells: what a commander calls the part of the city a cell lies in.

Two sources, in this order:
1. `[places] areas`: polygons with a name column (neighbourhoods, beats, wards); a cell takes the name of the polygon
   holding its centre, or of the nearest polygon when its centre falls in none (cells along the boundary).
2. `incidents.place`: the area label each incident record carries (the sample's `Neighbourhood` column); a cell
   takes the label most of its incidents carry, and a cell with no labelled incident the label of the nearest cell
   that has one. The named areas are then the union of their cells, clipped to the study area.

With neither, there are no place names and cells are named by their position ("cell 1234, 43.651 N 79.383 W").
Names are never features: they label outputs only, so they cannot leak anything into a forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from hotspot.features.area import WGS84, StudyArea
from hotspot.features.config import StudyConfig
from hotspot.features.errors import InputError
from hotspot.features.grid import Grid


@dataclass(frozen=True)
class Places:
    """Each cell's place name, and the named areas as polygons (area CRS) with a point for their label."""

    cell_place: np.ndarray  # (C,) object: the place name of each compact cell
    areas: gpd.GeoDataFrame  # columns name, n_cells, geometry (area CRS), label_x, label_y
    origin: str  # where the names came from, for reports ("polygons neighbourhoods.geojson (hood_name)", ...)

    def names_of(self, cells: np.ndarray) -> list[str]:
        """Place names of compact cell indices."""
        return [str(self.cell_place[c]) for c in np.asarray(cells, dtype=np.int64)]

    def to_geojson(self, boundary: StudyArea | None = None, tolerance_m: float = 10.0) -> dict:
        """The named areas (and the study-area outline when given) as a WGS84 FeatureCollection: one polygon feature
        per area with `name`, `kind` = "area" and `label` = [lon, lat]; the outline with `kind` = "outline".
        Polygons are simplified by `tolerance_m` metres, which keeps the page light and is invisible at city zoom."""
        areas = self.areas.copy()
        areas["geometry"] = areas.geometry.simplify(tolerance_m, preserve_topology=True)
        labels = gpd.GeoSeries(gpd.points_from_xy(areas["label_x"], areas["label_y"]), crs=areas.crs).to_crs(WGS84)
        wgs = areas.to_crs(WGS84)
        features = []
        if boundary is not None:
            outline = gpd.GeoSeries([shapely.simplify(boundary.boundary, tolerance_m)], crs=boundary.crs)
            features.append({"type": "Feature", "properties": {"kind": "outline", "name": "study area"},
                             "geometry": shapely.geometry.mapping(outline.to_crs(WGS84).iloc[0])})
        for geom, name, n_cells, point in zip(wgs.geometry, wgs["name"], wgs["n_cells"], labels):
            features.append({"type": "Feature",
                             "properties": {"kind": "area", "name": str(name), "n_cells": int(n_cells),
                                            "label": [round(point.x, 6), round(point.y, 6)]},
                             "geometry": shapely.geometry.mapping(geom)})
        return {"type": "FeatureCollection", "origin": self.origin, "features": features}


def position_name(lon: float, lat: float) -> str:
    """A cell's name where no place names exist: its centre in degrees."""
    return f"{abs(lat):.3f} {'N' if lat >= 0 else 'S'} {abs(lon):.3f} {'E' if lon >= 0 else 'W'}"


def build_places(cfg: StudyConfig, accepted: pd.DataFrame, grid: Grid, area: StudyArea) -> Places | None:
    """Place names from `[places] areas`, else from the incidents' `place` labels; None when there are neither."""
    if cfg.places.areas is not None:
        return _from_polygons(cfg.places.areas, cfg.places.name_column, grid, area)
    if "place" in accepted.columns and accepted["place"].notna().any():
        return _from_incident_labels(accepted, grid, area, ", ".join(s.place for s in cfg.sources if s.place))
    return None


def _from_polygons(path: Path, column: str, grid: Grid, area: StudyArea) -> Places:
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types; the message is what matters
        raise InputError(f"{path}: cannot read the places areas ({exc})") from None
    if column not in gdf.columns:
        raise InputError(f"{path}: no column '{column}' (named by places.name_column); columns: "
                         f"{[c for c in gdf.columns if c != 'geometry']}")
    if gdf.crs is None:
        raise InputError(f"{path}: the places areas file has no CRS; save it with one (GeoJSON is WGS84)")
    kinds = set(gdf.geom_type.dropna())
    if not kinds <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"{path}: places areas must be polygons, found {sorted(kinds)}")
    gdf = gdf.loc[gdf.geometry.notna(), [column, "geometry"]].to_crs(grid.crs)
    gdf = gdf.assign(name=gdf[column].astype("string").fillna("unnamed").str.strip()).dissolve("name").reset_index()
    gdf["geometry"] = gdf.geometry.make_valid().intersection(area.boundary)
    gdf = gdf.loc[~gdf.geometry.is_empty].reset_index(drop=True)
    if gdf.empty:
        raise InputError(f"{path}: no polygon of the places areas overlaps the study area")
    centres = gpd.GeoDataFrame(geometry=gpd.points_from_xy(grid.x, grid.y), crs=grid.crs)
    # nearest polygon: 0 m for a centre inside one, the closest edge for a boundary cell whose centre is in none
    joined = gpd.sjoin_nearest(centres, gdf[["name", "geometry"]], how="left")
    joined = joined[~joined.index.duplicated(keep="first")]
    cell_place = joined["name"].to_numpy(dtype=object)
    areas = _with_labels(gdf, cell_place)
    areas = areas.loc[areas["n_cells"] > 0].reset_index(drop=True)  # slivers along the edge that name no cell
    return Places(cell_place, areas, f"polygons {path.name} ({column})")


def _from_incident_labels(accepted: pd.DataFrame, grid: Grid, area: StudyArea, column: str) -> Places:
    labelled = accepted.loc[accepted["place"].notna(), ["cell", "place"]]
    counts = labelled.groupby(["cell", "place"], observed=True).size().rename("n").reset_index()
    # the most common label per cell; ties go to the alphabetically first, so the result does not depend on row order
    counts = counts.sort_values(["cell", "n", "place"], ascending=[True, False, True], kind="stable")
    best = counts.drop_duplicates("cell")
    cell_place = np.full(grid.n_cells, None, dtype=object)
    cell_place[best["cell"].to_numpy()] = best["place"].to_numpy(dtype=object)
    known = np.flatnonzero(cell_place != None)  # noqa: E711 (element-wise on an object array)
    unknown = np.flatnonzero(cell_place == None)  # noqa: E711
    if len(unknown):
        _, nearest = cKDTree(np.c_[grid.x[known], grid.y[known]]).query(np.c_[grid.x[unknown], grid.y[unknown]])
        cell_place[unknown] = cell_place[known[nearest]]
    cells = grid.polygons()
    cells = cells.assign(name=cell_place).dissolve("name").reset_index()[["name", "geometry"]]
    cells["geometry"] = cells.geometry.intersection(area.boundary)
    return Places(cell_place, _with_labels(cells, cell_place),
                  f"incidents' own area labels (column {column}; each cell takes its most common label)")


def _with_labels(areas: gpd.GeoDataFrame, cell_place: np.ndarray) -> gpd.GeoDataFrame:
    """Adds the number of cells of each area and a label point inside its largest part (a centroid can fall
    outside a crescent-shaped area)."""
    n_cells = pd.Series(cell_place).value_counts()
    areas = areas.assign(n_cells=areas["name"].map(n_cells).fillna(0).astype(int))
    largest = [max(shapely.get_parts(g), key=lambda part: part.area) if not g.is_empty else g
               for g in areas.geometry]
    points = shapely.point_on_surface(np.asarray(largest, dtype=object))
    return areas.assign(label_x=shapely.get_x(points), label_y=shapely.get_y(points)).reset_index(drop=True)
