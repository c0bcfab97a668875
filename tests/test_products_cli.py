"""Forecast products on the command line: each product its own registered model, champion and outputs."""

from __future__ import annotations

import json

import mlflow
import pytest

from tests.conftest import SAMPLE_CONFIG, run_cli

PRODUCT_COMMANDS = ["features", "train", "tune", "promote", "rollback", "backtest", "audit", "forecast", "briefing",
                    "publish", "demo", "trends", "export", "evaluate-intervention"]


@pytest.mark.parametrize("command", PRODUCT_COMMANDS)
def test_commands_that_forecast_take_a_product(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--product" in proc.stdout


def test_unknown_product_is_refused_with_the_products_there_are(tmp_path):
    proc = run_cli("forecast", "--config", str(SAMPLE_CONFIG), "--product", "burglary", "--week", "2019-12-30",
                   "--out", str(tmp_path / "f.geojson"))
    assert proc.returncode == 2
    assert "no product named 'burglary'; expected one of all, assault, break-and-enter" in proc.stderr
    assert not (tmp_path / "f.geojson").exists()


def test_target_offences_with_products_points_to_product(tmp_path):
    proc = run_cli("backtest", "--config", str(SAMPLE_CONFIG), "--target", "Robbery", "--weeks", "2",
                   "--model", "naive_4w", cwd=tmp_path)
    assert proc.returncode == 2
    assert "choose one with --product (all, assault, break-and-enter)" in proc.stderr


def test_each_product_has_its_own_model_champion_and_outputs(tmp_path):
    cfg = str(SAMPLE_CONFIG)
    for product in ("assault", "break-and-enter"):
        proc = run_cli("train", "--config", cfg, "--product", product, "--params", "config", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert f"toronto-sample-{product} v1" in proc.stdout
    client = mlflow.MlflowClient()
    for product, offence in (("assault", "Assault"), ("break-and-enter", "Break and Enter")):
        version = client.get_model_version_by_alias(f"toronto-sample-{product}", "champion")
        assert str(version.version) == "1"
        run = client.get_run(version.run_id)
        assert run.data.tags["product"] == product
        spec = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/model_spec.json")
        assert spec["target_offenses"] == [offence]

    proc = run_cli("backtest", "--config", cfg, "--product", "break-and-enter", "--weeks", "2", "--model",
                   "naive_4w,ewm_hl26", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "outputs" / "toronto-sample" / "break-and-enter" / "backtest"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["product"] == "break-and-enter" and metrics["target_offenses"] == ["Break and Enter"]
    assert "Accuracy report: toronto-sample, Break and enter" in (folder / "accuracy.html").read_text()
    assert not (tmp_path / "outputs" / "toronto-sample" / "assault" / "backtest").exists()
