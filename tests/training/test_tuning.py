"""Tuning: rolling-origin folds before the judged weeks, a stored study that resumes, the objective searched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from features.config import load_config
from features.errors import HotspotError
from features.ingest import validate
from features.panel import build_panel
from models import LightGBMForecaster
from tests.conftest import synthetic_incidents, write_config
from training.tuning import best_spec, fold_blocks, study_name, tune

TUNE = """
[tune]
trials = 3
folds = 2
fold_weeks = 4
train_periods = [20, 30]
max_boost_round = 100
pruner_startup_trials = 2
storage = "sqlite:///{storage}"
"""


def tuned_config(folder: Path, incidents: pd.DataFrame | None = None, extra: str = "") -> Path:
    return write_config(folder, incidents, extra=TUNE.format(storage=folder / "optuna.db") + extra)


def panel_of(path: Path):
    cfg = load_config(path)
    result = validate(cfg)
    return cfg, build_panel(cfg, result.accepted, result.grid)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return panel_of(tuned_config(tmp_path_factory.mktemp("tune")))


def test_folds_are_consecutive_blocks_that_end_before_the_judged_weeks(synthetic):
    cfg, panel = synthetic
    before = panel.period_starts[60]
    blocks = fold_blocks(panel, cfg, before)
    assert [len(b) for b in blocks] == [4, 4]
    assert blocks[-1][-1] == 59 and blocks[0][0] == 52
    assert np.all(np.diff(np.concatenate(blocks)) == 1)
    # default: they end where the default backtest (backtest.weeks = 6 at the end of the data) starts
    assert fold_blocks(panel, cfg)[-1][-1] == panel.n_periods - 6 - 1


def test_too_little_history_for_the_folds_is_a_clear_error(synthetic):
    cfg, panel = synthetic
    with pytest.raises(HotspotError, match="tuning needs 2 folds of 4 periods"):
        fold_blocks(panel, cfg, panel.period_starts[20])


def test_study_is_stored_starts_from_the_config_and_resumes(synthetic):
    cfg, panel = synthetic
    first = tune(cfg, panel, 3)
    assert first.trials_run == 3
    trials = first.study.trials
    assert trials[0].user_attrs["from"] == "config"  # the config's own model is always trial 0
    assert trials[0].user_attrs["spec"]["params"]["objective"] == "poisson"
    assert all(t.params["objective"] in ("poisson", "tweedie", "lambdarank") for t in trials[1:])
    # resuming to the same total runs nothing; to a larger total runs only the rest
    assert tune(cfg, panel, 3).trials_run == 0
    again = tune(cfg, panel, 5)
    assert again.trials_run == 2 and len(again.study.trials) == 5
    spec, name = best_spec(cfg)
    assert name == study_name(cfg) == "synthetic-lightgbm-all"
    assert spec == again.best_spec
    assert again.best_value == max(t.value for t in again.study.trials if t.value is not None)


def test_fold_scores_do_not_depend_on_the_judged_weeks(tmp_path):
    """Incidents in and after the judged window change nothing the study sees."""
    base = synthetic_incidents(seed=3)
    cut = pd.Timestamp("2020-01-06") + pd.Timedelta(weeks=60)
    changed = base.copy()
    later = pd.to_datetime(changed["when"]) >= cut
    rng = np.random.default_rng(1)
    changed.loc[later, "lon"] = rng.permutation(changed.loc[later, "lon"].to_numpy())
    values = []
    for name, incidents in (("a", base), ("b", changed)):
        cfg, panel = panel_of(tuned_config(tmp_path / name, incidents))
        result = tune(cfg, panel, 3, before=str(cut.date()))
        values.append([t.value for t in result.study.trials])
    assert values[0] == values[1]


def test_no_study_means_no_best_spec_and_no_database_created(tmp_path):
    cfg = load_config(tuned_config(tmp_path / "none"))
    assert best_spec(cfg) is None
    assert not (tmp_path / "none" / "optuna.db").exists()


@pytest.mark.parametrize("objective", ["lambdarank", "rank_xendcg", "tweedie"])
def test_other_objectives_rank_the_planted_hotspot_first_and_give_counts(synthetic, objective):
    cfg, panel = synthetic
    known = panel.until(70)
    model = LightGBMForecaster(params={"objective": objective, "min_data_in_leaf": 20, "num_threads": 1},
                               num_boost_round=40, train_periods=30).fit(known)
    risk = model.predict(known)
    hot = panel.target[:70].sum(axis=0).argmax()
    assert risk.argmax() == hot
    assert np.all(risk > 0)
    # calibrated to counts: the expected total is of the order of a week's incidents
    assert 0.5 < risk.sum() / panel.target[60:70].sum(axis=1).mean() < 2.0
    if objective in ("lambdarank", "rank_xendcg"):
        assert model.calibration_ is not None and model.calibration_[1] > 0


def test_an_interrupted_study_resumes_where_it_stopped(tmp_path):
    """Kill `hotspot tune` mid-study; the next run fails the killed trial, retries its parameters, and finishes
    the requested total."""
    config = tuned_config(tmp_path / "kill", extra="").read_text().replace("trials = 3", "trials = 40")
    config = config.replace("[tune]", "[tune]\nheartbeat_s = 1")
    path = tmp_path / "kill" / "area.toml"
    path.write_text(config)
    cfg = load_config(path)
    exe = Path(sys.executable).with_name("hotspot")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.Popen([str(exe), "tune", "--config", str(path), "--out", str(tmp_path / "out")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    storage = cfg.tune.storage
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=study_name(cfg), storage=storage)
            done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
            # a trial that has drawn its parameters (killed before that, it has nothing to retry)
            running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING and t.params]
        except Exception:
            continue
        if done >= 2 and running:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done >= 2, "the study never got going"
    study = optuna.load_study(study_name=study_name(cfg), storage=storage)
    killed = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(killed) == 1
    time.sleep(2.5)  # longer than the grace period (2 heartbeats)
    total = len(study.trials) + 2
    result = subprocess.run([str(exe), "tune", "--config", str(path), "--trials", str(total), "--out",
                             str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name=study_name(cfg), storage=storage)
    states = [t.state for t in study.trials]
    assert study.trials[killed[0].number].state == optuna.trial.TrialState.FAIL
    finished = sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)
    assert finished == total
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert retried and retried[0].params == killed[0].params
    assert (tmp_path / "out" / "best_spec.json").exists()
    # every trial is a nested MLflow run under a `tune` step run
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    tune_runs = mlflow.search_runs(experiment_names=["synthetic"], filter_string="tags.step = 'tune'")
    trial_runs = mlflow.search_runs(experiment_names=["synthetic"], filter_string="tags.step = 'tune_trial'")
    assert len(tune_runs) == 2
    assert len(trial_runs) >= finished
    assert set(trial_runs["tags.mlflow.parentRunId"]) <= set(tune_runs["run_id"])
    assert {"pruned", "complete"} >= set(trial_runs["tags.state"])
