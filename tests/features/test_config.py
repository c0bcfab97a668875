"""The study-area config as a user meets it: every mistake names the key path and what was expected."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest

from hotspot.features.config import ConfigError, load_config
from hotspot.features.ingest import validate
from tests.conftest import (
    REPO_ROOT,
    SAMPLE_CONFIG,
    SHARED_DATA,
    TORONTO_CONFIG,
    requires_shared_data,
    synthetic_incidents,
    write_config,
)


def _config(tmp_path: Path, **kwargs) -> Path:
    return write_config(tmp_path / "study", synthetic_incidents(n=200), **kwargs)


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, f"{old!r} not in the test config"
    path.write_text(text.replace(old, new, 1))
    return path


def _error(path: Path | str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def _problem_lines(message: str) -> list[str]:
    """The per-key lines of a validation message (the first line names the file and the count)."""
    return [line.strip() for line in message.splitlines()[1:]]


# ---------------------------------------------------------------- a good config


def test_valid_config_loads_with_its_values(tmp_path):
    cfg = load_config(_config(tmp_path))
    assert cfg.area.name == "synthetic"
    assert cfg.area.cell_size_m == 500
    assert cfg.incidents.timestamp == "when"
    assert (cfg.incidents.lon, cfg.incidents.lat, cfg.incidents.x, cfg.incidents.y) == ("lon", "lat", None, None)
    assert cfg.incidents.latest_date == date(2030, 1, 1)
    assert cfg.incidents.file_format == "csv"
    assert cfg.period.freq == "W-MON"  # default
    assert cfg.backtest.weeks == 6


def test_config_records_its_source_and_fingerprint(tmp_path):
    path = _config(tmp_path)
    cfg = load_config(path)
    assert cfg.source_path == path.resolve()
    assert cfg.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- mistakes a user makes


def test_misspelt_key_is_named_with_its_section(tmp_path):
    message = _error(_config(tmp_path, area="cel_size_m = 250"))
    assert str(tmp_path / "study" / "area.toml") in message
    assert _problem_lines(message) == ["area.cel_size_m: unknown key (check its spelling and section)"]


def test_unknown_section_is_named(tmp_path):
    message = _error(_config(tmp_path, extra="[modle]\ntrain_periods = 10"))
    assert _problem_lines(message) == ["modle: unknown key (check its spelling and section)"]


def test_unknown_key_in_a_nested_table_gives_the_full_path(tmp_path):
    path = _edit(_config(tmp_path), "num_boost_round = 30", "num_boost_round = 30\nleaves = 7")
    assert _problem_lines(_error(path)) == ["model.lightgbm.leaves: unknown key (check its spelling and section)"]


def test_missing_required_key_is_named(tmp_path):
    path = _edit(_config(tmp_path), 'timestamp = "when"\n', "")
    assert _problem_lines(_error(path)) == ["incidents.timestamp: required key is missing"]


def test_missing_required_section_is_named(tmp_path):
    path = _config(tmp_path)
    text = path.read_text()
    start, end = text.index("[area]"), text.index("[incidents]")
    path.write_text(text[:start] + text[end:])
    assert _problem_lines(_error(path)) == ["area: required key is missing"]


def test_wrong_type_names_key_expected_type_and_value(tmp_path):
    path = _edit(_config(tmp_path), "cell_size_m = 500", 'cell_size_m = "abc"')
    (line,) = _problem_lines(_error(path))
    assert line.startswith("area.cell_size_m: ")
    assert "valid number" in line
    assert "'abc'" in line


def test_out_of_range_number_names_the_bound(tmp_path):
    path = _edit(_config(tmp_path), "cell_size_m = 500", "cell_size_m = -5")
    (line,) = _problem_lines(_error(path))
    assert line.startswith("area.cell_size_m: ")
    assert "greater than 0" in line
    assert "(got -5)" in line


def test_every_problem_is_reported_at_once(tmp_path):
    path = _edit(_config(tmp_path, area="cel_size_m = 250"), 'offense = "offence"\n', "")
    message = _error(path)
    assert "2 problem(s)" in message.splitlines()[0]
    assert sorted(_problem_lines(message)) == [
        "area.cel_size_m: unknown key (check its spelling and section)",
        "incidents.offense: required key is missing",
    ]


def test_incident_file_that_does_not_exist_is_named_with_its_full_path(tmp_path):
    path = _edit(_config(tmp_path), 'path = "incidents.csv"', 'path = "nowhere/incidents.csv"')
    (line,) = _problem_lines(_error(path))
    assert line.startswith("incidents.path: ")
    assert "file not found" in line
    assert str(tmp_path / "study" / "nowhere" / "incidents.csv") in line


def test_boundary_file_that_does_not_exist_is_named(tmp_path):
    (line,) = _problem_lines(_error(_config(tmp_path, area='boundary = "city.geojson"')))
    assert line.startswith("area.boundary: ")
    assert str(tmp_path / "study" / "city.geojson") in line


def test_geographic_crs_is_refused_because_cells_are_in_metres(tmp_path):
    (line,) = _problem_lines(_error(_config(tmp_path, area='crs = "EPSG:4326"')))
    assert line.startswith("area.crs: ")
    assert "'EPSG:4326' is not a projected CRS in metres" in line


def test_unknown_crs_is_refused(tmp_path):
    (line,) = _problem_lines(_error(_config(tmp_path, area='crs = "EPSG:999999"')))
    assert line.startswith("area.crs: ")
    assert "not a CRS pyproj knows: 'EPSG:999999'" in line


def test_projected_crs_is_accepted(tmp_path):
    assert load_config(_config(tmp_path, area='crs = "EPSG:32617"')).area.crs == "EPSG:32617"


@pytest.mark.parametrize("freq", ["weekly", "W-XYZ", ""])
def test_invalid_pandas_frequency_is_refused(tmp_path, freq):
    (line,) = _problem_lines(_error(_config(tmp_path, extra=f'[period]\nfreq = "{freq}"')))
    assert line.startswith("period.freq: ")
    assert f"not a pandas frequency alias: {freq!r}" in line


def test_valid_pandas_frequency_is_kept(tmp_path):
    assert load_config(_config(tmp_path, extra='[period]\nfreq = "D"')).period.freq == "D"


def test_both_lonlat_and_xy_is_refused(tmp_path):
    (line,) = _problem_lines(_error(_config(tmp_path, extra_incidents='x = "x"\ny = "y"')))
    assert line.startswith("incidents: ")
    assert "give either lon and lat, or x and y" in line


@pytest.mark.parametrize("removed", ['lon = "lon"\nlat = "lat"\n', 'lat = "lat"\n'])
def test_no_complete_coordinate_pair_is_refused(tmp_path, removed):
    path = _edit(_config(tmp_path), removed, "")
    (line,) = _problem_lines(_error(path))
    assert line.startswith("incidents: ")
    assert "give either lon and lat, or x and y" in line


def test_xy_with_crs_is_accepted(tmp_path):
    path = _edit(_config(tmp_path), 'lon = "lon"\nlat = "lat"\n', 'x = "x"\ny = "y"\ncrs = "EPSG:32617"\n')
    cfg = load_config(path)
    assert (cfg.incidents.x, cfg.incidents.y, cfg.incidents.crs) == ("x", "y", "EPSG:32617")
    assert cfg.incidents.lon is None


def test_empty_offense_list_is_refused(tmp_path):
    (line,) = _problem_lines(_error(_config(tmp_path, extra_incidents="offenses = []")))
    assert "offenses is empty" in line


def test_earliest_after_latest_is_refused(tmp_path):
    (line,) = _problem_lines(_error(_config(tmp_path, extra_incidents="earliest_date = 2031-01-01")))
    assert line.startswith("incidents: ")
    assert "earliest_date is after latest_date" in line


def test_target_offense_outside_the_accepted_offenses_is_named(tmp_path):
    path = _edit(_config(tmp_path, extra_incidents='offenses = ["Assault", "Robbery"]'),
                 "train_periods = 30", 'train_periods = 30\ntarget_offenses = ["Assault", "Arson"]')
    assert "model.target_offenses ['Arson'] are not in incidents.offenses" in _error(path)


def test_invalid_toml_syntax_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[area]\nname = "x"\ncell_size_m = \n')
    message = _error(path)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 3" in message


def test_config_file_not_found(tmp_path):
    path = tmp_path / "no-such-area.toml"
    assert _error(path) == f"{path}: config file not found"


def test_config_path_that_is_a_folder_is_not_found(tmp_path):
    assert _error(tmp_path) == f"{tmp_path}: config file not found"


def test_unknown_incident_format_names_the_key(tmp_path):
    folder = tmp_path / "study"
    path = _config(tmp_path)
    (folder / "incidents.csv").rename(folder / "incidents.dat")
    _edit(path, 'path = "incidents.csv"', 'path = "incidents.dat"')
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=r"incidents.path: cannot tell the format of incidents.dat; set incidents"):
        _ = cfg.incidents.file_format


# ---------------------------------------------------------------- paths relative to the config file


def test_paths_resolve_against_the_config_folder_not_the_working_directory(tmp_path, monkeypatch):
    study = tmp_path / "configs" / "study"
    write_config(study, synthetic_incidents(n=200))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # a decoy with the same name in the working directory must not be read
    synthetic_incidents(n=50).to_csv(elsewhere / "incidents.csv", index=False)
    monkeypatch.chdir(elsewhere)

    cfg = load_config("../configs/study/area.toml")

    assert cfg.incidents.path == (study / "incidents.csv").resolve()
    assert cfg.incidents.path.is_absolute()
    assert cfg.source_path == (study / "area.toml").resolve()
    assert validate(cfg).n_read == 200


def test_boundary_path_resolves_against_the_config_folder(tmp_path, monkeypatch):
    study = tmp_path / "study"
    (study / "shapes").mkdir(parents=True)
    (study / "shapes" / "city.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    path = write_config(study, synthetic_incidents(n=50), area='boundary = "shapes/city.geojson"')
    monkeypatch.chdir(REPO_ROOT)
    assert load_config(path).area.boundary == (study / "shapes" / "city.geojson").resolve()


# ---------------------------------------------------------------- the shipped configs


def test_bundled_sample_config_loads():
    cfg = load_config(SAMPLE_CONFIG)
    assert cfg.area.name == "toronto-sample"
    assert cfg.area.boundary is None
    assert cfg.area.cell_size_m == 250
    assert cfg.incidents.path == (REPO_ROOT / "data" / "toronto_sample" / "incidents.parquet").resolve()
    assert cfg.incidents.path.is_file()
    assert cfg.incidents.file_format == "parquet"
    assert cfg.incidents.offenses == ["Assault", "Auto Theft", "Break and Enter", "Robbery", "Theft Over"]
    assert cfg.incidents.earliest_date == date(2016, 1, 1)
    assert cfg.period.data_end == date(2019, 12, 31)
    assert cfg.source_sha256 == hashlib.sha256(SAMPLE_CONFIG.read_bytes()).hexdigest()


@requires_shared_data
def test_full_toronto_config_loads_with_the_shared_data():
    cfg = load_config(TORONTO_CONFIG)
    assert cfg.area.name == "toronto"
    assert cfg.area.boundary == (SHARED_DATA / "toronto" / "boundary.geojson").resolve()
    assert cfg.incidents.path == (SHARED_DATA / "toronto" / "incidents_mci_2014_2021.parquet").resolve()
    assert cfg.fairness is not None
    assert cfg.fairness.areas == (SHARED_DATA / "toronto" / "neighbourhoods.geojson").resolve()
    assert cfg.fairness.population == "pop_total"
    assert [g.name for g in cfg.fairness.groups] == ["plurality", "black_share", "income", "low_income"]
    assert cfg.fairness.primary == "black_share"
    assert cfg.period.data_end == date(2021, 12, 31)
