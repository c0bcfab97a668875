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

from hotspot.features.config import load_config
from hotspot.features.errors import HotspotError
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.models import LightGBMForecaster
from hotspot.training.optuna_compat import trials_with_heartbeat as _trials_with_heartbeat
from hotspot.training.tuning import _fail_stale_trials, _storage, best_spec, fold_blocks, study_name, tune
from tests.conftest import synthetic_incidents, write_config

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
    # with backtest.end, they end where that backtest starts: the 6 weeks before period 70
    ended = cfg.model_copy(update={"backtest": cfg.backtest.model_copy(
        update={"end": panel.period_starts[70].date()})})
    assert fold_blocks(panel, ended)[-1][-1] == 70 - 6 - 1


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
    # every searched objective gets a trial of its own right after the config's
    assert [t.params["objective"] for t in trials[1:3]] == ["poisson", "tweedie"]
    # resuming to the same total runs nothing; to a larger total runs only the rest
    assert tune(cfg, panel, 3).trials_run == 0
    again = tune(cfg, panel, 5)
    assert again.trials_run == 2 and len(again.study.trials) == 5
    assert again.study.trials[3].params["objective"] == "lambdarank"
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
    storage = cfg.tune.storage

    def kill_mid_trial() -> list:
        """Start `hotspot tune`, SIGKILL it while a trial that has drawn its parameters and beaten its heartbeat
        runs; return the trials the kill left RUNNING among those seen beating."""
        proc = subprocess.Popen([str(exe), "tune", "--config", str(path), "--out", str(tmp_path / "out")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline, done, beating = time.time() + 240, 0, set()
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                study = optuna.load_study(study_name=study_name(cfg), storage=storage)
                complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
                done = len(complete)
                # a trial that has drawn all its parameters (a kill while it is still drawing them leaves a part)
                n_params = max((len(t.params) for t in complete), default=1)
                running = {t._trial_id for t in study.trials
                           if t.state == optuna.trial.TrialState.RUNNING and len(t.params) >= n_params}
                beating = running & set(_trials_with_heartbeat(study._storage, study._study_id))
            except Exception:
                continue
            if done >= 2 and beating:  # a trial killed before its first beat: the test below
                break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert done >= 2, "the study never got going"
        study = optuna.load_study(study_name=study_name(cfg), storage=storage)
        return [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING and t._trial_id in beating]

    # the kill can land between two trials (the one seen just finished); then there is nothing to resume: again
    for attempt in range(1, 5):  # noqa: B007 (reported after the loop)
        killed = kill_mid_trial()
        if killed:
            break
    assert len(killed) == 1
    study = optuna.load_study(study_name=study_name(cfg), storage=storage)
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
    assert len(tune_runs) == attempt + 1
    assert len(trial_runs) >= finished
    assert set(trial_runs["tags.mlflow.parentRunId"]) <= set(tune_runs["run_id"])
    assert {"pruned", "complete"} >= set(trial_runs["tags.state"])


def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    """Optuna never calls a trial without a heartbeat stale; ours fails it once it is clearly dead."""
    import sqlite3

    cfg = load_config(tuned_config(tmp_path))
    study = optuna.create_study(study_name="orphans", storage=_storage(cfg))
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # never beats: no heartbeat thread
    fresh = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert _fail_stale_trials(study) == []  # both too young to call dead
    db = sqlite3.connect(tmp_path / "optuna.db")
    db.execute("UPDATE trials SET datetime_start = datetime('now', 'localtime', '-10 minutes') WHERE trial_id = ?",
               (orphan._trial_id,))
    db.commit()
    db.close()
    assert _fail_stale_trials(study) == [orphan._trial_id]
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert states[fresh.number] == optuna.trial.TrialState.RUNNING
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.WAITING
    assert retry[0].params == orphan.params


def test_a_heartbeat_survives_a_busy_database(tmp_path, monkeypatch):
    """A beat that meets "database is locked" is retried; the heartbeat thread does not die."""
    cfg = load_config(tuned_config(tmp_path))
    storage = _storage(cfg)
    study = optuna.create_study(study_name="busy", storage=storage)
    trial = study.ask()
    real = optuna.storages.RDBStorage.record_heartbeat
    failures = {"left": 3}

    def flaky(self, trial_id):
        if failures["left"]:
            failures["left"] -= 1
            raise optuna.exceptions.StorageInternalError("database is locked")
        return real(self, trial_id)

    monkeypatch.setattr(optuna.storages.RDBStorage, "record_heartbeat", flaky)
    storage.record_heartbeat(trial._trial_id)
    assert failures["left"] == 0
    assert _trials_with_heartbeat(storage, study._study_id) == [trial._trial_id]
