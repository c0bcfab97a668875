"""Any forecaster in the registry, the gate with any champion, and `auto` forecasting by default (issue 16)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from hotspot.features.config import load_config
from hotspot.features.errors import HotspotError
from hotspot.models import EWMCounts
from hotspot.steps import forecast_step, prepare, promote_step, publish_step, rollback_step, train_step
from hotspot.training.registry import (
    champion_history,
    champion_version,
    load_version,
    registered_name,
    version_forecaster,
)
from tests.conftest import synthetic_incidents, write_config

WEAK = "[model.lightgbm]\nnum_boost_round = 1\nlearning_rate = 0.001\nmin_data_in_leaf = 20\n"
WEEK = "2021-06-28"  # a week of the synthetic panel with weeks after it


@pytest.fixture
def weak_cfg(tmp_path):
    path = write_config(tmp_path / "area")
    text = path.read_text().replace("[model.lightgbm]\nnum_boost_round = 30\nmin_data_in_leaf = 20\n", WEAK)
    path.write_text(text + '\n[promotion]\nmetric = "poisson_deviance"\n')
    return load_config(path)


def test_a_baseline_is_registered_tagged_described_and_loads_through_pyfunc(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    panel = prepared.panel
    model, ref = train_step(cfg, prepared, model_name="ewm_hl8")
    assert isinstance(model, EWMCounts) and ref.version == "1" and champion_version(cfg) == "1"
    mv = MlflowClient().get_model_version(registered_name(cfg), "1")
    assert mv.tags["model"] == "ewm_hl8" and mv.tags["model_family"] == "baseline"
    assert mv.tags["data_fingerprint"] == prepared.incidents.fingerprint
    assert mv.description.startswith("Baseline `ewm_hl8`: Exponentially weighted mean count")
    # from the registry alone: the panel's next period, and the stored forecast by cell id
    loaded = mlflow.pyfunc.load_model(f"models:/{registered_name(cfg)}@champion")
    np.testing.assert_allclose(loaded.predict(panel).to_numpy(), model.predict(panel))
    cells = panel.grid.cell_id[[5, 0, 7]]
    stored = loaded.predict(pd.DataFrame({"cell_id": cells}))
    np.testing.assert_allclose(stored.to_numpy(), model.predict(panel)[[5, 0, 7]])
    with pytest.raises(Exception, match="cell_id"):
        loaded.predict(pd.DataFrame({"x": [1]}))
    fitted, _ = load_version(cfg, "1")
    np.testing.assert_allclose(fitted.predict(panel.until(40)), model.predict(panel.until(40)))
    unfitted, _ = version_forecaster(cfg, "1")
    assert unfitted.name == "ewm_hl8_v1" and unfitted.halflife == 8


def test_auto_is_registered_with_its_choice(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    model, ref = train_step(cfg, prepared, model_name="auto")
    tags = MlflowClient().get_model_version(registered_name(cfg), ref.version).tags
    assert tags["model"] == "auto" and tags["model_family"] == "auto" and tags["auto_chose"] == model.chosen_
    fitted, _ = load_version(cfg, ref.version)
    assert fitted.chosen_ == model.chosen_ and not hasattr(fitted, "score_cache_")
    np.testing.assert_allclose(fitted.predict(prepared.panel), model.predict(prepared.panel), rtol=1e-6)


def test_the_gate_promotes_a_baseline_over_lightgbm_and_rollback_returns(weak_cfg):
    cfg = weak_cfg
    prepared = prepare(cfg, quiet=True)
    train_step(cfg, prepared, params="config")  # v1: LightGBM that learned next to nothing, champion
    train_step(cfg, prepared, model_name="ewm_hl8")  # v2: a baseline
    decision = promote_step(cfg, "2", weeks=6, prepared=prepared)
    assert decision.promoted and decision.champion == "1" and len(decision.weeks) == 6
    assert decision.candidate_score < decision.champion_score  # deviance
    assert champion_version(cfg) == "2"
    client = MlflowClient()
    tags = client.get_model_version(registered_name(cfg), "2").tags
    assert tags["promotion_decision"] == "promoted" and "champion was v1" in tags["promotion_reason"]
    assert json.loads(tags["promotion_detail"])["weeks"] == decision.weeks
    runs = client.search_runs([client.get_experiment_by_name(cfg.area.name).experiment_id],
                              filter_string="tags.step = 'promote'")
    assert [r.info.run_name for r in runs] == ["promote v2"]
    assert rollback_step(cfg, why="drill") == ("2", "1")
    assert [h["version"] for h in champion_history(cfg)] == ["1", "2", "1"]
    assert rollback_step(cfg, to="2") == ("1", "2")  # a baseline version can be rolled back to
    with pytest.raises(HotspotError, match="already the champion"):
        promote_step(cfg, "2", weeks=6, prepared=prepared)


def test_a_lightgbm_candidate_that_loses_to_a_baseline_champion_is_refused(weak_cfg):
    cfg = weak_cfg
    prepared = prepare(cfg, quiet=True)
    train_step(cfg, prepared, model_name="ewm_hl8")  # v1, champion: a baseline
    train_step(cfg, prepared, params="config")  # v2: the weak LightGBM
    decision = promote_step(cfg, "2", weeks=6, prepared=prepared)
    assert not decision.promoted and champion_version(cfg) == "1"
    assert "so v1 stays the champion" in MlflowClient().get_model_version(registered_name(cfg), "2").description


def _with_late_records(tmp_path, week: str):
    """The same area with 200 extra incidents on and after `week`, inside the area (so the grid is the same)."""
    base = synthetic_incidents()
    rng = np.random.default_rng(5)
    when = pd.Timestamp(week) + pd.to_timedelta(rng.uniform(0, 20 * 86400, 200), unit="s")
    late = pd.DataFrame({"when": when.strftime("%Y-%m-%d %H:%M:%S"), "lon": -79.37 + rng.normal(0, 0.002, 200),
                         "lat": 43.6725 + rng.normal(0, 0.002, 200), "offence": "Assault",
                         "case_ref": np.arange(10_000, 10_200)})
    return load_config(write_config(tmp_path / "late", pd.concat([base, late], ignore_index=True)))


def test_forecast_uses_auto_by_default_names_the_choice_and_sees_only_earlier_weeks(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    late = _with_late_records(tmp_path, WEEK)
    prepared, late_prepared = prepare(cfg, quiet=True), prepare(late, quiet=True)
    assert prepared.incidents.fingerprint != late_prepared.incidents.fingerprint
    assert prepared.panel.grid.n_cells == late_prepared.panel.grid.n_cells
    cells, meta = forecast_step(cfg, WEEK, tmp_path / "f.geojson", prepared)  # no model registered: auto needs none
    late_cells, late_meta = forecast_step(late, WEEK, tmp_path / "late.geojson", late_prepared)
    sel = meta["selection"]
    assert meta["model"] == "auto" and meta["model_version"] == sel["chosen"] and meta["model_run_id"] is None
    assert sel["validation_weeks"][-1] < WEEK and sel["fitted_through"] < WEEK and sel["forecast_week"] == WEEK
    assert set(sel["scores"]) == set(sel["candidates"]) and sel["chosen"] in sel["candidates"]
    assert sel["sentence"].startswith(f"auto chose {sel['chosen']} for the week of {WEEK}")
    # records on or after the forecast week change neither the choice nor the forecast
    assert late_meta["selection"]["scores"] == sel["scores"] and late_meta["model_version"] == sel["chosen"]
    np.testing.assert_allclose(late_cells.sort_values("cell_id")["risk"], cells.sort_values("cell_id")["risk"])
    written = json.loads((tmp_path / "f.geojson").read_text())["metadata"]
    assert written["selection"]["chosen"] == sel["chosen"]
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.area.name).experiment_id],
                                filter_string="tags.step = 'forecast'", max_results=1)
    assert run.info.run_name.startswith(f"forecast {WEEK} auto:{sel['chosen']}")
    logged = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/forecast/selection.json")
    assert logged["scores"] == sel["scores"]


def test_a_pinned_version_forecasts_and_publish_names_the_choice(tmp_path):
    cfg = load_config(write_config(tmp_path / "area"))
    prepared = prepare(cfg, quiet=True)
    train_step(cfg, prepared, params="config")  # v1 LightGBM, champion
    baseline, _ = train_step(cfg, prepared, model_name="naive_4w")  # v2
    cells, meta = forecast_step(cfg, WEEK, tmp_path / "v2.geojson", prepared, pin="2")
    assert (meta["model"], meta["model_version"], meta["selection"]) == (registered_name(cfg), "2", None)
    t = prepared.panel.period_index(WEEK)
    np.testing.assert_allclose(cells.sort_values("cell_id")["risk"],
                               np.round(baseline.predict(prepared.panel.until(t)), 6))
    # a count baseline's reasons are the count it reads (the 4-week count): the cell's own history, nothing invented
    top = cells.sort_values("rank").iloc[0]
    assert {d["kind"] for d in top["reason_details"]} == {"history"}
    _, meta = forecast_step(cfg, WEEK, tmp_path / "v1.geojson", prepared, pin="champion")
    assert meta["model_version"] == "1"
    db = f"sqlite:///{tmp_path / 'pub.db'}"
    (auto_pub,) = publish_step(cfg, [WEEK], db, prepared)
    assert auto_pub.selection.startswith("auto chose") and auto_pub.model_version in auto_pub.selection
    (pinned,) = publish_step(cfg, [WEEK], db, prepared, new_version=True, pin="2")
    assert pinned.model_version == "2" and pinned.selection is None and pinned.version == 2


def test_the_service_forecaster_keeps_auto_s_choice_per_week_and_data(tmp_path):
    from hotspot.serving.publishing import Forecaster

    cfg = load_config(write_config(tmp_path / "area"))
    forecaster = Forecaster(cfg)
    forecaster.prepared = prepare(cfg, quiet=True)
    first = forecaster.forecast(WEEK)
    t = forecaster.prepared.panel.period_index(WEEK)
    chosen = forecaster.model_for(t)
    again = forecaster.forecast(WEEK)
    assert forecaster.model_for(t) is chosen  # fitted once for the week and data
    assert again.metadata["selection"] == first.metadata["selection"] and first.metadata["model"] == "auto"
    assert [c.risk for c in again.cells] == [c.risk for c in first.cells]
    with pytest.raises(HotspotError, match="--model"):
        Forecaster(cfg, pin="best")
