"""MLflow bookkeeping: what a data scientist finds in the tracking store after each step."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from hotspot.features.config import load_config
from hotspot.steps import backtest_step, forecast_step, prepare, train_step, validate_step
from hotspot.training.registry import CHAMPION, load_champion, registered_name
from hotspot.training.tracking import DEFAULT_TRACKING_URI, tracking_uri
from tests.conftest import write_config


def _runs(cfg, step):
    client = MlflowClient(tracking_uri())
    exp = client.get_experiment_by_name(cfg.area.name)
    assert exp is not None, "one experiment per study area"
    return client.search_runs([exp.experiment_id], filter_string=f"tags.step = '{step}'")


def test_tracking_uri_defaults_to_sqlite(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"


def test_runs_record_config_data_and_code(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    validate_step(cfg, tmp_path / "validate")
    model, ref = train_step(cfg, prepared)
    backtest_step(cfg, ["naive_4w", "lightgbm"], 4, None, tmp_path / "bt", prepared=prepared)

    (validate_run,) = _runs(cfg, "validate")
    assert validate_run.data.metrics["rows_read"] == prepared.incidents.n_read
    assert validate_run.data.metrics["rows_accepted"] == len(prepared.incidents.accepted)

    (train_run,) = _runs(cfg, "train")
    params = train_run.data.params
    assert params["data_fingerprint"] == prepared.incidents.fingerprint
    assert params["config_sha256"] == cfg.source_sha256
    assert params["code_version"].startswith("0.1.0")
    assert params["area.cell_size_m"] == "500.0"
    assert train_run.data.tags["step"] == "train"

    # the model is registered with a signature whose inputs are the panel's features, and is the champion
    client = MlflowClient(tracking_uri())
    mv = client.get_model_version_by_alias(registered_name(cfg), CHAMPION)
    assert mv.run_id == train_run.info.run_id
    info = mlflow.models.get_model_info(f"models:/{registered_name(cfg)}@{CHAMPION}")
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs] == list(prepared.panel.feature_names)
    loaded, loaded_ref = load_champion(cfg)
    np.testing.assert_allclose(loaded.predict(prepared.panel), model.predict(prepared.panel), rtol=1e-6)
    assert loaded_ref.version == ref.version == "1"

    (bt_run,) = _runs(cfg, "backtest")
    artifacts = {a.path for a in client.list_artifacts(bt_run.info.run_id, "backtest")}
    assert {"backtest/predictions.parquet", "backtest/metrics.json", "backtest/hit_rate_curve.png"} <= artifacts
    assert "lightgbm.pai_at_1pct" in bt_run.data.metrics
    assert "naive_4w.pai_at_1pct" in bt_run.data.metrics
    assert bt_run.data.params["backtest_models"] == "naive_4w,lightgbm"


def test_second_version_does_not_take_the_champion_alias(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    train_step(cfg, prepared)
    _, ref2 = train_step(cfg, prepared)
    assert ref2.version == "2"
    mv = MlflowClient(tracking_uri()).get_model_version_by_alias(registered_name(cfg), CHAMPION)
    assert str(mv.version) == "1"  # promotion to champion is an explicit, gated step


def test_forecast_without_a_champion_says_what_to_do(tmp_path):
    from hotspot.features.errors import HotspotError

    cfg = load_config(write_config(tmp_path / "area"))
    with pytest.raises(HotspotError, match="hotspot train"):
        forecast_step(cfg, "2021-07-19", tmp_path / "f.geojson")
