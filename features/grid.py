"""Square cells over the study area in its projected CRS.

Cells are squares of the CRS's own lattice of `cell_size_m` (edges at multiples of the cell size), and
`cell_id = row_abs * 1_000_000 + col_abs`, where row_abs = floor(y / cell_size_m) and col_abs = floor(x / cell_size_m)
of the cell centre. The id depends only on the CRS, the cell size and where the cell is, so a boundary that moves or
grows in any direction keeps every surviving cell's id; the digits read back as (row, column). A cell belongs to the
area when its centre lies inside the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer

from hotspot.features.area import WGS84, StudyArea
from hotspot.features.errors import GridError

ID_STRIDE = 1_000_000  # cell_id = row_abs * ID_STRIDE + col_abs; below 2**53, so exact in JSON and JavaScript


@dataclass(frozen=True, eq=False)
class Grid:
    crs: CRS
    cell_size_m: float
    x0: float  # west edge of column 0
    y0: float  # south edge of row 0
    n_cols: int
    n_rows: int
    cell_id: np.ndarray  # (C,) int64, stable id (see the module docstring)
    row: np.ndarray  # (C,) int32, row of the raster (0 = south), not part of the id
    col: np.ndarray  # (C,) int32
    x: np.ndarray  # (C,) float64 cell centre, area CRS
    y: np.ndarray
    lon: np.ndarray  # (C,) float64 cell centre, WGS84
    lat: np.ndarray
    raster_index: np.ndarray  # (n_rows * n_cols,) int32 -> compact cell index, -1 outside the area

    @property
    def n_cells(self) -> int:
        return len(self.cell_id)

    @classmethod
    def from_area(cls, area: StudyArea, cell_size_m: float, max_cells: int) -> Grid:
        s = float(cell_size_m)
        minx, miny, maxx, maxy = area.boundary.bounds
        x0, y0 = math.floor(minx / s) * s, math.floor(miny / s) * s
        n_cols, n_rows = max(1, math.ceil((maxx - x0) / s)), max(1, math.ceil((maxy - y0) / s))
        if n_cols * n_rows > max_cells:
            raise GridError(
                f"the grid would have {n_rows} x {n_cols} = {n_rows * n_cols:,} cells over a "
                f"{(maxx - minx) / 1000:.1f} x {(maxy - miny) / 1000:.1f} km extent, more than area.max_cells = "
                f"{max_cells:,}; check for stray incident coordinates or the boundary, or raise cell_size_m"
            )
        col0, row0 = round(x0 / s), round(y0 / s)
        if (max(abs(col0), abs(col0 + n_cols)) >= ID_STRIDE // 2
                or max(abs(row0), abs(row0 + n_rows)) >= 2**52 // ID_STRIDE):
            raise GridError(f"cells of {s:g} m at x={x0:,.0f}, y={y0:,.0f} are too far from the CRS origin for stable "
                            f"cell ids; use a local projected CRS (area.crs) or larger cells")
        rows, cols = np.divmod(np.arange(n_rows * n_cols, dtype=np.int64), n_cols)
        cx, cy = x0 + (cols + 0.5) * s, y0 + (rows + 0.5) * s
        inside = area.contains(cx, cy)
        if not inside.any():
            raise GridError(f"no cell centre of {s:g} m lies inside the study area; use a smaller cell_size_m")
        raster_index = np.full(n_rows * n_cols, -1, dtype=np.int32)
        raster_index[inside] = np.arange(int(inside.sum()), dtype=np.int32)
        lon, lat = Transformer.from_crs(area.crs, WGS84, always_xy=True).transform(cx[inside], cy[inside])
        return cls(
            crs=area.crs, cell_size_m=s, x0=x0, y0=y0, n_cols=n_cols, n_rows=n_rows,
            cell_id=((row0 + rows[inside]) * ID_STRIDE + col0 + cols[inside]).astype(np.int64),
            row=rows[inside].astype(np.int32), col=cols[inside].astype(np.int32),
            x=cx[inside], y=cy[inside], lon=np.asarray(lon), lat=np.asarray(lat), raster_index=raster_index,
        )

    def window(self, row0: int, row1: int, col0: int, col1: int) -> tuple[Grid, np.ndarray]:
        """The cells of raster rows [row0, row1) and columns [col0, col1) as a grid of their own (same CRS, cell
        size and ids), with their compact indices in this grid (the tiles of features/tiles.py)."""
        row0, col0 = max(0, row0), max(0, col0)
        row1, col1 = min(self.n_rows, row1), min(self.n_cols, col1)
        keep = np.flatnonzero((self.row >= row0) & (self.row < row1) & (self.col >= col0) & (self.col < col1))
        n_rows, n_cols = row1 - row0, col1 - col0
        row, col = self.row[keep] - row0, self.col[keep] - col0
        raster_index = np.full(n_rows * n_cols, -1, dtype=np.int32)
        raster_index[row * n_cols + col] = np.arange(len(keep), dtype=np.int32)
        s = self.cell_size_m
        sub = Grid(crs=self.crs, cell_size_m=s, x0=self.x0 + col0 * s, y0=self.y0 + row0 * s, n_cols=n_cols,
                   n_rows=n_rows, cell_id=self.cell_id[keep], row=row.astype(np.int32), col=col.astype(np.int32),
                   x=self.x[keep], y=self.y[keep], lon=self.lon[keep], lat=self.lat[keep], raster_index=raster_index)
        return sub, keep

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Compact cell index of each point (area CRS), -1 where the point is in no cell of the area."""
        col = np.floor((np.asarray(x) - self.x0) / self.cell_size_m)
        row = np.floor((np.asarray(y) - self.y0) / self.cell_size_m)
        ok = (col >= 0) & (col < self.n_cols) & (row >= 0) & (row < self.n_rows)
        out = np.full(len(col), -1, dtype=np.int32)
        out[ok] = self.raster_index[(row[ok] * self.n_cols + col[ok]).astype(np.int64)]
        return out

    def to_raster(self, values: np.ndarray) -> np.ndarray:
        """Scatter per-cell values (..., C) onto the full raster (..., n_rows, n_cols), zero outside the area."""
        lead = values.shape[:-1]
        out = np.zeros(lead + (self.n_rows * self.n_cols,), dtype=values.dtype)
        out[..., self.row * self.n_cols + self.col] = values
        return out.reshape(lead + (self.n_rows, self.n_cols))

    def from_raster(self, raster: np.ndarray) -> np.ndarray:
        """Inverse of to_raster: (..., n_rows, n_cols) -> (..., C)."""
        return raster[..., self.row, self.col]

    def polygons(self) -> gpd.GeoDataFrame:
        """Cell squares as a GeoDataFrame in the area CRS (cell_id, x, y)."""
        h = self.cell_size_m / 2
        boxes = shapely.box(self.x - h, self.y - h, self.x + h, self.y + h)
        return gpd.GeoDataFrame({"cell_id": self.cell_id, "x": self.x, "y": self.y}, geometry=boxes, crs=self.crs)
