"""The stored incident history: weekly appends give the same panel as one ingest of everything, re-appending a
file adds nothing, late rows are flagged with their periods, and a failed append leaves the history untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hotspot.features import history
from hotspot.features.config import load_config
from hotspot.features.errors import HotspotError
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from tests.conftest import run_cli, synthetic_incidents, write_config

WEEKS = 30
BASE_WEEKS = 22


def _weekly(df: pd.DataFrame) -> list[pd.DataFrame]:
    week = ((pd.to_datetime(df["when"]) - pd.Timestamp("2020-01-06")) // pd.Timedelta(days=7)).to_numpy()
    return [df[week == w] for w in range(WEEKS)]


@pytest.fixture
def data() -> pd.DataFrame:
    return synthetic_incidents(n=1500, weeks=WEEKS, seed=3)


def _panel(cfg):
    result = validate(cfg)
    return result, build_panel(cfg, result.accepted, result.grid)


def _write_chunk(folder: Path, chunk: pd.DataFrame, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    chunk.to_csv(path, index=False)
    return path


def test_weekly_appends_give_the_same_panel_as_one_ingest(tmp_path, data):
    weeks = _weekly(data)
    whole_cfg = load_config(write_config(tmp_path / "whole", data))
    whole, whole_panel = _panel(whole_cfg)
    assert history.stored_file(whole_cfg) is None  # no history: read from the file

    cfg = load_config(write_config(tmp_path / "inc", pd.concat(weeks[:BASE_WEEKS])))
    built = history.build(cfg)
    assert built.added == sum(len(w) for w in weeks[:BASE_WEEKS])
    before = _panel(cfg)[1]
    for w in range(BASE_WEEKS, WEEKS):
        report = history.append(cfg, _write_chunk(tmp_path / "weekly", weeks[w], f"week{w}.csv"))
        assert report.added == len(weeks[w]) and report.already_stored == 0 and report.late == 0
    result, panel = _panel(cfg)

    assert result.history == history.stored_file(cfg)
    assert len(result.accepted) == len(whole.accepted)
    assert panel.next_period_start > before.next_period_start  # the forecast moved forward with the data
    assert (panel.period_starts == whole_panel.period_starts).all()
    assert panel.groups == whole_panel.groups
    assert (panel.grid.cell_id == whole_panel.grid.cell_id).all()
    np.testing.assert_array_equal(panel.counts, whole_panel.counts)
    np.testing.assert_array_equal(panel.target, whole_panel.target)
    assert panel.feature_names == whole_panel.feature_names
    np.testing.assert_allclose(panel.X, whole_panel.X, rtol=1e-6, atol=1e-6)
    # the fingerprint follows the stored rows, whichever order they came in
    assert result.fingerprint == history.content_fingerprint(history.load(cfg)[0])


def test_re_appending_a_file_adds_nothing(tmp_path, data):
    weeks = _weekly(data)
    cfg = load_config(write_config(tmp_path / "inc", pd.concat(weeks[:BASE_WEEKS])))
    history.build(cfg)
    chunk = _write_chunk(tmp_path / "weekly", pd.concat(weeks[BASE_WEEKS:BASE_WEEKS + 2]), "two_weeks.csv")
    first = history.append(cfg, chunk)
    again = history.append(cfg, chunk)
    assert first.added == len(weeks[BASE_WEEKS]) + len(weeks[BASE_WEEKS + 1])
    assert (again.added, again.already_stored) == (0, first.added)
    assert again.rows_stored == first.rows_stored
    # the first file of the history appended again is all known too
    assert history.append(cfg, cfg.incidents.path).added == 0


def test_late_rows_are_accepted_and_flagged_with_their_periods(tmp_path, data):
    weeks = _weekly(data)
    cfg = load_config(write_config(tmp_path / "inc", pd.concat(weeks[:BASE_WEEKS])))
    history.build(cfg)
    late_row = weeks[5].iloc[[0]].assign(when="2020-02-12 10:00:00", case_ref=99_999)  # week of 2020-02-10
    fresh = weeks[BASE_WEEKS]
    report = history.append(cfg, _write_chunk(tmp_path / "weekly", pd.concat([late_row, fresh]), "late.csv"))
    assert report.added == len(fresh) + 1
    assert report.late == 1 and report.late_periods == ["2020-02-10"]
    stored, _ = history.load(cfg)
    assert stored["late"].sum() == 1
    assert stored.loc[stored["late"], "occurred_at"].iloc[0] == pd.Timestamp("2020-02-12 10:00:00")
    # a late row counts in its own (past) week of the panel
    result, panel = _panel(cfg)
    t = panel.period_index("2020-02-10")
    base = _panel(load_config(write_config(tmp_path / "base", pd.concat(weeks[:BASE_WEEKS + 1]))))[1]
    assert panel.counts[t].sum() == base.counts[t].sum() + 1


def test_a_failed_append_leaves_the_history_byte_for_byte(tmp_path, data, monkeypatch):
    import pyarrow.parquet as pq

    weeks = _weekly(data)
    cfg = load_config(write_config(tmp_path / "inc", pd.concat(weeks[:BASE_WEEKS])))
    history.build(cfg)
    path = history.stored_file(cfg)
    before = path.read_bytes()
    real_write = pq.write_table

    def write_then_fail(table, where, *args, **kwargs):
        real_write(table, where, *args, **kwargs)  # the temporary file is complete ...
        raise OSError("disk full")  # ... and the step dies before it replaces the history

    monkeypatch.setattr(pq, "write_table", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        history.append(cfg, _write_chunk(tmp_path / "weekly", weeks[BASE_WEEKS], "w.csv"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]  # no temporary file

    # a file that fails validation as a whole changes nothing either
    monkeypatch.setattr(pq, "write_table", real_write)
    bad = weeks[BASE_WEEKS].assign(when="not a date")
    with pytest.raises(HotspotError, match="source 'incidents'"):
        history.append(cfg, _write_chunk(tmp_path / "weekly", bad, "bad.csv"))
    assert path.read_bytes() == before


def test_a_history_built_with_another_mapping_is_refused(tmp_path, data):
    cfg = load_config(write_config(tmp_path / "inc", data))
    history.build(cfg)
    other = load_config(write_config(tmp_path / "inc", data, extra_incidents='offenses = ["Assault", "Robbery"]'))
    with pytest.raises(HotspotError, match="another \\[incidents\\] mapping"):
        validate(other)


def test_cli_ingest_then_append_moves_the_forecast_period(tmp_path, data):
    weeks = _weekly(data)
    config = write_config(tmp_path / "inc", pd.concat(weeks[:BASE_WEEKS]))
    chunk = _write_chunk(tmp_path / "weekly", pd.concat(weeks[BASE_WEEKS:BASE_WEEKS + 2]), "new.csv")

    built = run_cli("ingest", "--config", str(config), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    first = run_cli("features", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    appended = run_cli("ingest", "--config", str(config), "--append", str(chunk), cwd=tmp_path)
    assert appended.returncode == 0, appended.stderr
    assert f"{len(weeks[BASE_WEEKS]) + len(weeks[BASE_WEEKS + 1]):,} rows added" in appended.stdout
    again = run_cli("ingest", "--config", str(config), "--append", str(chunk), cwd=tmp_path)
    assert "0 rows added" in again.stdout and "were already stored" in again.stdout
    second = run_cli("features", "--config", str(config), cwd=tmp_path)
    assert second.returncode == 0, second.stderr

    def forecast_period(stdout: str) -> pd.Timestamp:
        return pd.Timestamp(stdout.split("(+ the forecast period ")[1][:10])

    assert forecast_period(second.stdout) - forecast_period(first.stdout) == pd.Timedelta(days=14)


def test_cli_forecast_follows_the_appended_weeks(tmp_path, data):
    weeks = _weekly(data)
    config = write_config(tmp_path / "inc", pd.concat(weeks[:BASE_WEEKS]))
    assert run_cli("ingest", "--config", str(config), cwd=tmp_path).returncode == 0
    assert run_cli("train", "--config", str(config), cwd=tmp_path).returncode == 0
    next_week = pd.Timestamp("2020-01-06") + pd.Timedelta(weeks=BASE_WEEKS)
    later = next_week + pd.Timedelta(weeks=1)

    def forecast(week: pd.Timestamp):
        return run_cli("forecast", "--config", str(config), "--week", str(week.date()), "--out",
                       str(tmp_path / f"{week.date()}.geojson"), cwd=tmp_path)

    assert forecast(next_week).returncode == 0
    refused = forecast(later)
    assert refused.returncode == 2 and "not a period start" in refused.stderr
    chunk = _write_chunk(tmp_path / "weekly", weeks[BASE_WEEKS], "week.csv")
    assert run_cli("ingest", "--config", str(config), "--append", str(chunk), cwd=tmp_path).returncode == 0
    moved = forecast(later)
    assert moved.returncode == 0, moved.stderr
    assert (tmp_path / f"{later.date()}.geojson").is_file()


def test_append_to_a_second_source_uses_its_mapping_and_skips_its_echoes(tmp_path):
    from tests.features.test_sources import _as_source_b, _two_sources

    data = synthetic_incidents(n=1200, weeks=20, seed=5)
    west = data["lon"] < data["lon"].median()
    a, b = data[west], _as_source_b(data[~west])
    cfg = load_config(_two_sources(tmp_path / "two", a, b.iloc[:400]))
    history.build(cfg)
    echo = a.iloc[:3].assign(case_ref=[7001, 7002, 7003])  # B's copies of three of A's incidents
    new_b = pd.concat([b.iloc[400:], _as_source_b(echo)], ignore_index=True)
    new_b.to_parquet(tmp_path / "new_b.parquet", index=False)
    report = history.append(cfg, tmp_path / "new_b.parquet", source="b")
    assert report.added == len(b) - 400
    assert report.by_source["b"]["quarantined_duplicate_across_sources"] == 3
    stored, _ = history.load(cfg)
    assert (stored["source"] == "b").sum() == len(b)
    with pytest.raises(HotspotError, match="--source 'c'"):
        history.append(cfg, tmp_path / "new_b.parquet", source="c")


def test_rows_after_a_fixed_data_end_are_stored_and_said_not_silently_ignored(tmp_path, data):
    """A config that fixes period.data_end keeps appended later weeks out of the panel: the append says so."""
    weeks = _weekly(data)
    end = (pd.Timestamp("2020-01-06") + pd.Timedelta(weeks=BASE_WEEKS) - pd.Timedelta(days=1)).date()
    config = write_config(tmp_path / "inc", pd.concat(weeks[:BASE_WEEKS]), extra=f"[period]\ndata_end = {end}\n")
    assert run_cli("ingest", "--config", str(config), cwd=tmp_path).returncode == 0
    chunk = _write_chunk(tmp_path / "weekly", pd.concat(weeks[BASE_WEEKS - 1:BASE_WEEKS + 1]), "new.csv")
    cfg = load_config(config)
    before = _panel(cfg)[1]
    appended = run_cli("ingest", "--config", str(config), "--append", str(chunk), "--out", str(tmp_path / "o"),
                       cwd=tmp_path)
    assert appended.returncode == 0, appended.stderr
    after_end = len(weeks[BASE_WEEKS])
    assert f"{after_end:,} rows occurred after period.data_end ({end})" in " ".join(appended.stdout.split())
    summary = (tmp_path / "o" / "ingest.json").read_text()
    assert f'"after_data_end": {after_end}' in summary
    after = _panel(cfg)[1]
    assert after.n_periods == before.n_periods  # the stored later week does not enter the panel
    report = history.append(cfg, chunk)
    assert report.added == 0 and report.after_data_end == 0  # nothing new the second time
