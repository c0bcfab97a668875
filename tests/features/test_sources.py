"""Several incident sources, one schema: each source with its own format, columns, timestamp format, CRS and
offence labels ingests into the same panel as the single file; cross-source duplicates are kept once; a source that
is read wrongly (date format, lat/lon swap, wrong CRS) is refused with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from hotspot.features.config import ConfigError, load_config
from hotspot.features.errors import InputError
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from tests.conftest import run_cli, synthetic_incidents, write_config

LABELS_B = {"Assault": "ASLT", "Robbery": "ROB", "Break and Enter": "B&E"}
MAP_B = 'offense_map = { "ASLT" = "Assault", "ROB" = "Robbery", "B&E" = "Break and Enter" }'


def _as_source_b(df: pd.DataFrame) -> pd.DataFrame:
    """Agency B's export: other column names, day-first timestamps, its own offence codes, Parquet."""
    return pd.DataFrame({
        "occurred": pd.to_datetime(df["when"]).dt.strftime("%d/%m/%Y %H:%M:%S").to_numpy(),
        "longitude": df["lon"].astype(float).to_numpy(), "latitude": df["lat"].astype(float).to_numpy(),
        "crime_type": df["offence"].map(lambda o: LABELS_B.get(o, o)).to_numpy(),
        "report_no": (df["case_ref"].astype(int) + 50_000).to_numpy(),
    })


def _two_sources(folder: Path, a: pd.DataFrame, b: pd.DataFrame, table_b: str = "", extra: str = "",
                 area: str = "") -> Path:
    """A config whose first source is `a` (the usual CSV) and whose second is `b` written as Parquet."""
    path = write_config(folder, a, extra=extra, area=area)
    b.to_parquet(folder / "agency_b.parquet", index=False)
    text = path.read_text().replace("[incidents]", '[[incidents]]\nname = "a"', 1)
    table_b = table_b or f"""
        lon = "longitude"
        lat = "latitude"
        {MAP_B}"""
    text += f"""
[[incidents]]
name = "b"
path = "agency_b.parquet"
timestamp = "occurred"
timestamp_format = "%d/%m/%Y %H:%M:%S"
offense = "crime_type"
latest_date = 2030-01-01
allow_columns = ["report_no"]
{chr(10).join(line.strip() for line in table_b.strip().splitlines())}
"""
    path.write_text(text)
    return path


def _panel(cfg):
    result = validate(cfg)
    return result, build_panel(cfg, result.accepted, result.grid)


@pytest.fixture
def data() -> pd.DataFrame:
    return synthetic_incidents(n=1200, weeks=20, seed=5)


def _split(data: pd.DataFrame):
    west = data["lon"] < data["lon"].median()  # two agencies, two halves of the area
    return data[west], _as_source_b(data[~west])


def test_two_sources_give_the_same_panel_as_the_single_file(tmp_path, data):
    single, single_panel = _panel(load_config(write_config(tmp_path / "single", data)))
    a, b = _split(data)
    cfg = load_config(_two_sources(tmp_path / "two", a, b))
    assert [s.name for s in cfg.sources] == ["a", "b"]
    result, panel = _panel(cfg)

    assert len(result.accepted) == len(single.accepted) == len(data)
    assert result.accepted["source"].value_counts().to_dict() == {"a": len(a), "b": len(b)}
    assert panel.groups == single_panel.groups
    np.testing.assert_array_equal(panel.counts, single_panel.counts)
    np.testing.assert_array_equal(panel.target, single_panel.target)
    np.testing.assert_allclose(panel.X, single_panel.X, rtol=1e-6, atol=1e-6)
    counts = result.source_counts()
    assert counts["a"] == {"read": len(a), "accepted": len(a), "quarantined": 0}
    assert counts["b"] == {"read": len(b), "accepted": len(b), "quarantined": 0}
    # the fingerprint covers both files and is deterministic
    assert result.fingerprint == validate(cfg).fingerprint
    b.iloc[:-1].to_parquet(tmp_path / "two" / "agency_b.parquet", index=False)
    assert validate(cfg).fingerprint != result.fingerprint


def test_unmapped_offences_are_quarantined_and_counted_per_source(tmp_path, data):
    a, b = _split(data)
    b = b.copy()
    b.iloc[[3, 7], b.columns.get_loc("crime_type")] = "HOM"
    result = validate(load_config(_two_sources(tmp_path / "two", a, b)))
    q = result.quarantine
    assert q[["source", "source_row", "reason"]].values.tolist() == [["b", 3, "offense_not_mapped"],
                                                                      ["b", 7, "offense_not_mapped"]]
    assert (q["detail"] == "crime_type=HOM").all()
    assert result.reason_counts()["offense_not_mapped"] == 2
    assert result.source_counts()["b"]["quarantined_offense_not_mapped"] == 2
    assert "quarantined_offense_not_mapped" not in result.source_counts()["a"]
    assert set(result.accepted["offense"].cat.categories) == {"Assault", "Robbery", "Break and Enter"}


def test_the_same_incident_from_two_sources_is_kept_once(tmp_path, data):
    a, b = _split(data)
    echoed = a.iloc[:25].copy()  # agency B recorded 25 of A's incidents too: 10 min later, ~15 m away
    echoed["when"] = (pd.to_datetime(echoed["when"]) + pd.Timedelta(minutes=10)).dt.strftime("%Y-%m-%d %H:%M:%S")
    echoed["lat"] = echoed["lat"].astype(float) + 0.00013
    not_echo = a.iloc[25:27].copy()  # close in time and place, but another offence group: two incidents
    not_echo["offence"] = np.where(not_echo["offence"] == "Robbery", "Assault", "Robbery")
    b_all = pd.concat([b, _as_source_b(echoed), _as_source_b(not_echo)], ignore_index=True)
    cfg = load_config(_two_sources(tmp_path / "two", a, b_all,
                                   extra="\n[dedupe]\ntime_tolerance_minutes = 30\ndistance_m = 25"))
    single, single_panel = _panel(load_config(write_config(tmp_path / "single", pd.concat([data, not_echo]))))
    result, panel = _panel(cfg)

    q = result.quarantine
    assert (q["reason"] == "duplicate_across_sources").sum() == 25
    assert q["source_row"].tolist() == list(range(len(b), len(b) + 25))
    assert q["detail"].tolist() == [f"repeats a row {r}" for r in range(25)]
    assert "report_no" in q.columns and "victim" not in " ".join(q.columns)
    assert result.source_counts()["b"]["quarantined_duplicate_across_sources"] == 25
    np.testing.assert_array_equal(panel.counts, single_panel.counts)

    # tighter tolerances: the echoes are separate incidents
    tight = load_config(_two_sources(tmp_path / "tight", a, b_all,
                                     extra="\n[dedupe]\ntime_tolerance_minutes = 5\ndistance_m = 25"))
    assert validate(tight).reason_counts().get("duplicate_across_sources", 0) == 0


def test_day_first_dates_without_a_format_name_the_source_column_and_a_value(tmp_path, data):
    a, b = _split(data)
    path = _two_sources(tmp_path / "two", a, b)
    path.write_text(path.read_text().replace('timestamp_format = "%d/%m/%Y %H:%M:%S"\n', ""))
    with pytest.raises(InputError) as info:
        validate(load_config(path))
    message = str(info.value)
    assert "source 'b'" in message and "'occurred'" in message
    assert repr(b["occurred"].iloc[0]) in message or "e.g. '" in message


def test_swapped_lat_lon_is_caught_naming_the_source(tmp_path, data):
    a, b = _split(data)
    swapped = b.rename(columns={"longitude": "latitude", "latitude": "longitude"})
    with pytest.raises(InputError, match="source 'b': lat/lon look swapped"):
        validate(load_config(_two_sources(tmp_path / "two", a, swapped)))


def test_a_wrong_crs_is_caught_naming_the_source_and_the_crs_that_fits(tmp_path, data):
    a, b = _split(data)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32617", always_xy=True).transform(
        b["longitude"].to_numpy(), b["latitude"].to_numpy())
    utm = b.drop(columns=["longitude", "latitude"]).assign(easting=x, northing=y)
    table = f'x = "easting"\ny = "northing"\ncrs = "EPSG:3857"\n{MAP_B}'
    with pytest.raises(InputError) as info:
        validate(load_config(_two_sources(tmp_path / "two", a, utm, table_b=table, area='crs = "EPSG:32617"')))
    assert "source 'b': coordinates do not fit crs EPSG:3857" in str(info.value)
    assert "EPSG:32617" in str(info.value)
    # with the right CRS the same file is accepted
    ok = validate(load_config(_two_sources(tmp_path / "ok", a, utm, table_b=table.replace("3857", "32617"),
                                           area='crs = "EPSG:32617"')))
    assert (ok.accepted["source"] == "b").sum() == len(b)


def test_source_names_must_differ(tmp_path, data):
    a, b = _split(data)
    path = _two_sources(tmp_path / "two", a, b)
    path.write_text(path.read_text().replace('name = "b"', 'name = "a"'))
    with pytest.raises(ConfigError, match="every source needs its own name"):
        load_config(path)


def test_validate_reports_and_logs_counts_per_source(tmp_path, data):
    import mlflow

    a, b = _split(data)
    config = _two_sources(tmp_path / "two", a, b)
    done = run_cli("validate", "--config", str(config), "--out", str(tmp_path / "v"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "per source" in done.stdout
    summary = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert summary["by_source"]["b"]["accepted"] == len(b)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["synthetic"], output_format="list")
    assert run.data.metrics["source.a.accepted"] == len(a)
    assert run.data.metrics["source.b.accepted"] == len(b)


# ------------------------------------------------------------------ the real data: Toronto in two sources

from tests.conftest import SHARED_DATA, TORONTO_CONFIG, requires_shared_data  # noqa: E402

TORONTO_LABELS = {"Assault": "ASSAULT", "Auto Theft": "AUTO", "Break and Enter": "B&E", "Robbery": "ROB",
                  "Theft Over": "THEFT>5K"}


def _toronto_config(folder: Path, incidents_tables: str, extra: str = "") -> Path:
    boundary = (SHARED_DATA / "toronto" / "boundary.geojson").as_posix()
    path = folder / "toronto.toml"
    path.write_text(f"""
[area]
name = "toronto-two"
boundary = "{boundary}"
cell_size_m = 250

{incidents_tables}

[period]
freq = "W-MON"
data_end = 2019-12-31

[features]
families = ["temporal", "offense_groups"]
windows = [1, 4, 13]
ewm_halflives = [4.0]
group_windows = [4]
{extra}
""")
    return path


@requires_shared_data
@pytest.mark.realdata
def test_toronto_in_two_sources_gives_the_same_panel_as_the_single_file(tmp_path):
    """The 2018-2019 Toronto data split by police division into two agencies' files (divisions 11-23 keep the
    police's own file layout; divisions 31-55 get other column names, day-first text timestamps and their own
    offence codes) builds the same panel as the single file."""
    import geopandas as gpd

    full = pd.read_parquet(SHARED_DATA / "toronto" / "incidents_mci_2014_2021.parquet")
    full = full[(full["datetime_local"] >= "2018-01-01") & (full["datetime_local"] < "2020-01-01")]
    full = full.reset_index(drop=True)
    full.to_parquet(tmp_path / "single.parquet", index=False)
    divisions = gpd.read_file(SHARED_DATA / "toronto" / "police_divisions.geojson")[["AREA_NAME", "geometry"]]
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(full["Long"], full["Lat"]), crs="EPSG:4326")
    division = gpd.sjoin(points, divisions.to_crs("EPSG:4326"), how="left", predicate="within")
    division = division[~division.index.duplicated()]["AREA_NAME"].reindex(full.index)
    # points in no division (bad or missing coordinates) stay with the first agency
    east = pd.to_numeric(division, errors="coerce").fillna(0).to_numpy() >= 30
    assert 0.3 < east.mean() < 0.7
    full[~east].to_parquet(tmp_path / "west.parquet", index=False)
    other = full[east]
    pd.DataFrame({
        "occ_time": other["datetime_local"].dt.strftime("%d/%m/%Y %H:%M:%S"), "x_lon": other["Long"],
        "y_lat": other["Lat"], "crime": other["MCI"].map(TORONTO_LABELS), "premise": other["premises_type"],
        "hood": other["hood_id"], "record_id": other["row_id"],  # like any export, a record id per row
    }).to_parquet(tmp_path / "east.parquet", index=False)
    tps = TORONTO_CONFIG.read_text().split("[incidents]")[1].split("\n\n")[0]  # the real mapping, as configured
    single_table = "[incidents]" + tps.replace("../../shared/data/toronto/incidents_mci_2014_2021.parquet",
                                               (tmp_path / "single.parquet").as_posix())
    west_table = single_table.replace("[incidents]", "[[incidents]]").replace('"tps_mci"', '"tps_west"').replace(
        "single.parquet", "west.parquet")
    east_table = f"""
[[incidents]]
name = "tps_east"
path = "{(tmp_path / 'east.parquet').as_posix()}"
timestamp = "occ_time"
timestamp_format = "%d/%m/%Y %H:%M:%S"
lon = "x_lon"
lat = "y_lat"
offense = "crime"
premises = "premise"
offenses = ["Assault", "Auto Theft", "Break and Enter", "Robbery", "Theft Over"]
offense_map = {{ {", ".join(f'"{v}" = "{k}"' for k, v in TORONTO_LABELS.items())} }}
"""
    import time

    start = time.perf_counter()
    single_cfg = load_config(_toronto_config(tmp_path, single_table))
    single, single_panel = _panel(single_cfg)
    # with the default cross-source dedupe (15 min, 25 m): no two incidents across the split are taken as one
    two_cfg = load_config(_toronto_config(tmp_path, west_table + east_table))
    two, panel = _panel(two_cfg)
    seconds = time.perf_counter() - start

    assert two.source_counts()["tps_east"]["accepted"] == int(east.sum()) - int(
        (single.quarantine["source_row"].isin(np.flatnonzero(east))).sum())
    assert len(two.accepted) == len(single.accepted)
    assert panel.groups == single_panel.groups
    np.testing.assert_array_equal(panel.counts, single_panel.counts)
    np.testing.assert_array_equal(panel.target, single_panel.target)
    np.testing.assert_allclose(panel.X, single_panel.X, rtol=1e-5, atol=1e-5)
    assert two.reason_counts().get("duplicate_across_sources", 0) == 0
    print(f"\nToronto 2018-2019 in two sources: {len(two.accepted):,} accepted "
          f"({two.source_counts()}), same panel as the single file; {seconds:.1f} s for both")
