"""The `hotspot` command line end to end on the bundled sample, as a user runs it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import SAMPLE_CONFIG, run_cli, write_config

COMMANDS = ["validate", "features", "train", "tune", "promote", "rollback", "backtest", "audit", "forecast", "briefing",
            "publish", "serve", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout
    assert "Usage" in proc.stdout


@pytest.mark.parametrize("command", ["create", "revoke", "list"])
def test_keys_commands_have_help(command):
    proc = run_cli("keys", command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "--database-url" in proc.stdout


def test_cli_flow_on_the_sample(tmp_path):
    cfg = str(SAMPLE_CONFIG)

    proc = run_cli("validate", "--config", cfg, "--out", str(tmp_path / "val"))
    assert proc.returncode == 0, proc.stderr
    assert "accepted" in proc.stdout and "before_earliest_date" in proc.stdout
    quarantine = pd.read_csv(tmp_path / "val" / "quarantine.csv")
    summary = json.loads((tmp_path / "val" / "validation.json").read_text())
    assert len(quarantine) == summary["quarantined"] == 221
    assert summary["accepted"] + summary["quarantined"] == summary["read"]
    assert set(quarantine["reason"]) == {"before_earliest_date"}

    proc = run_cli("features", "--config", cfg, "--out", str(tmp_path / "feat"))
    assert proc.returncode == 0, proc.stderr
    panel = pd.read_parquet(tmp_path / "feat" / "panel.parquet")
    schema = json.loads((tmp_path / "feat" / "panel_schema.json").read_text())
    assert [c["name"] for c in schema["columns"]] == list(panel.columns)
    assert all(c["description"] for c in schema["columns"])
    assert len(panel) == (schema["n_periods"] + 1) * schema["n_cells"]

    proc = run_cli("train", "--config", cfg)
    assert proc.returncode == 0, proc.stderr
    assert "toronto-sample-all v1" in proc.stdout

    proc = run_cli("backtest", "--config", cfg, "--weeks", "4", "--model", "naive_52w,lightgbm",
                   "--out", str(tmp_path / "bt"))
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_parquet(tmp_path / "bt" / "predictions.parquet")
    assert list(pred.columns) == ["period_start", "cell_id", "x", "y", "lon", "lat", "risk", "observed", "model"]
    # the sample's backtest.end (2019-06-24) leaves the clairvoyant limit its 26 weeks after the backtest weeks
    assert sorted(pd.to_datetime(pred["period_start"]).dt.date.astype(str).unique()) == [
        "2019-05-27", "2019-06-03", "2019-06-10", "2019-06-17"]
    assert "PAI@1%" in proc.stdout and "naive_52w" in proc.stdout and "accuracy.html" in proc.stdout
    assert "On these 4 weeks (PAI@1%), lightgbm" in proc.stdout and "clairvoyant limit" in proc.stdout
    limit = pd.read_parquet(tmp_path / "bt" / "limit.parquet")
    assert list(limit.columns) == list(pred.columns) and set(limit["model"]) == {"clairvoyant limit"}
    assert "clairvoyant limit" not in set(pred["model"])  # a reference, never one of the models
    assert (tmp_path / "bt" / "accuracy.html").exists() and (tmp_path / "bt" / "report_calibration.png").exists()

    out_file = tmp_path / "forecast.geojson"
    proc = run_cli("forecast", "--config", cfg, "--week", "2019-12-30", "--out", str(out_file), "--version", "1")
    assert proc.returncode == 0, proc.stderr
    fc = json.loads(out_file.read_text())
    assert fc["type"] == "FeatureCollection" and "crs" not in fc  # RFC 7946: WGS84 implied, no crs member
    assert len(fc["features"]) == schema["n_cells"]
    ranks = [f["properties"]["rank"] for f in fc["features"]]
    assert sorted(ranks) == list(range(1, len(ranks) + 1))
    first = fc["features"][0]
    assert first["geometry"]["type"] == "Polygon"
    ring = first["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    lon, lat = ring[0]
    assert -79.5 < lon < -79.3 and 43.6 < lat < 43.75  # lon, lat order
    props = first["properties"]
    assert props["rank"] == 1 and props["risk"] == max(f["properties"]["risk"] for f in fc["features"])
    assert 99 <= props["percentile"] <= 100
    meta = fc["metadata"]
    assert meta["model_version"] == "1" and meta["period_start"] == "2019-12-30" and meta["data_fingerprint"]
    assert props["reasons"] and "incidents" in " ".join(props["reasons"])
    assert "Why (what raises each cell's risk most" in proc.stdout


def test_demo_runs_end_to_end(tmp_path):
    proc = run_cli("demo", "--out", str(tmp_path / "demo"), "--weeks", "4", "--trials", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("lightgbm", "lightgbm_tuned", "naive_52w", "history", "ewm_hl26", "naive_4w"):
        assert name in proc.stdout
    assert "4. tune, demo budget: 4 trials, 2 rolling folds of 4 weeks" in proc.stdout
    assert "6. promotion gate, the tuned candidate" in proc.stdout
    promoted = "promoted: pai@1%" in proc.stdout
    assert promoted or "refused: pai@1%" in proc.stdout
    # the candidate is trained on every week (a second registered version) only when the gate takes it
    from mlflow import MlflowClient

    versions = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_model_versions(
        "name = 'toronto-sample-all'")
    assert len(versions) == (2 if promoted else 1)
    assert ("trained on every week as toronto-sample-all v2" in proc.stdout) == promoted
    # MLflow's own INFO lines stay off the console without --verbose
    assert "INFO mlflow" not in proc.stderr + proc.stdout and "Successfully registered" not in proc.stderr
    fc = json.loads((tmp_path / "demo" / "forecast.geojson").read_text())
    assert fc["metadata"]["model_version"] == ("2" if promoted else "1")
    top = fc["features"][0]["properties"]
    assert 1 <= len(top["reasons"]) <= 3 and all(isinstance(r, str) and r for r in top["reasons"])
    assert [d["feature"] for d in top["reason_details"]]
    assert (tmp_path / "demo" / "backtest" / "metrics.json").exists()
    assert (tmp_path / "demo" / "tune" / "best_spec.json").exists()
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "optuna.db").exists()
    # every user is told where to look, and what is named there exists
    assert (tmp_path / "demo" / "briefing.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "demo" / "audit" / "audit.html").exists()
    assert "8. audit: No demographic areas are configured" in proc.stdout
    where = proc.stdout[proc.stdout.index("Where to look"):]
    for text in (str((tmp_path / "demo" / "briefing.pdf").resolve()), f"hotspot serve -c {SAMPLE_CONFIG}",
                 "http://127.0.0.1:8000/map", str((tmp_path / "demo" / "audit" / "audit.html").resolve()),
                 "http://127.0.0.1:8000/reports"):
        assert text in where.replace("\n", ""), text
    # the map has two weeks to show (the last recorded one and the next), and the printed key reads them
    from hotspot.serving.auth import KeyVerifier
    from hotspot.serving.db import PublicationStore, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'hotspot.db'}")
    weeks = [p.week for p in PublicationStore(engine).list("toronto-sample", "all")]
    assert weeks == ["2019-12-30", "2019-12-23"]
    key = where.split("shown once")[1].split(":  ")[1].split()[0]
    assert KeyVerifier(engine).verify(key).role == "auditor"
    # the champion can be rolled back to v1 only if v2 was promoted
    back = run_cli("rollback", "--config", str(SAMPLE_CONFIG), "--why", "test", cwd=tmp_path)
    if promoted:
        assert back.returncode == 0 and "from v2 to v1" in back.stdout
    else:
        assert back.returncode == 2 and "first champion" in back.stderr


def test_bad_config_exits_non_zero_with_the_key(tmp_path):
    path = write_config(tmp_path / "bad", area="cel_size_m = 100")
    proc = run_cli("validate", "--config", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:")
    assert "area.cel_size_m" in proc.stderr and "Traceback" not in proc.stderr


def test_forecast_for_a_week_outside_the_data_is_refused(tmp_path):
    proc = run_cli("forecast", "--config", str(SAMPLE_CONFIG), "--week", "2025-01-06", "--out", str(tmp_path / "f"))
    assert proc.returncode == 2
    assert "not a period start" in proc.stderr and "2019-12-30" in proc.stderr


def test_missing_config_file(tmp_path):
    proc = run_cli("train", "--config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr


def test_publish_puts_a_week_on_the_map_once_unless_a_new_version_is_asked_for(tmp_path):
    config = write_config(tmp_path / "area")
    assert run_cli("train", "--config", str(config), cwd=tmp_path).returncode == 0
    db = f"sqlite:///{tmp_path / 'pub.db'}"
    first = run_cli("publish", "--config", str(config), "--database-url", db, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "published the week of" in first.stdout and "(version 1, auto: " in first.stdout
    assert "auto chose " in first.stdout  # the choice and its validation scores, in words
    again = run_cli("publish", "--config", str(config), "--database-url", db, cwd=tmp_path)
    assert again.returncode == 2 and "already published" in again.stderr and "--new-version" in again.stderr
    newer = run_cli("publish", "--config", str(config), "--database-url", db, "--new-version", "--version", "1",
                    cwd=tmp_path)
    assert newer.returncode == 0 and "(version 2, model v1)" in newer.stdout
    bad = run_cli("publish", "--config", str(config), "--database-url", db, "--week", "1999-01-04", cwd=tmp_path)
    assert bad.returncode == 2 and "1999-01-04" in bad.stderr and "Traceback" not in bad.stderr


def test_library_chatter_only_with_verbose(tmp_path):
    """MLflow's migration, registration and validation lines stay off the console unless --verbose asks for them."""
    config = write_config(tmp_path / "area")
    quiet = run_cli("train", "--config", str(config), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    for chatter in ("Successfully registered model", "Created version", "INFO mlflow"):
        assert chatter not in quiet.stderr + quiet.stdout
    assert "trained synthetic-lightgbm v1" in quiet.stdout
    loud = run_cli("--verbose", "train", "--config", str(config), cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    assert "Created version '2' of model 'synthetic-lightgbm'" in loud.stderr + loud.stdout
