"""Grid math: cells, stable ids, point location, raster round trips, CRS round trips (property tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

from hotspot.features.area import WGS84, StudyArea
from hotspot.features.errors import GridError
from hotspot.features.grid import Grid

UTM17N = CRS.from_epsg(32617)  # Toronto's UTM zone, metres
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

cell_sizes = st.sampled_from([25.0, 100.0, 250.0, 333.0, 500.0])
# south-west corners somewhere in southern Ontario, in UTM 17N metres
eastings = st.floats(560_000, 700_000, allow_nan=False)
northings = st.floats(4_780_000, 4_900_000, allow_nan=False)


def area_of(geom: shapely.Geometry) -> StudyArea:
    return StudyArea(crs=UTM17N, boundary=geom, origin="test")


@st.composite
def boxes(draw, max_cells_per_side: int = 12):
    """A random axis-aligned box of 1..12 cells a side (not aligned to the cell grid) and its cell size."""
    s = draw(cell_sizes)
    x, y = draw(eastings), draw(northings)
    w = draw(st.floats(1.2, max_cells_per_side)) * s
    h = draw(st.floats(1.2, max_cells_per_side)) * s
    return shapely.box(x, y, x + w, y + h), s


@st.composite
def polygons(draw):
    """A random convex-ish polygon (a buffered triangle) with enough room for at least one cell centre."""
    s = draw(cell_sizes)
    x, y = draw(eastings), draw(northings)
    pts = [(x + draw(st.floats(0, 10)) * s, y + draw(st.floats(0, 10)) * s) for _ in range(3)]
    return shapely.Polygon(pts).buffer(draw(st.floats(1.0, 3.0)) * s), s


def grid_of(geom: shapely.Geometry, s: float, max_cells: int = 1_000_000) -> Grid:
    return Grid.from_area(area_of(geom), s, max_cells)


def all_raster_centres(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.divmod(np.arange(grid.n_rows * grid.n_cols), grid.n_cols)
    return rows, cols, grid.x0 + (cols + 0.5) * grid.cell_size_m, grid.y0 + (rows + 0.5) * grid.cell_size_m


# --- layout -------------------------------------------------------------------------------------------------------


def test_aligned_square_has_the_expected_cells_and_ids():
    # a 4 x 3 cell rectangle whose corner is already a multiple of 100 m: ids are row-major from the south-west
    grid = grid_of(shapely.box(600_000, 4_800_000, 600_400, 4_800_300), 100.0)
    assert (grid.x0, grid.y0, grid.n_cols, grid.n_rows) == (600_000, 4_800_000, 4, 3)
    # ids are (absolute row) * 1e6 + (absolute column) of the CRS's 100 m lattice: row 48000, columns 6000..6003
    assert grid.cell_id.tolist() == [(48_000 + r) * 1_000_000 + 6_000 + c for r in range(3) for c in range(4)]
    assert grid.row.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert grid.col.tolist() == [0, 1, 2, 3] * 3
    assert grid.x[:4].tolist() == [600_050, 600_150, 600_250, 600_350]
    assert grid.y[::4].tolist() == [4_800_050, 4_800_150, 4_800_250]


@PROPS
@given(boxes())
def test_origin_is_snapped_and_raster_covers_the_boundary(case):
    geom, s = case
    grid = grid_of(geom, s)
    minx, miny, maxx, maxy = geom.bounds
    assert grid.x0 == math.floor(minx / s) * s and grid.y0 == math.floor(miny / s) * s
    assert grid.x0 <= minx < grid.x0 + s and grid.y0 <= miny < grid.y0 + s
    assert grid.x0 + grid.n_cols * s >= maxx and grid.y0 + grid.n_rows * s >= maxy
    assert grid.x0 + (grid.n_cols - 1) * s < maxx and grid.y0 + (grid.n_rows - 1) * s < maxy
    row_abs, col_abs = np.floor(grid.y / s).astype(np.int64), np.floor(grid.x / s).astype(np.int64)
    np.testing.assert_array_equal(grid.cell_id, row_abs * 1_000_000 + col_abs)
    assert np.all(np.diff(grid.cell_id) > 0), "cells are in ascending cell_id order"
    assert grid.cell_id.dtype == np.int64 and grid.n_cells == len(grid.x) == len(grid.lon)


# --- locate ---------------------------------------------------------------------------------------------------------


@PROPS
@given(polygons(), st.data())
def test_every_point_inside_a_cell_square_locates_to_that_cell(case, data):
    geom, s = case
    grid = grid_of(geom, s)
    i = data.draw(st.integers(0, grid.n_cells - 1), label="cell")
    # fractions stay 1e-6 of a cell off the edges: an edge itself belongs to the east/north neighbour
    u = np.array(data.draw(st.lists(st.floats(1e-6, 1 - 1e-6), min_size=1, max_size=20), label="u"))
    v = np.array(data.draw(st.lists(st.floats(1e-6, 1 - 1e-6), min_size=len(u), max_size=len(u)), label="v"))
    px, py = grid.x[i] + (u - 0.5) * s, grid.y[i] + (v - 0.5) * s
    assert grid.locate(px, py).tolist() == [i] * len(u)


def test_cell_edges_belong_to_the_east_and_north_neighbour():
    grid = grid_of(shapely.box(600_000, 4_800_000, 600_300, 4_800_300), 100.0)
    # the west edge of column 1 / south edge of row 1 are in cell (1, 1) = index 4; the far edges are outside
    got = grid.locate(np.array([600_100.0, 600_000.0, 600_300.0, 600_299.999]),
                      np.array([4_800_100.0, 4_800_000.0, 4_800_000.0, 4_800_299.999]))
    assert got.tolist() == [4, 0, -1, 8]


@PROPS
@given(polygons())
def test_cell_centres_locate_to_themselves(case):
    geom, s = case
    grid = grid_of(geom, s)
    np.testing.assert_array_equal(grid.locate(grid.x, grid.y), np.arange(grid.n_cells))


@PROPS
@given(polygons(), st.data())
def test_points_in_no_cell_of_the_area_locate_to_minus_one(case, data):
    geom, s = case
    grid = grid_of(geom, s)
    rows, cols, cx, cy = all_raster_centres(grid)
    out = grid.raster_index < 0
    # raster cells whose centre is outside the area, plus points beyond the raster on each side
    w, h = grid.n_cols * s, grid.n_rows * s
    dx = data.draw(st.floats(1e-3, 5 * s), label="dx")
    px = np.concatenate([cx[out], [grid.x0 - dx, grid.x0 + w + dx, grid.x[0], grid.x[0], np.nan]])
    py = np.concatenate([cy[out], [grid.y[0], grid.y[0], grid.y0 - dx, grid.y0 + h + dx, grid.y[0]]])
    assert np.all(grid.locate(px, py) == -1)


# --- membership -----------------------------------------------------------------------------------------------------


@PROPS
@given(polygons())
def test_a_cell_belongs_to_the_area_iff_its_centre_is_inside(case):
    geom, s = case
    grid = grid_of(geom, s)
    rows, cols, cx, cy = all_raster_centres(grid)
    inside = shapely.contains_xy(geom, cx, cy)
    assert set(zip(grid.row.tolist(), grid.col.tolist())) == set(zip(rows[inside].tolist(), cols[inside].tolist()))
    assert np.array_equal(grid.raster_index >= 0, inside)
    np.testing.assert_array_equal(grid.raster_index[inside], np.arange(grid.n_cells))


def test_a_cell_mostly_inside_but_with_its_centre_outside_is_left_out():
    # 1.4 cells wide: column 1's centre (x = 150) lies outside although 40% of the cell is inside
    grid = grid_of(shapely.box(600_000, 4_800_000, 600_140, 4_800_100), 100.0)
    assert grid.n_cols == 2 and grid.n_cells == 1 and grid.col.tolist() == [0]


@pytest.mark.parametrize("name", ["square", "rotated_square", "disc"])
@pytest.mark.parametrize("offset", [13.0, 37.5, 111.1])  # 0 puts the diamond edges through centres
def test_cell_count_matches_area_over_cell_area_for_a_big_area(name, offset):
    s, cx, cy = 250.0, 630_000.0 + offset, 4_835_000.0 + offset / 3
    geom = {
        "square": shapely.box(cx - 10_000, cy - 10_000, cx + 10_000, cy + 10_000),
        "rotated_square": shapely.Polygon([(cx, cy - 12_000), (cx + 12_000, cy), (cx, cy + 12_000),
                                           (cx - 12_000, cy)]),
        "disc": shapely.Point(cx, cy).buffer(11_000, quad_segs=64),
    }[name]
    grid = grid_of(geom, s)
    expected = geom.area / s**2  # 6400, 4608, ~6082 cells
    assert abs(grid.n_cells - expected) / expected < 0.02


def test_too_many_cells_is_refused_with_the_limit_named():
    with pytest.raises(GridError, match="max_cells = 100"):
        grid_of(shapely.box(600_000, 4_800_000, 610_000, 4_810_000), 100.0, max_cells=100)


def test_no_centre_inside_is_refused():
    with pytest.raises(GridError, match="no cell centre"):
        grid_of(shapely.box(600_010, 4_800_010, 600_040, 4_800_040), 100.0)


# --- stable ids -----------------------------------------------------------------------------------------------------


@PROPS
@given(cell_sizes, st.integers(2_400, 2_800), st.integers(19_200, 19_600), st.integers(2, 10), st.integers(2, 10),
       st.lists(st.floats(0.01, 0.99), min_size=8, max_size=8))
def test_cell_id_is_stable_when_the_boundary_moves_less_than_a_cell(s, i0, j0, n, m, f):
    """Two boundaries whose edges lie in the same edge cells (same snapped origin and extent): a place keeps its id."""
    X0, Y0 = i0 * 250.0, j0 * 250.0
    X0, Y0 = math.floor(X0 / s) * s, math.floor(Y0 / s) * s
    a = shapely.box(X0 + f[0] * s, Y0 + f[1] * s, X0 + (n + f[2]) * s, Y0 + (m + f[3]) * s)
    b = shapely.box(X0 + f[4] * s, Y0 + f[5] * s, X0 + (n + f[6]) * s, Y0 + (m + f[7]) * s)
    ga, gb = grid_of(a, s), grid_of(b, s)
    assert (ga.x0, ga.y0, ga.n_cols, ga.n_rows) == (gb.x0, gb.y0, gb.n_cols, gb.n_rows)
    ids_a = dict(zip(zip(ga.x.tolist(), ga.y.tolist()), ga.cell_id.tolist()))
    ids_b = dict(zip(zip(gb.x.tolist(), gb.y.tolist()), gb.cell_id.tolist()))
    common = ids_a.keys() & ids_b.keys()
    assert len(common) >= (n - 1) * (m - 1)  # the interior cells are in both
    assert all(ids_a[c] == ids_b[c] for c in common)


@PROPS
@given(polygons(), st.floats(1.0, 5.0))
def test_cell_id_is_stable_when_the_area_grows_north(case, grow):
    """Rows added on the north side leave every existing cell's id as it was (ids do not depend on n_rows)."""
    geom, s = case
    minx, miny, maxx, maxy = geom.bounds
    grown = shapely.union(geom, shapely.box(minx, maxy - s, maxx, maxy + grow * s))
    ga, gb = grid_of(geom, s), grid_of(grown, s)
    assert gb.n_rows > ga.n_rows and gb.n_cols == ga.n_cols
    pos_b = {xy: k for k, xy in enumerate(zip(gb.x.tolist(), gb.y.tolist()))}
    for k, xy in enumerate(zip(ga.x.tolist(), ga.y.tolist())):
        assert gb.cell_id[pos_b[xy]] == ga.cell_id[k]


# --- rasters --------------------------------------------------------------------------------------------------------


@PROPS
@given(polygons(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_to_raster_from_raster_round_trip(case, lead, seed):
    geom, s = case
    grid = grid_of(geom, s)
    values = np.random.default_rng(seed).uniform(0.5, 9.5, size=(lead, grid.n_cells))
    raster = grid.to_raster(values)
    assert raster.shape == (lead, grid.n_rows, grid.n_cols)
    np.testing.assert_array_equal(grid.from_raster(raster), values)
    # each value sits at its cell's row and column; every raster cell outside the area is zero
    np.testing.assert_array_equal(raster[:, grid.row, grid.col], values)
    outside = (grid.raster_index < 0).reshape(grid.n_rows, grid.n_cols)
    assert np.all(raster[:, outside] == 0)
    assert np.count_nonzero(raster) == lead * grid.n_cells
    # and the other way: a raster restricted to the area survives from_raster -> to_raster
    full = np.random.default_rng(seed + 1).uniform(1, 2, size=(grid.n_rows, grid.n_cols))
    np.testing.assert_array_equal(grid.to_raster(grid.from_raster(full)), np.where(outside, 0.0, full))


def test_raster_row_zero_is_the_south_edge():
    grid = grid_of(shapely.box(600_000, 4_800_000, 600_200, 4_800_300), 100.0)  # 2 cols x 3 rows
    south_west = int(np.flatnonzero((grid.row == 0) & (grid.col == 0))[0])
    north_east = int(np.flatnonzero((grid.row == 2) & (grid.col == 1))[0])
    values = np.zeros(grid.n_cells)
    values[south_west], values[north_east] = 1.0, 2.0
    raster = grid.to_raster(values)
    assert raster[0, 0] == 1.0 and raster[2, 1] == 2.0
    assert grid.y[south_west] < grid.y[north_east] and grid.x[south_west] < grid.x[north_east]


# --- CRS ------------------------------------------------------------------------------------------------------------


@PROPS
@given(polygons())
def test_lon_lat_of_centres_round_trip_through_the_crs(case):
    geom, s = case
    grid = grid_of(geom, s)
    x, y = Transformer.from_crs(WGS84, UTM17N, always_xy=True).transform(grid.lon, grid.lat)
    np.testing.assert_allclose(x, grid.x, atol=1e-3)
    np.testing.assert_allclose(y, grid.y, atol=1e-3)
    # southern Ontario, not swapped axes
    assert np.all((grid.lon > -82) & (grid.lon < -78)) and np.all((grid.lat > 42) & (grid.lat < 45))


def test_centre_on_the_central_meridian_has_its_longitude():
    # UTM 17N's central meridian is 81 W at easting 500 000 m; a 320 m cell is centred there (500 000 = 1562.5 x 320)
    grid = grid_of(shapely.box(499_840, 4_800_000, 500_160, 4_800_320), 320.0)
    assert grid.n_cells == 1 and grid.x[0] == 500_000.0
    assert grid.lon[0] == pytest.approx(-81.0, abs=1e-9)
    assert grid.lat[0] == pytest.approx(43.35, abs=0.05)


def test_polygons_are_the_cell_squares():
    grid = grid_of(shapely.box(600_000, 4_800_000, 600_300, 4_800_200), 100.0)
    gdf = grid.polygons()
    assert gdf.crs == UTM17N and gdf["cell_id"].tolist() == grid.cell_id.tolist()
    assert np.allclose(gdf.area, 100.0 * 100.0)
    assert list(gdf.geometry.iloc[4].bounds) == [600_100, 4_800_100, 600_200, 4_800_200]


def test_cell_id_is_stable_when_the_area_grows_east():
    small = grid_of(shapely.box(600_000, 4_800_000, 600_300, 4_800_300), 100.0)
    grown = grid_of(shapely.box(600_000, 4_800_000, 600_400, 4_800_300), 100.0)
    here = np.array([600_050.0]), np.array([4_800_150.0])  # row 1, col 0 in both
    assert small.cell_id[small.locate(*here)[0]] == grown.cell_id[grown.locate(*here)[0]]


def test_cell_id_is_stable_when_the_area_grows_west_and_south():
    small = grid_of(shapely.box(600_000, 4_800_000, 600_300, 4_800_300), 100.0)
    grown = grid_of(shapely.box(599_500, 4_799_200, 600_300, 4_800_300), 100.0)
    ids_small = dict(zip(zip(small.x.tolist(), small.y.tolist()), small.cell_id.tolist()))
    ids_grown = dict(zip(zip(grown.x.tolist(), grown.y.tolist()), grown.cell_id.tolist()))
    assert len(ids_small) == 9 and all(ids_grown[xy] == cid for xy, cid in ids_small.items())
