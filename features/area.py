"""The study area: its boundary polygon in a projected CRS (metres), from a file or derived from the incidents."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from hotspot.features.config import AreaConfig
from hotspot.features.errors import InputError

WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True)
class StudyArea:
    crs: CRS
    boundary: shapely.Geometry  # (Multi)Polygon in `crs`
    origin: str  # where the boundary came from, for reports

    @property
    def area_km2(self) -> float:
        return float(self.boundary.area) / 1e6

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return shapely.contains_xy(self.boundary, x, y)


def read_boundary(cfg: AreaConfig) -> StudyArea:
    """Read the configured boundary file, union its polygons and project it to the area CRS."""
    path = cfg.boundary
    if path is None:
        raise InputError("the config names no boundary file ([area] boundary)")
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types; the message is what matters
        raise InputError(f"{path}: cannot read the boundary file ({exc})") from None
    if gdf.empty or gdf.geometry.isna().all():
        raise InputError(f"{path}: the boundary file has no geometries")
    kinds = set(gdf.geom_type.dropna())
    if not kinds <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"{path}: the boundary must be polygons, found {sorted(kinds)}")
    if gdf.crs is None:
        raise InputError(f"{path}: the boundary file has no CRS; save it with one (GeoJSON is WGS84)")
    crs = CRS.from_user_input(cfg.crs) if cfg.crs else gdf.to_crs(WGS84).estimate_utm_crs()
    polygon = shapely.make_valid(gdf.to_crs(crs).geometry.union_all())
    return StudyArea(crs=crs, boundary=polygon, origin=f"file {path.name}")


def derive_boundary(cfg: AreaConfig, lon: np.ndarray, lat: np.ndarray) -> StudyArea:
    """A buffered convex hull of the incident points, ignoring far strays.

    Points further than `hull_outlier_iqr` interquartile ranges beyond the quartiles of either coordinate are left
    out of the hull (Tukey's fences, robust even for a few hundred rows), so one stray record (a default coordinate,
    a typo) cannot stretch the area across a continent; such records then fail the boundary check and are
    quarantined with that reason.

    The buffer is at least half a cell's diagonal, so the centre of the cell holding any hull incident lies inside
    the area: the incidents the area is derived from are never lost as `cell_outside_area`.
    """
    if len(lon) < 3:
        raise InputError("cannot derive a study area from fewer than 3 valid incidents; configure area.boundary")
    keep = np.ones(len(lon), dtype=bool)
    for values in (lon, lat):
        q1, q3 = np.quantile(values, [0.25, 0.75])
        fence = cfg.hull_outlier_iqr * max(q3 - q1, 1e-3)  # 1e-3 degrees (~100 m) when most points coincide
        keep &= (values >= q1 - fence) & (values <= q3 + fence)
    points = gpd.GeoSeries(gpd.points_from_xy(lon[keep], lat[keep]), crs=WGS84)
    crs = CRS.from_user_input(cfg.crs) if cfg.crs else points.estimate_utm_crs()
    projected = points.to_crs(crs)
    hull = shapely.convex_hull(shapely.multipoints(shapely.get_coordinates(projected.values)))
    # half the cell diagonal, +1% for the polygon that approximates the round buffer (8 segments a quarter)
    buffer_m = max(cfg.hull_buffer_m, 1.01 * cfg.cell_size_m / 2 ** 0.5)
    boundary = hull.buffer(buffer_m)
    return StudyArea(
        crs=crs,
        boundary=boundary,
        origin=f"convex hull of {int(keep.sum())} incidents, buffered {buffer_m:g} m",
    )
