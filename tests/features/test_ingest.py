"""Reading and validating incidents: every bad row is quarantined with its reason, every good row is kept.

Each test plants known faults in a small synthetic file and checks that exactly those rows (by `source_row`) are
quarantined with the right reason and the offending value, and that nothing else is lost.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from hotspot.features.config import load_config
from hotspot.features.errors import GridError, InputError
from hotspot.features.ingest import ACCEPTED_COLUMNS, REASONS, validate, write_quarantine
from tests.conftest import ORIGIN_LAT, ORIGIN_LON, synthetic_incidents, write_config

N = 300
UTM = "EPSG:32617"  # the UTM zone of the synthetic square (Toronto)


def _incidents(n: int = N, seed: int = 0) -> pd.DataFrame:
    """Synthetic incidents with object coordinate columns, so a test can plant text in them."""
    df = synthetic_incidents(n=n, weeks=30, seed=seed)
    return df.astype({"lon": object, "lat": object, "when": object, "offence": object})


def _validate(folder: Path, df: pd.DataFrame, **kwargs):
    return validate(load_config(write_config(folder, df, **kwargs)))


def _assert_quarantined_exactly(result, planted: dict[int, str]) -> pd.DataFrame:
    """`planted` rows carry their reason; every other row read is accepted; nothing is lost or counted twice."""
    q = result.quarantine
    assert dict(zip(q["source_row"].tolist(), q["reason"].tolist())) == planted
    expected_accepted = sorted(set(range(result.n_read)) - set(planted))
    assert result.accepted["source_row"].tolist() == expected_accepted
    assert len(result.accepted) + len(q) == result.n_read
    counts = result.reason_counts()
    assert set(counts) == set(REASONS)
    assert sum(counts.values()) == len(q)
    return q.set_index("source_row")


def _to_lonlat(x, y):
    return Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(x, y)


def _to_utm(lon, lat):
    return Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(
        np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))


def _append(df: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, rows], ignore_index=True)


# ---------------------------------------------------------------- one reason at a time
# Each case: mutate the synthetic frame, extra [incidents] keys, and {source_row: substring the detail must hold}.


def _set(**cells):
    """A mutation that sets df.loc[row, column] = value for each `column=[(row, value), ...]`."""
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        for column, pairs in cells.items():
            for row, value in pairs:
                df.loc[row, column] = value
        return df
    return mutate


def _repeat_row(df: pd.DataFrame) -> pd.DataFrame:
    return _append(df, df.iloc[[20, 21]])  # source rows N, N+1 repeat rows 20, 21 exactly


def _repeat_on_columns(df: pd.DataFrame) -> pd.DataFrame:
    same_event = df.iloc[[20]].assign(case_ref=9_999)  # same when/place/offence, another record id
    other_offence = df.iloc[[21]].assign(case_ref=9_998, offence="Robbery" if df.loc[21, "offence"] != "Robbery"
                                         else "Assault")
    return _append(df, pd.concat([same_event, other_offence]))


CASES = {
    "missing_timestamp": (_set(when=[(10, None), (11, "   ")]), "", {10: "when=<empty>", 11: "when="}),
    "unparseable_timestamp": (
        _set(when=[(10, "not a date"), (11, "2020-13-45 10:00:00")]), "",
        {10: "when=not a date", 11: "when=2020-13-45 10:00:00"},
    ),
    "missing_coordinates": (_set(lon=[(10, None)], lat=[(11, None)]), "", {10: "lon,lat empty", 11: "lon,lat empty"}),
    "invalid_coordinates": (
        _set(lon=[(10, "abc"), (12, "-79.3.1")], lat=[(11, "inf")]), "",
        {10: "lon,lat=abc,", 11: ",inf", 12: "lon,lat=-79.3.1,"},
    ),
    "zero_coordinates": (_set(lon=[(10, 0), (11, "0.0")], lat=[(10, 0), (11, "0.0")]), "",
                         {10: "lon,lat=0,0", 11: "lon,lat=0,0"}),
    "coordinates_out_of_range": (
        _set(lat=[(10, 123)], lon=[(11, -200)]), "", {10: ",123", 11: "lon,lat=-200,"},
    ),
    "missing_offense": (_set(offence=[(10, None), (11, "  ")]), "", {10: "offence empty", 11: "offence empty"}),
    "offense_not_listed": (
        _set(offence=[(10, "Homicide"), (11, "assault")]), 'offenses = ["Assault", "Robbery", "Break and Enter"]',
        {10: "offence=Homicide", 11: "offence=assault"},
    ),
    "before_earliest_date": (
        # the first moment of earliest_date itself is accepted
        _set(when=[(10, "2019-12-31 23:59:00"), (11, "2015-06-01 08:00:00"), (12, "2020-01-01 00:00:00")]),
        "earliest_date = 2020-01-01",
        {10: "when=2019-12-31 23:59:00", 11: "when=2015-06-01 08:00:00"},
    ),
    "future_date": (
        # latest_date = 2030-01-01 (from write_config): the whole of that day is accepted, the next day is not
        _set(when=[(10, "2030-01-02 00:30:00"), (11, "2045-01-01 00:00:00"), (12, "2030-01-01 23:30:00")]), "",
        {10: "when=2030-01-02 00:30:00", 11: "when=2045-01-01 00:00:00"},
    ),
    "duplicate": (_repeat_row, "", {N: "repeats an earlier row on when,lon,lat,offence,case_ref", N + 1: "repeats"}),
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_planted_fault_is_quarantined_with_its_reason_and_value(tmp_path, reason):
    mutate, extra_incidents, details = CASES[reason]
    result = _validate(tmp_path / "in", mutate(_incidents()), extra_incidents=extra_incidents)

    q = _assert_quarantined_exactly(result, dict.fromkeys(details, reason))
    for row, expected in details.items():
        assert expected in q.loc[row, "detail"], (row, q.loc[row, "detail"])
        assert q.loc[row, "source"] == "incidents"
    assert result.reason_counts()[reason] == len(details)


def test_every_reason_has_a_test():
    # the spatial reasons have their own tests below
    assert set(CASES) | {"outside_boundary", "cell_outside_area"} == set(REASONS)


def test_duplicate_columns_define_what_counts_as_a_repeat(tmp_path):
    result = _validate(tmp_path / "in", _repeat_on_columns(_incidents()),
                       extra_incidents='duplicate_columns = ["when", "lon", "lat", "offence"]')
    q = _assert_quarantined_exactly(result, {N: "duplicate"})  # N + 1 differs in offence: a separate incident
    assert q.loc[N, "detail"] == "repeats an earlier row on when,lon,lat,offence"
    assert q.loc[N, "case_ref"] == "9999"  # the row as read
    assert 20 in result.accepted["source_row"].tolist()  # the first of the pair is kept


def test_different_record_ids_are_not_duplicates_by_default(tmp_path):
    result = _validate(tmp_path / "in", _repeat_on_columns(_incidents()))
    _assert_quarantined_exactly(result, {})
    assert result.n_read == N + 2


def test_unknown_duplicate_column_names_the_column_and_file(tmp_path):
    with pytest.raises(InputError) as info:
        _validate(tmp_path / "in", _incidents(), extra_incidents='duplicate_columns = ["when", "case_id"]')
    assert "['case_id']" in str(info.value)
    assert str(tmp_path / "in" / "incidents.csv") in str(info.value)


def test_all_reasons_in_one_file_are_counted_once_each(tmp_path):
    df = _set(
        when=[(10, None), (11, "yesterday"), (18, "2014-05-05 10:00:00"), (19, "2031-02-02 10:00:00")],
        lon=[(12, None), (13, "abc"), (14, 0)], lat=[(14, 0), (15, 95)],
        offence=[(16, ""), (17, "Arson")],
    )(_incidents())
    df = _append(df, df.iloc[[30]])
    result = _validate(tmp_path / "in", df,
                       extra_incidents='offenses = ["Assault", "Robbery", "Break and Enter"]\n'
                                       "earliest_date = 2019-01-01")
    expected = {10: "missing_timestamp", 11: "unparseable_timestamp", 12: "missing_coordinates",
                13: "invalid_coordinates", 14: "zero_coordinates", 15: "coordinates_out_of_range",
                16: "missing_offense", 17: "offense_not_listed", 18: "before_earliest_date", 19: "future_date",
                N: "duplicate"}
    _assert_quarantined_exactly(result, expected)
    counts = result.reason_counts()
    assert counts == {reason: (1 if reason in expected.values() else 0) for reason in REASONS}


def test_a_row_with_several_faults_carries_the_first_reason_in_order(tmp_path):
    df = _set(when=[(10, None), (11, "2031-01-01 00:00:00")], lon=[(10, "abc"), (11, 0)], lat=[(11, 0)],
              offence=[(10, None), (11, None)])(_incidents())
    q = _assert_quarantined_exactly(_validate(tmp_path / "in", df),
                                    {10: "missing_timestamp", 11: "zero_coordinates"})
    assert q.loc[11, "detail"] == "lon,lat=0,0"


def test_accepted_rows_keep_their_values_and_columns(tmp_path):
    df = _incidents()
    result = _validate(tmp_path / "in", df)
    acc = result.accepted
    assert list(acc.columns) == ACCEPTED_COLUMNS
    assert len(acc) == N
    assert (acc["occurred_at"] == pd.to_datetime(df["when"])).all()
    np.testing.assert_allclose(acc["lon"], df["lon"].astype(float), rtol=0, atol=1e-12)
    np.testing.assert_allclose(acc["lat"], df["lat"].astype(float), rtol=0, atol=1e-12)
    assert acc["offense"].astype(str).tolist() == df["offence"].tolist()
    assert (acc["source"] == "incidents").all()
    # every accepted point lies in the cell it was given
    cell = acc["cell"].to_numpy()
    half = result.grid.cell_size_m / 2
    assert (cell >= 0).all() and (cell < result.grid.n_cells).all()
    assert (np.abs(acc["x"] - result.grid.x[cell]) <= half).all()
    assert (np.abs(acc["y"] - result.grid.y[cell]) <= half).all()


def test_source_name_is_kept_on_accepted_and_quarantined_rows(tmp_path):
    df = _set(when=[(10, None)])(_incidents())
    result = _validate(tmp_path / "in", df, extra_incidents='name = "agency_a"')
    assert set(result.accepted["source"]) == {"agency_a"}
    assert result.quarantine["source"].tolist() == ["agency_a"]


# ---------------------------------------------------------------- the study area and its boundary


def _aligned_square(df: pd.DataFrame, cells: int = 6, size: float = 500.0) -> shapely.Polygon:
    """A square of `cells` x `cells` grid cells (edges on multiples of `size` in UTM) inside the synthetic area."""
    x, y = _to_utm(df["lon"], df["lat"])
    x0 = np.ceil(np.min(x) / size) * size + size
    y0 = np.ceil(np.min(y) / size) * size + size
    return shapely.box(x0, y0, x0 + cells * size, y0 + cells * size)


def _write_boundary(folder: Path, geometry, crs: str = UTM) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame({"name": ["area"]}, geometry=[geometry], crs=crs).to_file(folder / "boundary.geojson")


def test_boundary_file_quarantines_points_outside_it(tmp_path):
    df = _incidents()
    square = _aligned_square(df)
    folder = tmp_path / "in"
    _write_boundary(folder, square)
    result = _validate(folder, df, area=f'boundary = "boundary.geojson"\ncrs = "{UTM}"')

    x, y = _to_utm(df["lon"], df["lat"])
    outside = np.flatnonzero(~shapely.contains_xy(square, x, y))
    assert 50 < len(outside) < N - 50  # the test means something: many rows on both sides
    q = _assert_quarantined_exactly(result, {int(row): "outside_boundary" for row in outside})
    for row in outside[:5]:
        assert q.loc[row, "detail"].startswith(f"lon,lat={df.loc[row, 'lon']}")
    assert result.area.origin == "file boundary.geojson"
    assert result.area.area_km2 == pytest.approx(9.0)
    assert result.grid.n_cells == 36  # 6 x 6 cells of 500 m, all centres inside


def test_point_inside_boundary_whose_cell_centre_is_outside(tmp_path):
    df = _incidents()
    square = _aligned_square(df)
    minx, miny, maxx, _ = square.bounds
    # a 100 m tongue on the east side: inside the boundary, but the cell it falls in has its centre outside
    tongue = shapely.box(maxx, miny, maxx + 100, miny + 500)
    lon, lat = _to_lonlat(maxx + 50, miny + 250)
    df.loc[0, ["lon", "lat"]] = [float(lon), float(lat)]
    folder = tmp_path / "in"
    _write_boundary(folder, shapely.union(square, tongue))
    result = _validate(folder, df, area=f'boundary = "boundary.geojson"\ncrs = "{UTM}"')

    x, y = _to_utm(df["lon"], df["lat"])
    in_tongue = shapely.contains_xy(tongue, x, y)
    in_square = shapely.contains_xy(square, x, y)
    expected = {int(r): "cell_outside_area" for r in np.flatnonzero(in_tongue)}
    expected |= {int(r): "outside_boundary" for r in np.flatnonzero(~in_tongue & ~in_square)}
    q = _assert_quarantined_exactly(result, expected)
    assert q.loc[0, "reason"] == "cell_outside_area"
    assert q.loc[0, "detail"] == f"lon,lat={float(lon)},{float(lat)}"
    assert result.grid.n_cells == 36  # the tongue's cell is not part of the grid


def test_stray_point_far_away_is_outside_the_derived_area_and_does_not_stretch_the_grid(tmp_path):
    df = _incidents()
    plain = _validate(tmp_path / "plain", df)
    stray = df.iloc[[40]].assign(lat=ORIGIN_LAT + 2.7, case_ref=10_000)  # ~300 km north
    result = _validate(tmp_path / "stray", _append(df, stray))

    q = _assert_quarantined_exactly(result, {N: "outside_boundary"})
    assert f",{ORIGIN_LAT + 2.7}" in q.loc[N, "detail"]
    assert result.grid.n_cells == plain.grid.n_cells
    assert result.area.area_km2 == pytest.approx(plain.area.area_km2)
    assert result.area.area_km2 < 60  # the ~5 km square plus its buffer, not a 300 km sliver
    assert (result.accepted["cell"].to_numpy() == plain.accepted["cell"].to_numpy()).all()


@pytest.mark.parametrize("seed", range(4))
def test_derived_area_keeps_every_incident_it_is_derived_from(tmp_path, seed):
    # 500 m cells with the default 250 m hull buffer: the cell of a point on the hull must still be in the grid
    result = _validate(tmp_path / "in", _incidents(seed=seed))
    assert result.reason_counts()["cell_outside_area"] == 0
    assert len(result.accepted) == N
    assert result.area.origin.startswith(f"convex hull of {N} incidents")
    assert result.area.crs.to_epsg() == 32617


def test_boundary_file_of_points_is_refused_naming_the_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    gpd.GeoDataFrame(geometry=gpd.points_from_xy([ORIGIN_LON, ORIGIN_LON + 0.05], [ORIGIN_LAT, ORIGIN_LAT + 0.04]),
                     crs="EPSG:4326").to_file(folder / "boundary.geojson")
    with pytest.raises(InputError) as info:
        _validate(folder, _incidents(), area='boundary = "boundary.geojson"')
    message = str(info.value)
    assert str(folder / "boundary.geojson") in message
    assert "must be polygons, found ['Point']" in message


def test_grid_too_large_for_max_cells_is_refused(tmp_path):
    with pytest.raises(GridError) as info:
        _validate(tmp_path / "in", _incidents(), area="max_cells = 20")
    message = str(info.value)
    assert "more than area.max_cells = 20" in message
    assert "cell_size_m" in message


def test_tiny_cells_over_a_city_exceed_the_default_max_cells(tmp_path):
    path = write_config(tmp_path / "in", _incidents())
    path.write_text(path.read_text().replace("cell_size_m = 500", "cell_size_m = 10"))
    with pytest.raises(GridError, match=r"more than area.max_cells = 250,000; .* raise cell_size_m") as info:
        validate(load_config(path))
    n_rows, n_cols = (int(v) for v in str(info.value).split(" = ")[0].split()[-3::2])
    assert n_rows * n_cols > 250_000


# ---------------------------------------------------------------- input formats and column mapping


@pytest.mark.parametrize("column", ["when", "lon", "lat", "offence"])
def test_missing_mapped_column_names_the_column_and_the_file(tmp_path, column):
    df = _incidents().rename(columns={column: "something_else"})
    with pytest.raises(InputError) as info:
        _validate(tmp_path / "in", df)
    message = str(info.value)
    assert f"[{column!r}] not found" in message
    assert str(tmp_path / "in" / "incidents.csv") in message
    assert "something_else" in message  # the columns the file does have


def test_parquet_input_with_typed_columns(tmp_path):
    df = synthetic_incidents(n=N, weeks=30)
    csv = _validate(tmp_path / "csv", df)
    typed = df.assign(when=pd.to_datetime(df["when"]))
    typed.loc[5, "when"] = pd.NaT
    typed.loc[6, "lon"] = np.nan
    typed.loc[7, "lat"] = np.inf
    result = _validate(tmp_path / "pq", typed, fmt="parquet")

    q = _assert_quarantined_exactly(
        result, {5: "missing_timestamp", 6: "missing_coordinates", 7: "invalid_coordinates"})
    assert q.loc[7, "detail"].endswith(",inf")
    kept = csv.accepted[~csv.accepted["source_row"].isin([5, 6, 7])].reset_index(drop=True)
    assert (result.accepted["occurred_at"] == kept["occurred_at"]).all()
    assert (result.accepted["cell"] == kept["cell"]).all()


def test_geojson_points_in_another_crs_are_reprojected(tmp_path):
    df = synthetic_incidents(n=N, weeks=30)
    csv = _validate(tmp_path / "csv", df)
    folder = tmp_path / "gj"
    path = write_config(folder, df)
    points = gpd.GeoDataFrame(df.drop(columns=["lon", "lat"]), geometry=gpd.points_from_xy(df["lon"], df["lat"]),
                              crs="EPSG:4326").to_crs("EPSG:3857")
    assert points.geometry.x.abs().min() > 1e6  # the file really holds metres, not degrees
    points.loc[9, "geometry"] = None  # a feature without a location
    points.to_file(folder / "incidents.geojson")
    path.write_text(path.read_text().replace('path = "incidents.csv"', 'path = "incidents.geojson"'))
    result = validate(load_config(path))

    _assert_quarantined_exactly(result, {9: "missing_coordinates"})
    keep = df.index != 9
    np.testing.assert_allclose(result.accepted["lon"], df.loc[keep, "lon"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.accepted["lat"], df.loc[keep, "lat"], rtol=0, atol=1e-9)
    expected_cells = csv.accepted.loc[csv.accepted["source_row"] != 9, "cell"].to_numpy()
    assert (result.accepted["cell"].to_numpy() == expected_cells).all()
    assert (result.accepted["occurred_at"].to_numpy() == pd.to_datetime(df.loc[keep, "when"]).to_numpy()).all()


def test_geojson_of_polygons_as_incidents_is_refused(tmp_path):
    folder = tmp_path / "in"
    path = write_config(folder, _incidents())
    gpd.GeoDataFrame({"when": ["2020-02-02 10:00:00"], "offence": ["Assault"]},
                     geometry=[shapely.box(ORIGIN_LON, ORIGIN_LAT, ORIGIN_LON + 0.01, ORIGIN_LAT + 0.01)],
                     crs="EPSG:4326").to_file(folder / "incidents.geojson")
    path.write_text(path.read_text().replace('path = "incidents.csv"', 'path = "incidents.geojson"'))
    with pytest.raises(InputError, match=r"incident GeoJSON must hold points, found \['Polygon'\]") as info:
        validate(load_config(path))
    assert str(folder / "incidents.geojson") in str(info.value)


def test_projected_xy_columns_give_the_same_cells_as_lonlat(tmp_path):
    df = synthetic_incidents(n=N, weeks=30)
    lonlat = _validate(tmp_path / "lonlat", df)
    x, y = _to_utm(df["lon"], df["lat"])
    xy = df.drop(columns=["lon", "lat"]).assign(x=x, y=y).astype({"x": object, "y": object})
    xy.loc[3, "x"] = "abc"
    xy.loc[4, "y"] = 5e9  # far outside the UTM zone (PROJ folds it back onto a plausible lon/lat)
    xy.loc[5, "y"] = xy.loc[5, "y"] + 300_000  # a stray 300 km north
    path = write_config(tmp_path / "xy", xy)
    text = path.read_text()
    assert 'lon = "lon"\nlat = "lat"\n' in text
    path.write_text(text.replace('lon = "lon"\nlat = "lat"\n', f'x = "x"\ny = "y"\ncrs = "{UTM}"\n'))
    result = validate(load_config(path))

    q = _assert_quarantined_exactly(
        result, {3: "invalid_coordinates", 4: "coordinates_out_of_range", 5: "outside_boundary"})
    assert q.loc[3, "detail"] == f"x,y=abc,{xy.loc[3, 'y']}"  # the values as the file holds them
    assert q.loc[4, "detail"] == f"x,y={xy.loc[4, 'x']},5000000000.0"
    stray_lon, stray_lat = _to_lonlat(xy.loc[5, "x"], xy.loc[5, "y"])
    label, values = q.loc[5, "detail"].split("=")
    assert label == "lon,lat"  # the WGS84 position the boundary check used, labelled as such
    np.testing.assert_allclose([float(v) for v in values.split(",")], [stray_lon, stray_lat], rtol=0, atol=1e-9)
    assert result.area.crs == lonlat.area.crs
    assert result.grid.n_cells == lonlat.grid.n_cells
    expected = lonlat.accepted[~lonlat.accepted["source_row"].isin([3, 4, 5])]
    assert (result.accepted["cell"].to_numpy() == expected["cell"].to_numpy()).all()
    np.testing.assert_allclose(result.accepted["lon"], expected["lon"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.accepted["x"], expected["x"], rtol=0, atol=1e-6)


def test_file_with_a_header_and_no_rows_is_refused(tmp_path):
    with pytest.raises(InputError, match="has no rows") as info:
        _validate(tmp_path / "in", _incidents().iloc[:0])
    assert str(tmp_path / "in" / "incidents.csv") in str(info.value)


def test_timestamp_format_from_the_config_is_used(tmp_path):
    df = _incidents()
    df["when"] = pd.to_datetime(df["when"]).dt.strftime("%d/%m/%Y %H:%M")
    df.loc[10, "when"] = "2020-02-03 10:00"  # ISO, but not the configured format
    result = _validate(tmp_path / "in", df, extra_incidents='timestamp_format = "%d/%m/%Y %H:%M"')
    q = _assert_quarantined_exactly(result, {10: "unparseable_timestamp"})
    assert q.loc[10, "detail"] == "when=2020-02-03 10:00"
    assert result.accepted["occurred_at"].iloc[0] == pd.to_datetime(df.loc[0, "when"], format="%d/%m/%Y %H:%M")


# ---------------------------------------------------------------- the quarantine file


def test_write_quarantine_writes_every_bad_row_with_its_reason(tmp_path):
    df = _set(when=[(10, "not a date")], lat=[(11, 123)], offence=[(12, None)])(_incidents())
    result = _validate(tmp_path / "in", df)
    path = write_quarantine(result, tmp_path / "out" / "validate")

    assert path == tmp_path / "out" / "validate" / "quarantine.csv"
    assert [p.name for p in path.parent.iterdir()] == ["quarantine.csv"]  # no temporary file left behind
    written = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(written.columns[:4]) == ["source", "source_row", "reason", "detail"]
    assert {"when", "lon", "lat", "offence", "case_ref"} <= set(written.columns)
    assert written["source_row"].tolist() == ["10", "11", "12"]
    assert written["reason"].tolist() == ["unparseable_timestamp", "coordinates_out_of_range", "missing_offense"]
    assert written.loc[0, "when"] == "not a date"  # the original value, as read
    assert written.loc[1, "case_ref"] == "11"


def test_write_quarantine_with_nothing_quarantined_writes_a_header(tmp_path):
    result = _validate(tmp_path / "in", _incidents())
    path = write_quarantine(result, tmp_path / "out")
    written = pd.read_csv(path)
    assert written.empty
    assert {"source", "source_row", "reason", "detail"} <= set(written.columns)


def test_fingerprint_follows_the_file_content(tmp_path):
    df = _incidents()
    a = _validate(tmp_path / "a", df)
    b = _validate(tmp_path / "b", df)
    c = _validate(tmp_path / "c", _set(offence=[(0, "Robbery" if df.loc[0, "offence"] != "Robbery" else "Assault")])(
        df.copy()))
    assert len(a.fingerprint) == 16
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
