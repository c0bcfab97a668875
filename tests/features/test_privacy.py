"""Personal data: columns that look personal are refused at ingest unless allowed, allowed ones never reach the
accepted rows, the history or the quarantine file, and no output of the whole flow holds an incident's exact
coordinates or a personal field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hotspot.features import history
from hotspot.features.config import load_config
from hotspot.features.errors import InputError
from hotspot.features.ingest import validate, write_quarantine
from tests.conftest import run_cli, synthetic_incidents, write_config


def _with(column: str, values) -> pd.DataFrame:
    return synthetic_incidents(n=200, weeks=12).assign(**{column: values})


@pytest.mark.parametrize("column,values", [
    ("victim_name", "Ann Example"), ("Surname", "Example"), ("narrative", "entered through the back door"),
    ("offence_description", "text"), ("street_address", "12 Some St"), ("DOB", "1990-01-01"),
    ("date_of_birth", "1990-01-01"), ("case_number", "C-1"), ("Occurrence No", "GO-1"),
    ("event_unique_id", "GO-1"), ("phone", "416 555 0101"), ("email", "a@example.org"), ("licence_plate", "ABC 123"),
])
def test_personal_looking_columns_are_refused_naming_source_and_column(tmp_path, column, values):
    with pytest.raises(InputError) as info:
        validate(load_config(write_config(tmp_path / "in", _with(column, values))))
    message = str(info.value)
    assert "source 'incidents'" in message and f"'{column}'" in message and "allow_columns" in message


def test_values_that_look_like_emails_or_phones_are_refused_whatever_the_column_is_called(tmp_path):
    for i, values in enumerate([[f"user{i}@example.org" for i in range(200)], ["+1 (416) 555-0199"] * 200]):
        with pytest.raises(InputError, match="'contact'"):
            validate(load_config(write_config(tmp_path / f"in{i}", _with("contact", values))))


def test_configured_patterns_add_to_the_built_in_ones(tmp_path):
    df = _with("badge", "4711")
    assert len(validate(load_config(write_config(tmp_path / "plain", df))).accepted) == 200
    with pytest.raises(InputError, match="'badge'"):
        validate(load_config(write_config(tmp_path / "own", df, extra='[personal_data]\npatterns = ["^badge$"]')))


def test_ordinary_and_mapped_columns_are_not_refused(tmp_path):
    df = synthetic_incidents(n=200, weeks=12).rename(columns={"lon": "street_lon", "lat": "street_lat"})
    df = df.assign(premises_type="House", Neighbourhood="Annex", hood_id=3, row_id=np.arange(200))
    path = write_config(tmp_path / "in", df)
    path.write_text(path.read_text().replace('lon = "lon"', 'lon = "street_lon"').replace(
        'lat = "lat"', 'lat = "street_lat"'))
    assert len(validate(load_config(path)).accepted) == 200


def test_allowed_personal_columns_reach_no_stored_or_written_table(tmp_path):
    df = _with("victim_name", [f"Victim Person{i:04d}" for i in range(200)])
    df.loc[5, "when"] = "not a date"  # one quarantined row, to see what the quarantine file carries
    path = write_config(tmp_path / "in", df)
    path.write_text(path.read_text().replace('allow_columns = ["case_ref"]', 'allow_columns = ["case_ref", '
                                                                             '"victim_name"]'))
    cfg = load_config(path)
    result = validate(cfg)
    assert len(result.accepted) == 199 and "victim_name" not in result.accepted.columns
    assert "victim_name" not in result.quarantine.columns
    assert result.quarantine.loc[0, "case_ref"] == "5"  # a case number stays, to trace the row
    written = write_quarantine(result, tmp_path / "out").read_text()
    assert "Person0005" not in written
    history.build(cfg)
    stored = history.stored_file(cfg).read_bytes()
    assert b"Person" not in stored and b"victim" not in stored
    assert b"Victim" not in stored


# ------------------------------------------------------------------ the whole flow, end to end


NUMBER = re.compile(r"-?\d+\.\d{5,}")
PAIR = re.compile(r"(-?\d+\.\d{5,})\s*,\s*(-?\d+\.\d{5,})")


def _pairs_in(path: Path) -> set[tuple[float, float]]:
    """Every (a, b) coordinate pair a file holds, rounded to 5 decimals: adjacent numbers in text, and the values of
    any two float columns of one row in a Parquet file."""
    found: set[tuple[float, float]] = set()
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path).select_dtypes("number")
        cols = [frame[c].to_numpy(dtype=float) for c in frame.columns]
        for i, a in enumerate(cols):
            for b in cols[i + 1:]:
                found |= set(zip(np.round(a, 5), np.round(b, 5)))
        return found
    text = path.read_bytes().decode("latin-1")
    for a, b in PAIR.findall(text):
        found.add((round(float(a), 5), round(float(b), 5)))
    return found


def _leaks(root: Path, skip: Path, lonlat: np.ndarray, names: list[str]) -> list[str]:
    pairs = {(round(lo, 5), round(la, 5)) for lo, la in lonlat}
    leaks = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and skip not in p.parents):
        data = path.read_bytes()
        leaks += [f"{path.relative_to(root)}: name {n!r}" for n in names if n.encode() in data]
        try:
            hit = pairs & _pairs_in(path)
        except Exception:  # noqa: BLE001 - a file that is not text or readable Parquet still had its bytes searched
            hit = set()
        leaks += [f"{path.relative_to(root)}: incident point {p}" for p in sorted(hit)[:3]]
    return leaks


def test_no_output_of_the_whole_flow_holds_an_incident_point_or_a_personal_field(tmp_path):
    df = synthetic_incidents(n=1500, weeks=40, seed=7)
    names = [f"Victim Person{i:04d}" for i in range(len(df))]
    df["victim_name"] = names
    study = tmp_path / "study"
    config = write_config(study, df)
    config.write_text(config.read_text().replace('allow_columns = ["case_ref"]',
                                                 'allow_columns = ["case_ref", "victim_name"]'))
    lonlat = df[["lon", "lat"]].to_numpy(dtype=float)
    # the scanner finds what it looks for: the input file holds every point and name
    assert len(_leaks(study, tmp_path / "none", lonlat, names[:5])) >= 5 + 3
    for args in (["validate"], ["ingest"], ["features"], ["train"],
                 ["backtest", "--weeks", "2", "--model", "naive_4w,lightgbm", "--refit-every", "2"]):
        done = run_cli(*args, "--config", str(config), cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    features = run_cli("features", "--config", str(config), cwd=tmp_path)
    week = features.stdout.split("(+ the forecast period ")[1][:10]
    geojson = tmp_path / "outputs" / "f.geojson"
    done = run_cli("forecast", "--config", str(config), "--week", week, "--out", str(geojson), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "outputs" / "f.geojson").is_file() and any((tmp_path / "mlruns").rglob("*.json"))
    # everything the flow wrote: outputs/, MLflow's artifacts and its database; not the inputs or the history
    assert _leaks(tmp_path, study, lonlat, names) == []
