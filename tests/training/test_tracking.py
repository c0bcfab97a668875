"""MLflow bookkeeping: what a data scientist finds in the tracking store after each step."""

from __future__ import annotations

import json

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

    # the run says what and when: the version it registered
    assert train_run.info.run_name == "train v1" and train_run.data.tags["model_version"] == "1"

    (bt_run,) = _runs(cfg, "backtest")
    artifacts = {a.path for a in client.list_artifacts(bt_run.info.run_id, "backtest")}
    assert {"backtest/predictions.parquet", "backtest/metrics.json", "backtest/hit_rate_curve.png"} <= artifacts
    assert bt_run.data.params["backtest_models"] == "naive_4w,lightgbm"
    weeks = bt_run.data.params["backtest_first_week"], bt_run.data.params["backtest_last_week"]
    assert bt_run.info.run_name == f"backtest {weeks[0]}..{weeks[1]}"


def test_a_backtest_is_a_parent_run_with_one_nested_run_per_model(tmp_path):
    """Models charted side by side in the MLflow UI: the same metric names in one nested run per model; only the
    parent is tagged step=backtest (the service reads reports from those runs)."""
    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    result, _ = backtest_step(cfg, ["naive_4w", "history"], 3, None, tmp_path / "bt", prepared=prepared)
    (parent,) = _runs(cfg, "backtest")
    children = _runs(cfg, "backtest_model")
    assert sorted(r.info.run_name for r in children) == ["history", "naive_4w"]
    client = MlflowClient(tracking_uri())
    for child in children:
        name = child.info.run_name
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["step"] == "backtest_model" and child.data.tags["model"] == name
        means = result.metrics["models"][name]["mean"]
        assert child.data.metrics["pai_at_1pct"] == pytest.approx(means["pai@1%"])
        assert child.data.metrics["poisson_deviance"] == pytest.approx(means["poisson_deviance"])
        history = client.get_metric_history(child.info.run_id, "weekly/pai_at_1pct")
        assert [h.step for h in sorted(history, key=lambda h: h.step)] == [0, 1, 2]
        by_week = {w["period_start"]: w["pai@1%"] for w in result.metrics["models"][name]["weekly"]}
        assert sorted(h.value for h in history) == pytest.approx(sorted(by_week.values()))
        assert not client.list_artifacts(child.info.run_id)  # the report stays with the parent
    assert set(children[0].data.metrics) == set(children[1].data.metrics)  # same names: chartable together
    assert not [k for k in parent.data.metrics if "." in k]  # no `model.metric` keys left on the parent
    # what is the same for every model (the week's incidents) is on the parent, with a description in words
    assert "weekly/incidents" in parent.data.metrics and "incidents" not in children[0].data.metrics
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("Rolling backtest of 2 models on the 3 weeks") and "best first" in note


def test_inputs_are_logged_as_datasets(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    train_step(cfg, prepared)
    (run,) = _runs(cfg, "train")
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    incidents, panel = inputs[f"{cfg.area.name} incidents"], inputs[f"{cfg.area.name} panel"]
    assert incidents.dataset.digest == prepared.incidents.fingerprint
    profile = json.loads(incidents.dataset.profile)
    assert profile["rows_accepted"] == len(prepared.incidents.accepted)
    assert profile["rows_read"] == prepared.incidents.n_read
    assert "incidents.csv" in json.loads(incidents.dataset.source)["uri"]
    shape = json.loads(panel.dataset.profile)
    assert shape["cells"] == prepared.panel.grid.n_cells and shape["features"] == len(prepared.panel.feature_names)
    schema = json.loads(panel.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == list(prepared.panel.feature_names)
    assert {t.key: t.value for t in incidents.tags}["mlflow.data.context"] == "training"


def test_the_experiment_opens_on_runs_and_says_what_it_holds(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    validate_step(cfg, tmp_path / "validate")
    exp = MlflowClient(tracking_uri()).get_experiment_by_name(cfg.area.name)
    # MLflow 3's UI opens an experiment on the GenAI traces page unless it is a model-training one
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "one nested run per model" in exp.tags["mlflow.note.content"]
    assert f"{cfg.area.name}-lightgbm" in exp.tags["mlflow.note.content"]


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
        forecast_step(cfg, "2021-07-19", tmp_path / "f.geojson", pin="champion")


PYFUNC_WITHOUT_HOTSPOT = """
import sys
sys.modules["hotspot"] = None  # the saved model must not need the project's package
import mlflow, pandas as pd
frame = pd.read_parquet(sys.argv[2])
print(mlflow.pyfunc.load_model(sys.argv[1]).predict(frame).to_json(orient="values", double_precision=15))
"""


def test_the_registered_model_returns_risk_for_any_objective(tmp_path):
    """`mlflow.pyfunc.load_model("models:/AREA-lightgbm@champion").predict(features)` gives the risks `hotspot
    forecast` publishes: for a Poisson version directly, for a LambdaRank version through its calibration (its raw
    scores are not counts); and the loaded model needs no hotspot package."""
    import subprocess
    import sys

    from hotspot.models import LightGBMForecaster
    from hotspot.steps.modelling import model_forecast
    from hotspot.training import tracking
    from hotspot.training.backtest import lightgbm_from_config
    from hotspot.training.registry import log_and_register, set_champion

    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    panel = prepared.panel
    week = str(panel.next_period_start.date())
    frame = panel.feature_frame(panel.n_periods)
    uri = f"models:/{registered_name(cfg)}@{CHAMPION}"

    poisson, ref = train_step(cfg, prepared)
    spec = lightgbm_from_config(cfg).spec()
    ranker = LightGBMForecaster.from_spec({**spec, "params": {**spec["params"], "objective": "lambdarank"}})
    with tracking.step_run(cfg, "train", prepared.incidents.fingerprint):
        ranker.fit(panel)
        rank_ref = log_and_register(cfg, ranker, panel)
    assert (ref.version, rank_ref.version) == ("1", "2")
    raw = ranker.booster_.predict(frame[list(ranker.feature_names_)].to_numpy())

    for version, model in ((ref.version, poisson), (rank_ref.version, ranker)):
        if version != "1":
            set_champion(cfg, version, "test: the LambdaRank version serves")
        cells, _, served = model_forecast(cfg, week, prepared, "champion")
        assert served.ref.version == version
        expected = cells.sort_values("cell_id")["risk"].to_numpy()
        risk = mlflow.pyfunc.load_model(uri).predict(frame)
        assert risk.name == "risk" and len(risk) == panel.grid.n_cells
        np.testing.assert_allclose(risk.to_numpy(), expected, atol=2e-6)
        np.testing.assert_allclose(risk.to_numpy(), model.predict(panel), rtol=1e-6)
    # the ranker's raw scores are not expected counts; what the registry returns is (the sum is of the right size)
    assert not np.allclose(risk.to_numpy(), raw)
    assert risk.sum() == pytest.approx(poisson.predict(panel).sum(), rel=0.5)

    frame.to_parquet(tmp_path / "frame.parquet")
    proc = subprocess.run([sys.executable, "-c", PYFUNC_WITHOUT_HOTSPOT, uri, str(tmp_path / "frame.parquet")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(json.loads(proc.stdout.strip().splitlines()[-1]), risk.to_numpy(), rtol=1e-7)

    mv = MlflowClient(tracking_uri()).get_model_version(registered_name(cfg), "2")
    assert mv.description.startswith("LightGBM, lambdarank objective") and "log E[count]" in mv.description
