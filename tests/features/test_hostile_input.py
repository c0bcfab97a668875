"""A corpus of hostile and careless inputs, each with its exact outcome: exit code, message, quarantine reason, and
rows read = accepted + quarantined. Driven through the real `hotspot validate` / `hotspot ingest` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from typer.testing import CliRunner

from hotspot.cli import app
from tests.conftest import synthetic_incidents, write_config

BASE = synthetic_incidents(n=400, weeks=40)
FORMULAS = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://x.invalid","click")', "+1", "@SUM(1)", "\t=1+1", "-1+1"]


def _set(column: str, rows: list[int], values):
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame[column] = frame[column].astype(object)
        frame.loc[rows, column] = values
        return frame
    return mutate


def _swap(frame):
    return frame.assign(lon=frame["lat"], lat=frame["lon"])


def _utm(frame):
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32617", always_xy=True).transform(frame["lon"], frame["lat"])
    return frame.assign(lon=x, lat=y)


def _stray(frame):  # one point in the Atlantic, about 5,000 km from Toronto
    return frame.assign(lon=np.where(frame.index == 0, -20.0, frame["lon"]),
                        lat=np.where(frame.index == 0, 10.0, frame["lat"]))


# name -> (mutation or raw file text, exit code, message fragment (stderr), {reason: rows quarantined})
CASES = {
    "empty file": ("", 2, "cannot read as csv", None),
    "header only": ("when,lon,lat,offence,case_ref\n", 2, "the file has no rows", None),
    "missing column": (lambda f: f.drop(columns=["offence"]), 2, "column(s) ['offence'] not found", None),
    "unparseable dates": (_set("when", [0, 1], "not a date"), 0, "", {"unparseable_timestamp": 2}),
    "future date": (_set("when", [0], "2031-05-05 10:00:00"), 0, "", {"future_date": 1}),
    "(0, 0)": (lambda f: f.assign(lon=np.where(f.index < 3, 0.0, f["lon"]), lat=np.where(f.index < 3, 0.0, f["lat"])),
               0, "", {"zero_coordinates": 3}),
    "1e9": (_set("lon", [0], 1e9), 0, "", {"coordinates_out_of_range": 1}),
    "NaN and inf": (_set("lon", [0, 1], ["nan", "inf"]), 0, "", {"invalid_coordinates": 2}),
    "duplicates": (lambda f: pd.concat([f, f.head(5)], ignore_index=True), 0, "", {"duplicate": 5}),
    "emoji offence": (_set("offence", [0], "Assault 🚓🚓"), 0, "", {}),
    "100k-character offence": (_set("offence", [0], "A" * 100_000), 0, "", {}),
    "personal column": (lambda f: f.assign(victim_name="Jane Doe"), 2, "'victim_name' (a person's name) look like "
                        "personal data", None),
    "stray point 5,000 km away": (_stray, 0, "", {"outside_boundary": 1}),
    "formula cells": (_set("when", list(range(len(FORMULAS))), FORMULAS), 0, "",
                      {"unparseable_timestamp": len(FORMULAS)}),
    "lat/lon swapped": (_swap, 2, "lat/lon look swapped", {"source_misplaced": 400}),
    "projected metres as lon/lat": (_utm, 2, "look like projected metres or feet, not degrees",
                                    {"coordinates_out_of_range": 400}),
}


def _make(tmp_path: Path, name: str) -> Path:
    change = CASES[name][0]
    folder = tmp_path / "case"
    cfg = write_config(folder, change(BASE) if callable(change) else BASE)
    if isinstance(change, str):
        (folder / "incidents.csv").write_text(change)
    return cfg


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize("name", list(CASES))
def test_each_hostile_input_has_its_exact_outcome(tmp_path, name):
    _, code, message, reasons = CASES[name]
    cfg = _make(tmp_path, name)
    out = tmp_path / "out"
    result = _invoke("validate", "--config", str(cfg), "--out", str(out))
    assert result.exit_code == code, result.output
    text = " ".join(result.output.split())
    assert message in text
    assert "Traceback" not in result.output
    if reasons is None:  # refused before any row was read: nothing written
        assert not (out / "validation.json").exists()
        return
    summary = json.loads((out / "validation.json").read_text())
    quarantine = pd.read_csv(out / "quarantine.csv", keep_default_na=False)
    assert summary["read"] == summary["accepted"] + summary["quarantined"] + summary.get("held_back", 0)
    assert len(quarantine) == summary["quarantined"]
    assert {r: c for r, c in summary["by_reason"].items() if c} == reasons
    assert quarantine["reason"].value_counts().to_dict() == reasons
    if code:
        assert summary["status"] == "refused" and summary["accepted"] == 0 and message in summary["error"]
    misplaced = quarantine[quarantine["reason"] == "source_misplaced"]["detail"]
    # each row says its own values and the cause in short; the figures and the fix are said once, in the error
    assert all(message in d and "like the whole source" in d and len(d) < 120 for d in misplaced), misplaced[:3]


def test_quarantine_csv_neutralises_formulas_and_keeps_numbers(tmp_path):
    cfg = _make(tmp_path, "formula cells")
    out = tmp_path / "out"
    assert _invoke("validate", "--config", str(cfg), "--out", str(out)).exit_code == 0
    quarantine = pd.read_csv(out / "quarantine.csv", keep_default_na=False)
    assert sorted(quarantine["when"]) == sorted("'" + f for f in FORMULAS)
    # the raw coordinates are numbers as read (negative longitudes included) and stay so
    assert pd.to_numeric(quarantine["lon"]).lt(0).all()
    assert not any(str(v).startswith(("=", "+", "@", "\t", "\r")) for v in quarantine.to_numpy().ravel())


def test_ingest_that_passes_no_row_exits_2_and_stores_nothing(tmp_path):
    cfg = _make(tmp_path, "projected metres as lon/lat")
    out = tmp_path / "ingest"
    result = _invoke("ingest", "--config", str(cfg), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "source 'incidents': coordinates do not fit crs EPSG:4326" in " ".join(result.output.split())
    assert not list(tmp_path.rglob("incidents.parquet")), "an empty history was stored"
    summary = json.loads((out / "ingest.json").read_text())
    assert summary["status"] == "refused" and summary["read"] == 400 and summary["quarantined"] == 400
    assert len(pd.read_csv(out / "quarantine.csv")) == 400


def test_a_real_city_read_as_given_is_not_called_swapped(tmp_path):
    """The land reference only refuses when one reading is impossible: the plain sample passes."""
    cfg = write_config(tmp_path / "plain", BASE)
    result = _invoke("validate", "--config", str(cfg), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "validation.json").read_text())["accepted"] == 400


def test_every_formula_start_is_neutralised_and_numbers_stay_numbers(tmp_path):
    from hotspot.features.safe_csv import write_csv

    frame = pd.DataFrame({"text": ["=1+1", "+1", "-1+1", "@SUM(1)", "\t=1", "\r=2", "-79.38", "plain", None],
                          "number": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0, 8.0, np.nan],
                          "group": pd.Categorical(["=x", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok"])})
    path = write_csv(frame, tmp_path / "t.csv")
    back = pd.read_csv(path, keep_default_na=False)
    assert back["text"].tolist() == ["'=1+1", "'+1", "'-1+1", "'@SUM(1)", "'\t=1", "'\r=2", "-79.38", "plain", ""]
    numbers = pd.read_csv(path)["number"]
    assert numbers.dtype == float and numbers.iloc[0] == -1.5
    assert back["group"].iloc[0] == "'=x"
