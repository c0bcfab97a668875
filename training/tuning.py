"""Hyper-parameter tuning with Optuna over rolling-origin time splits (never a random split).

The folds are `tune.folds` consecutive blocks of `tune.fold_weeks` periods ending where the backtest window starts,
so tuning never sees the weeks the tuned model is judged on. For each fold the model is fitted on the periods
before the block and forecasts every period of the block (features up to that period, no refit). A trial reports
its running mean after each fold, so the median pruner can stop hopeless trials after the first fold.

The study lives in an Optuna storage (SQLite by default) and resumes: `--trials N` means N finished trials in all.
Each trial is a nested MLflow run under the `tune` step run. Optuna's MLflowCallback is not used because it logs
only after a trial ends and cannot log per-fold metrics or pruned trials' partial scores.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.panel import Panel
from hotspot.models import LightGBMForecaster
from hotspot.training.evaluation.metrics import week_metrics

HIGHER_IS_BETTER = {"poisson_deviance": False}


def study_name(cfg: StudyConfig) -> str:
    """The Optuna study's name: the config's, else AREA-lightgbm-PRODUCT (AREA-lightgbm-TARGETS without products)."""
    if cfg.tune.study_name:
        return cfg.tune.study_name
    if cfg.has_products:
        return f"{cfg.area.name}-lightgbm-{cfg.product.name}"
    targets = cfg.model.target_offenses
    slug = "all" if not targets else "+".join(t.lower().replace(" ", "_") for t in targets)
    return f"{cfg.area.name}-lightgbm-{slug}"


def direction(metric: str) -> str:
    """"maximize" or "minimize", as the metric is better high or low."""
    return "maximize" if HIGHER_IS_BETTER.get(metric, True) else "minimize"


def fold_blocks(panel: Panel, cfg: StudyConfig, before: str | pd.Timestamp | None = None) -> list[np.ndarray]:
    """Period indices of each fold, oldest first; the last fold ends just before `before` (default: the start of
    the backtest window, the last backtest.weeks before backtest.end or the end of the data)."""
    observed = panel.period_starts[: panel.n_periods]
    if before is None:
        end = cfg.backtest.end
        stop = (panel.n_periods if end is None
                else int(observed.searchsorted(pd.Timestamp(end), side="left"))) - cfg.backtest.weeks
    else:
        stop = int(observed.searchsorted(pd.Timestamp(before), side="left"))
    tc = cfg.tune
    first = stop - tc.folds * tc.fold_weeks
    need = panel.min_history + min(tc.train_periods)
    if first < need:
        raise HotspotError(
            f"tuning needs {tc.folds} folds of {tc.fold_weeks} periods before "
            f"{observed[min(stop, len(observed) - 1)].date()} plus {need} periods of look-back and training, but "
            f"the data has only {stop} periods before it; lower tune.folds, tune.fold_weeks or tune.train_periods")
    return [np.arange(first + k * tc.fold_weeks, first + (k + 1) * tc.fold_weeks) for k in range(tc.folds)]


def base_spec(cfg: StudyConfig) -> dict:
    """The config's own model as a spec (the first trial of every study, so tuning can only improve on it)."""
    lc = cfg.model.lightgbm
    return {"params": lc.model_dump(exclude={"num_boost_round", "zero_row_fraction"}),
            "num_boost_round": lc.num_boost_round, "train_periods": cfg.model.train_periods,
            "zero_row_fraction": lc.zero_row_fraction, "seed": lc.seed}


def suggest_spec(trial, cfg: StudyConfig) -> dict:
    """Sample a model spec: LightGBM's main parameters and the objective itself."""
    tc, lc = cfg.tune, cfg.model.lightgbm
    params = dict(base_spec(cfg)["params"])
    objective = trial.suggest_categorical("objective", tc.objectives)
    params["objective"] = objective
    if objective == "tweedie":
        params["tweedie_variance_power"] = trial.suggest_float("tweedie_variance_power", 1.05, 1.95)
    if objective == "lambdarank":
        params["lambdarank_truncation_level"] = trial.suggest_int("lambdarank_truncation_level", 20, 400, log=True)
    params["learning_rate"] = trial.suggest_float("learning_rate", 0.02, 0.2, log=True)
    params["num_leaves"] = trial.suggest_int("num_leaves", 7, 127, log=True)
    params["min_data_in_leaf"] = trial.suggest_int("min_data_in_leaf", 20, 3000, log=True)
    params["feature_fraction"] = trial.suggest_float("feature_fraction", 0.3, 1.0)
    params["bagging_fraction"] = trial.suggest_float("bagging_fraction", 0.5, 1.0)
    params["bagging_freq"] = 1
    params["lambda_l2"] = trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True)
    params["seed"] = lc.seed
    rounds = trial.suggest_int("num_boost_round", 50, tc.max_boost_round, step=50)
    train_periods = trial.suggest_categorical("train_periods", tc.train_periods)
    return {"params": params, "num_boost_round": rounds, "train_periods": train_periods,
            "zero_row_fraction": lc.zero_row_fraction, "seed": lc.seed}


def score_fold(panel: Panel, spec: dict, block: np.ndarray, coverages: list[float],
               zero_row_fraction: float) -> dict[str, float]:
    """Fit on the periods before the block, forecast each period of it; mean of each weekly metric."""
    model = LightGBMForecaster.from_spec({**spec, "zero_row_fraction": min(spec["zero_row_fraction"],
                                                                          zero_row_fraction)})
    model.fit(panel.until(int(block[0])))
    rows = [week_metrics(model.predict(panel.until(int(t))), panel.target[t], coverages) for t in block]
    frame = pd.DataFrame(rows)
    return {k: float(v) for k, v in frame.mean(skipna=True).items()}


@dataclass
class TuneResult:
    study: object
    best_spec: dict
    best_value: float
    trials_run: int
    seconds: float


def tune(cfg: StudyConfig, panel: Panel, n_trials: int | None = None, before: str | None = None,
         on_trial: Callable[[object], None] | None = None,
         log_trial: Callable[[object, dict, list], None] | None = None,
         worker_tracking: dict | None = None) -> TuneResult:
    """Run (or resume) the study until it has `n_trials` finished trials; return the best spec. `log_trial` logs a
    finished trial to MLflow from this process; on the Dask engine, `worker_tracking` (a tracking server's `uri`,
    the `experiment_id` and the `parent_run_id`) has each worker log its own trials there instead."""
    import optuna

    tc = cfg.tune
    n_trials = n_trials or tc.trials
    blocks = fold_blocks(panel, cfg, before)
    coverages = sorted(set(cfg.backtest.coverages) | {0.01})
    metric = tc.metric
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="optuna")
    study = optuna.create_study(
        study_name=study_name(cfg), storage=_storage(cfg), load_if_exists=True, direction=direction(metric),
        **_search(cfg, tc.seed))
    _check_study(study, cfg, blocks, panel)
    _fail_stale_trials(study)  # a killed run's trials: failed, and queued again with the same parameters
    finished = [t for t in study.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
    remaining = max(0, n_trials - len(finished))
    _enqueue_first_trials(study, tc.objectives, remaining)

    objective = partial(_objective, cfg=cfg, panel=panel, blocks=blocks, coverages=coverages, metric=metric,
                        log_trial=log_trial)
    start = time.perf_counter()
    callbacks = [lambda study, trial: on_trial(trial)] if on_trial else []
    from hotspot.features.engine import current

    client = current()
    if remaining and client is not None:  # the Dask engine: the trials run on the workers, one shared study
        before_run = {t.number for t in study.trials}
        _optimize_on_workers(client, cfg, panel, blocks, coverages, metric, remaining, worker_tracking)
        study = optuna.load_study(study_name=study_name(cfg), storage=_storage(cfg))
        for trial in study.trials:  # logged here unless a worker logged it to the tracking server itself
            if trial.number not in before_run and trial.state.is_finished():
                if log_trial and "mlflow_run_id" not in trial.user_attrs:
                    log_trial(trial, trial.user_attrs.get("spec") or {}, _fold_scores(trial, len(blocks)))
                if on_trial:
                    on_trial(trial)
    elif remaining:
        study.optimize(objective, n_trials=remaining, timeout=tc.timeout_s, callbacks=callbacks, catch=())
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise HotspotError(f"study '{study.study_name}' has no completed trial")
    best = study.best_trial
    best_spec = best.user_attrs["spec"]
    study.set_user_attr("best_spec", best_spec)
    study.set_user_attr("best_trial", best.number)
    study.set_user_attr("metric", metric)
    return TuneResult(study, best_spec, float(best.value), remaining, time.perf_counter() - start)


def _search(cfg: StudyConfig, seed: int) -> dict:
    """The study's sampler (TPE, seeded) and pruner (median), for the study here and on each worker."""
    import optuna

    return {"sampler": optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
            "pruner": optuna.pruners.MedianPruner(n_startup_trials=cfg.tune.pruner_startup_trials, n_warmup_steps=0)}


def _objective(trial, cfg: StudyConfig, panel: Panel, blocks: list[np.ndarray], coverages: list[float], metric: str,
               log_trial: Callable[[object, dict, list], None] | None = None) -> float:
    """One trial: the spec (the config's, or sampled), scored fold by fold with pruning (module docstring)."""
    import optuna

    spec = base_spec(cfg) if trial.user_attrs.get("from") == "config" else suggest_spec(trial, cfg)
    trial.set_user_attr("spec", spec)
    fold_scores = []
    try:
        for k, block in enumerate(blocks):
            scores = score_fold(panel, spec, block, coverages, cfg.tune.zero_row_fraction)
            fold_scores.append(scores)
            running = float(np.mean([s[metric] for s in fold_scores]))
            trial.set_user_attr(f"fold{k}", {m: scores[m] for m in ("pai@1%", "poisson_deviance", metric)})
            trial.report(running, step=k)
            if trial.should_prune():
                raise optuna.TrialPruned(f"fold {k}: {metric} {running:.4f} below the median of earlier trials")
        value = float(np.mean([s[metric] for s in fold_scores]))
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"{metric} is not finite")
        return value
    finally:
        if log_trial:
            log_trial(trial, spec, fold_scores)


def _fold_scores(trial, n_folds: int) -> list[dict]:
    """The per-fold scores a trial kept in its user attributes (the metrics it records per fold)."""
    return [trial.user_attrs[f"fold{k}"] for k in range(n_folds) if f"fold{k}" in trial.user_attrs]


def _optimize_part(cfg: StudyConfig, panel: Panel, blocks: list[np.ndarray], coverages: list[float], metric: str,
                   n_trials: int, seed: int, worker_tracking: dict | None = None) -> int:
    """On a worker: `n_trials` trials of the shared study (loaded from its storage), with a sampler of its own
    seed so that two workers do not propose the same parameters. With `worker_tracking` (a tracking server's `uri`,
    the `experiment_id` and the `tune` run's `parent_run_id`) it logs each trial there as a nested run and keeps
    the run id in the trial's `mlflow_run_id`. Returns the trials it ran."""
    import socket

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="optuna")
    tc = cfg.tune
    study = optuna.load_study(
        study_name=study_name(cfg), storage=_storage(cfg), **_search(cfg, seed))
    where = f"{socket.gethostname()}:{os.getpid()}"

    log_trial = None
    if worker_tracking:
        from mlflow import MlflowClient

        from hotspot.training.tracking import log_trial_run

        mlflow_client = MlflowClient(tracking_uri=worker_tracking["uri"])

        def log_trial(trial, spec: dict, fold_scores: list) -> None:
            run_id = log_trial_run(mlflow_client, worker_tracking["experiment_id"], worker_tracking["parent_run_id"],
                                   study.study_name, trial.number, spec, fold_scores, len(blocks), worker=where)
            trial.set_user_attr("mlflow_run_id", run_id)

    def objective(trial) -> float:
        trial.set_user_attr("worker", where)
        return _objective(trial, cfg, panel, blocks, coverages, metric, log_trial)

    study.optimize(objective, n_trials=n_trials, timeout=tc.timeout_s, catch=())
    return n_trials


def _optimize_on_workers(client, cfg: StudyConfig, panel: Panel, blocks: list[np.ndarray], coverages: list[float],
                         metric: str, remaining: int, worker_tracking: dict | None = None) -> None:
    """The remaining trials shared out among the cluster's workers (exactly `remaining` in all), each worker
    running its share against the one study in the storage (an RDB: PostgreSQL on a cluster; a SQLite file only
    when every worker is on this machine)."""
    if cfg.tune.storage.startswith("sqlite:") and client.cluster is None:
        raise HotspotError(f"tune.storage {cfg.tune.storage}: trials on a remote cluster share the study through a "
                           "database every worker reaches; set tune.storage to a PostgreSQL URL")
    workers = sorted(client.scheduler_info()["workers"])
    shares = [remaining // len(workers) + (i < remaining % len(workers)) for i in range(len(workers))]
    [panel_f] = client.scatter([panel], broadcast=True, hash=False)
    futures = [client.submit(_optimize_part, cfg, panel_f, blocks, coverages, metric, n, cfg.tune.seed + 1 + i,
                             worker_tracking, workers=[w], pure=False)
               for i, (w, n) in enumerate(zip(workers, shares, strict=True)) if n]
    client.gather(futures)


def _enqueue_first_trials(study, objectives: list[str], slots: int) -> None:
    """A new study starts with the config's own model; then each searched objective gets one trial of its own
    (other parameters sampled): TPE alone, after a good first Poisson trial, rarely goes back to a ranking
    objective. Only as many are queued as this run has trials left; a later run queues the rest."""
    import optuna

    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    slots -= len(waiting)
    if not study.trials and slots > 0:
        study.enqueue_trial({}, user_attrs={"from": "config"})
        slots -= 1
    covered = ({t.params.get("objective") for t in study.trials}
               | {t.system_attrs.get("fixed_params", {}).get("objective") for t in waiting})
    for objective in objectives:
        if slots <= 0:
            break
        if objective not in covered:
            study.enqueue_trial({"objective": objective}, user_attrs={"from": f"objective {objective}"})
            slots -= 1


def _storage(cfg: StudyConfig):
    """The study's storage. RDB storages get a heartbeat, so trials of a killed process are found stale, failed and
    queued again with the same parameters when the study resumes (safe with several workers on one storage)."""
    import optuna

    from hotspot.training.optuna_compat import ResilientRDBStorage

    url = cfg.tune.storage
    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        return url
    # SQLite: wait for a competing writer instead of failing at once (pysqlite's default is 5 s)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else None
    with warnings.catch_warnings():  # heartbeats are marked experimental; the interface is pinned in constraints
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna 4.9 renamed failed_trial_callback / RetryFailedTrialCallback to these (the old names warn)
        return ResilientRDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=cfg.tune.heartbeat_s,
            grace_period=2 * cfg.tune.heartbeat_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))


def _fail_stale_trials(study) -> list[int]:
    """Fail the trials a killed process left RUNNING, and queue their parameters again.

    Optuna's own `fail_stale_trials` covers trials whose heartbeat stopped; a process killed between starting a trial
    and its first heartbeat leaves one Optuna never calls stale, failed here once it is clearly dead. Returns the ids
    of those (Optuna's check does not say which it failed)."""
    import optuna

    from hotspot.training.optuna_compat import fail_trials_without_heartbeat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return fail_trials_without_heartbeat(study)


def _check_study(study, cfg: StudyConfig, blocks: list[np.ndarray], panel: Panel) -> None:
    """Refuse to resume a study whose folds or metric differ (its scores would not be comparable)."""
    folds = [str(panel.period_starts[b[0]].date()) for b in blocks]
    signature = {"metric": cfg.tune.metric, "folds": folds, "fold_weeks": cfg.tune.fold_weeks,
                 "n_cells": panel.grid.n_cells, "targets": cfg.model.target_offenses}
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        changed = sorted(k for k in signature if stored.get(k) != signature[k])
        raise HotspotError(f"study '{study.study_name}' in {cfg.tune.storage} was run with other {changed}; "
                           f"set tune.study_name to start a new study (stored: "
                           f"{ {k: stored.get(k) for k in changed} })")


def best_spec(cfg: StudyConfig) -> tuple[dict, str] | None:
    """The best spec stored with the config's study, and the study's name, or None when there is no study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = cfg.tune.storage
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # do not create an empty database just by looking
    try:
        study = optuna.load_study(study_name=study_name(cfg), storage=_storage(cfg))
    except KeyError:
        return None
    spec = study.user_attrs.get("best_spec")
    return (spec, study.study_name) if spec else None
