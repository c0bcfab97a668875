"""Model steps: train, tune, promote, roll back, backtest and forecast with the champion."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hotspot.features import safe_csv
from hotspot.features.config import StudyConfig
from hotspot.features.locking import locked, savefig_atomically, write_text_atomically
from hotspot.steps.common import (
    Prepared,
    console,
    default_out,
    log_feature_table,
    prepare,
    study_subject,
)
from hotspot.training import tracking
from hotspot.training.backtest import (
    BacktestResult,
    forecast_periods,
    make_models,
    run_backtest,
    write_backtest,
)
from hotspot.training.run_inputs import log_inputs


def model_from_params(cfg: StudyConfig, params: str = "auto"):
    """The LightGBM forecaster `hotspot train` fits and where its parameters came from (training.backtest's
    lightgbm_for_training: the tuned study's best spec when one exists, else the config's)."""
    from hotspot.training.backtest import lightgbm_for_training

    return lightgbm_for_training(cfg, params)


def train_step(cfg: StudyConfig, prepared: Prepared | None = None, params: str = "auto", model_name: str = "lightgbm"):
    """Fit a forecaster on all observed periods and register it as a version of the product's model: LightGBM by
    default (tuned parameters when a study exists; logged with its signature, spec and feature list), or any model
    `hotspot backtest --model` takes (a baseline, or `auto`, whose LightGBM candidate takes the tuned spec too)."""
    from hotspot.models import LightGBMForecaster
    from hotspot.training.backtest import training_model
    from hotspot.training.registry import log_and_register

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    model, source = training_model(cfg, model_name, params)
    is_gbm = isinstance(model, LightGBMForecaster)
    # named `train vN` once registration gives the version (log_and_register)
    with tracking.step_run(cfg, "train", prepared.incidents.fingerprint, run_name="train (registering)"):
        import mlflow

        log_inputs(cfg, prepared.incidents, panel, context="training")
        what = (f"LightGBM ({model.objective}, parameters from {source})" if is_gbm else f"{model.name}"
                + (" (backtesting every candidate on the validation weeks)" if model_name == "auto" else ""))
        with console.status(f"fitting {what}", spinner="dots"):
            start = time.perf_counter()
            model.fit(panel)
            fit_s = time.perf_counter() - start
        mlflow.set_tags({"model": model.name})
        if is_gbm:
            first, last = model.train_periods_
            start_t, end_t = model.training_window(panel)
            mlflow.log_params({"train_first_period": str(first.date()), "train_last_period": str(last.date()),
                               "params_source": source, **{f"model_spec.{k}": v for k, v in tracking.flatten(
                                   "", {"params": model.params or {}, "num_boost_round": model.num_boost_round,
                                        "train_periods": model.train_periods}).items()}})
            mlflow.log_metrics({"fit_s": fit_s, "train_rows": (end_t - start_t) * panel.grid.n_cells})
        else:
            mlflow.log_params({"model": model.name, "train_first_period": str(panel.period_starts[0].date()),
                               "train_last_period": str(panel.period_starts[-1].date()), "params_source": source})
            mlflow.log_metrics({"fit_s": fit_s})
            summary = getattr(model, "fit_summary_", None)
            if summary is not None:  # what auto chose, and why: the validation scores
                mlflow.log_dict(summary, "selection/selection.json")
                mlflow.set_tag("auto_chose", summary["chosen"])
        log_feature_table(panel)
        ref = log_and_register(cfg, model, panel, params_source=source)
    return model, ref


def tune_step(cfg: StudyConfig, trials: int | None = None, before: str | None = None,
              prepared: Prepared | None = None, out_dir: Path | None = None):
    """Run or resume the Optuna study; each trial a nested MLflow run; the best spec saved with the study."""
    import mlflow

    from hotspot.training.tuning import fold_blocks, study_name, tune

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    blocks = fold_blocks(panel, cfg, before)
    trials = trials or cfg.tune.trials
    out_dir = out_dir or default_out(cfg, "tune")
    with tracking.step_run(cfg, "tune", prepared.incidents.fingerprint, run_name=f"tune {study_name(cfg)}"):
        mlflow.log_params({"study_name": study_name(cfg), "trials_target": trials,
                           "folds": ",".join(f"{panel.period_starts[b[0]].date()}+{len(b)}" for b in blocks)})
        log_inputs(cfg, prepared.incidents, panel, context="tuning")

        parent = mlflow.active_run().info
        client = mlflow.MlflowClient()

        def log_trial(trial, spec: dict, fold_scores: list) -> None:
            tracking.log_trial_run(client, parent.experiment_id, parent.run_id, study_name(cfg), trial.number, spec,
                                   fold_scores, len(blocks))

        # on a Dask cluster with a tracking server, each worker logs its own trials there (never to a SQLite file,
        # which the command's process writes alone)
        uri = mlflow.get_tracking_uri()
        on_workers = ({"uri": uri, "experiment_id": parent.experiment_id, "parent_run_id": parent.run_id}
                      if tracking.is_server(uri) else None)

        with Progress(TextColumn("[bold]tune[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task(study_name(cfg), total=trials)

            def on_trial(trial) -> None:
                progress.advance(task)

            result = tune(cfg, panel, trials, before, on_trial=on_trial, log_trial=log_trial,
                          worker_tracking=on_workers)
        table = result.study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"trials": out_dir / "trials.csv", "best": out_dir / "best_spec.json"}
        with locked(paths["best"], what="writing the tuning results"):  # trials, best spec and plot from one run
            safe_csv.write_csv(table, paths["trials"])
            write_text_atomically(paths["best"], json.dumps({"study": study_name(cfg), "metric": cfg.tune.metric,
                                                             "best_value": result.best_value,
                                                             "spec": result.best_spec}, indent=2))
            paths["plot"] = plot_study(result.study, cfg.tune.metric, out_dir / "tuning_history.png")
        mlflow.log_metrics({"best_value": result.best_value, "tune_s": result.seconds,
                            "trials_run": result.trials_run, "trials_total": len(table),
                            "trials_pruned": int((table["state"] == "PRUNED").sum())})
        for path in paths.values():
            mlflow.log_artifact(str(path), "tune")
    return result, paths


def plot_study(study, metric: str, path: Path) -> Path:
    """Each finished trial's score and the best so far, pruned trials marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = study.trials_dataframe(attrs=("number", "value", "state"))
    done = frame[frame["state"] == "COMPLETE"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(done["number"], done["value"], "o", label="completed trial")
    best = done["value"].cummax() if study.direction.name == "MAXIMIZE" else done["value"].cummin()
    ax.step(done["number"], best, where="post", label="best so far")
    pruned = frame[frame["state"] == "PRUNED"]
    if len(pruned):
        ax.plot(pruned["number"], [done["value"].min()] * len(pruned), "x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric}, mean over the fold weeks")
    ax.legend(loc="best")
    fig.tight_layout()
    savefig_atomically(fig, path, dpi=110)
    plt.close(fig)
    return path


def promote_step(cfg: StudyConfig, version: str, weeks: int | None = None, end: str | None = None,
                 prepared: Prepared | None = None):
    """Judge a registered version against the champion on the same backtest weeks; move the alias if it wins."""
    from hotspot.training.promotion import decision_words, promote

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    periods = forecast_periods(panel, weeks or cfg.promotion.weeks or cfg.backtest.weeks, end)
    with Progress(TextColumn("[bold]backtest[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        tasks: dict[str, int] = {}

        def step(name: str, done: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=len(periods))
            progress.update(tasks[name], completed=done)

        decision = promote(cfg, panel, prepared.incidents.fingerprint, version, periods, on_step=step)
    with tracking.step_run(cfg, "promote", prepared.incidents.fingerprint, run_name=f"promote v{version}"):
        import mlflow

        mlflow.set_tags({"model_version": version, "decision": "promoted" if decision.promoted else "refused"})
        mlflow.log_params({"candidate": version, "champion_before": decision.champion or "none",
                           "promotion_metric": decision.metric, "promotion_margin": decision.margin,
                           "weeks": len(decision.weeks)})
        if decision.candidate_score is not None:
            mlflow.log_metrics({"candidate_score": decision.candidate_score,
                                "champion_score": decision.champion_score})
        mlflow.log_dict(decision.to_dict(), "promotion/decision.json")
        mlflow.set_tag(tracking.NOTE_TAG, decision_words(decision))
    return decision


def rollback_step(cfg: StudyConfig, to: str | None = None, why: str = "") -> tuple[str, str]:
    """Move the champion alias back (to the previous champion, or to version `to`) and log why."""
    from hotspot.training.promotion import rollback

    before, after = rollback(cfg, to, why)
    with tracking.step_run(cfg, "rollback", "", run_name=f"rollback v{before} -> v{after}"):
        import mlflow

        mlflow.set_tags({"model_version": after, "from_version": before})
        mlflow.log_params({"from_version": before, "to_version": after, "why": why or "(none given)"})
    return before, after


def backtest_step(cfg: StudyConfig, model_names: list[str], weeks: int, end: str | None, out_dir: Path,
                  refit_every: int | None = None, prepared: Prepared | None = None,
                  ablation: bool = False) -> tuple[BacktestResult, dict]:
    """Rolling weekly backtest of the named models (or the family ablation); writes the contract files and logs
    them to MLflow."""
    from hotspot.training.ablation import reference_baselines, run_ablation, write_ablation

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    end = end or (str(cfg.backtest.end) if cfg.backtest.end else None)
    periods = forecast_periods(panel, weeks, end)
    refit = refit_every or cfg.backtest.refit_every
    names = (["lightgbm"] + [f"lightgbm-no_{f}" for f in sorted(set(panel.feature_families.values()))]
             + reference_baselines(cfg)) if ablation else None
    models = None if ablation else make_models(cfg, model_names)
    with Progress(TextColumn("[bold]backtest[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        tasks = {n: progress.add_task(n, total=len(periods)) for n in (names or [m.name for m in models])}
        step = lambda name, done: progress.update(tasks[name], completed=done)  # noqa: E731
        if ablation:
            abl = run_ablation(cfg, panel, periods, refit, on_step=step)
            result = abl.backtest
        else:
            result = run_backtest(panel, models, periods, refit, cfg.backtest.coverages, on_step=step)
    result.metrics["target_offenses"] = cfg.model.target_offenses or list(panel.groups)
    result.metrics["product"] = cfg.product.name
    result.metrics["demographics_as_features"] = cfg.features.demographics_as_features
    # the whole set (predictions, metrics, the accuracy report and figures) written and logged under the report's
    # lock: a second backtest into the same folder waits, so what is logged is what this run wrote
    from hotspot.training.evaluation.limit import limit_predictions, panel_limit
    from hotspot.training.evaluation.report import accuracy_report, metrics_extras, write_report
    from hotspot.training.selection import describe_selection

    # the clairvoyant limit: a reference beside the models (it uses future data), never one of them
    limit = panel_limit(panel, periods, cfg.backtest.limit_weeks, cfg.backtest.limit_min_after)
    limit_frame = limit_predictions(panel, limit) if limit.available else None
    report = accuracy_report(result.predictions, cfg.backtest.coverages, reference="lightgbm", limit=limit_frame,
                             limit_note=limit.note)
    result.metrics.update(metrics_extras(report))  # the verdict and the limit in metrics.json and the demo's table
    selection = describe_selection(result.metrics, report["best_baseline"])
    if selection["models"]:  # what auto chose at each refit, beside the verdict (and in metrics.json)
        report["selection"] = result.metrics["selection"] = selection
    with locked(out_dir / "accuracy.json", what="writing the backtest"):
        paths = write_backtest(result, out_dir, limit=limit_frame)
        subject = study_subject(cfg, result.metrics["target_offenses"])
        paths.update(write_report(report, result.predictions, out_dir, f"Accuracy report: {subject}"))
        if ablation:
            paths.update(write_ablation(abl, out_dir, subject))
        first_week, last_week = result.metrics["weeks"][0], result.metrics["weeks"][-1]
        run_name = f"{'ablation' if ablation else 'backtest'} {tracking.period_range(first_week, last_week)}"
        with tracking.step_run(cfg, "backtest", prepared.incidents.fingerprint, run_name=run_name) as parent:
            import mlflow

            mlflow.log_params({"backtest_models": ",".join(result.metrics["models"])[:500], "backtest_weeks": weeks,
                               "backtest_end": end or "end of data", "backtest_first_week": first_week,
                               "backtest_last_week": last_week, "refit_every_used": refit, "ablation": ablation})
            log_inputs(cfg, prepared.incidents, panel, context="evaluation")
            log_model_runs(cfg, parent.info.run_id, result, refit, prepared.incidents.fingerprint)
            log_feature_table(panel)
            for path in paths.values():
                mlflow.log_artifact(str(path), "backtest")
    return result, paths


def metric_key(name: str) -> str:
    """An MLflow metric key for a backtest metric: `pai@1%` -> `pai_at_1pct`, `pei*@1%` -> `pei_star_at_1pct`."""
    return name.replace("*", "_star").replace("@", "_at_").replace("%", "pct")


WEEK_CONTEXT = ("incidents",)  # the same for every model: logged on the backtest's run, not on each model's


def log_model_runs(cfg: StudyConfig, parent_id: str, result: BacktestResult, refit: int, fingerprint: str) -> None:
    """One nested run per model under the backtest's run, named by the model, each with the same metric names: the
    means over the weeks (`pai_at_1pct`, ...) and each week's value as a step of `weekly/...` (timestamped at the
    week's start), so MLflow's chart view compares models side by side. Tagged step=backtest_model, never
    step=backtest: the service takes runs tagged backtest for reports. The parent gets the weeks' incident counts,
    the total time and a description in words."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    weeks = result.metrics["weeks"]
    now = int(time.time() * 1000)

    def stamp(week: str) -> int:
        return int(pd.Timestamp(week).timestamp() * 1000)

    def log_batch(run_id: str, metrics: list) -> None:
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run_id, metrics=metrics[i:i + 1000])

    for name, m in result.metrics["models"].items():
        tags = {"step": "backtest_model", "model": name, "area": cfg.area.name, "data_fingerprint": fingerprint,
                "backtest_run_id": parent_id}
        with mlflow.start_run(run_name=name, nested=True, tags=tags) as run:
            mlflow.log_params({"model": name, "backtest_weeks": len(weeks), "backtest_first_week": weeks[0],
                               "backtest_last_week": weeks[-1], "refit_every_used": refit})
            means = {metric_key(k): float(v) for k, v in m["mean"].items() if pd.notna(v) and k not in WEEK_CONTEXT}
            means["fit_predict_s"] = float(result.seconds[name])
            metrics = [Metric(k, v, now, 0) for k, v in means.items()]
            for step, row in enumerate(m["weekly"]):
                metrics += [Metric(f"weekly/{metric_key(k)}", float(v), stamp(row["period_start"]), step)
                            for k, v in row.items() if k != "period_start" and k not in WEEK_CONTEXT
                            and isinstance(v, int | float | np.number) and np.isfinite(v)]
            log_batch(run.info.run_id, metrics)
    first = next(iter(result.metrics["models"].values()))["weekly"]
    context = [Metric(f"weekly/{k}", float(row[k]), stamp(row["period_start"]), step)
               for step, row in enumerate(first) for k in WEEK_CONTEXT if k in row]
    totals = {"incidents_per_week": float(np.mean([row.get("incidents", np.nan) for row in first])),
              "fit_predict_s": float(sum(result.seconds.values())), "models": float(len(result.metrics["models"]))}
    limit = result.metrics.get("limit") or {}
    if limit.get("available"):  # the clairvoyant reference on the parent, never as a model's run
        totals.update({f"limit/{metric_key(k)}": float(v) for k, v in limit["mean"].items()
                       if k not in WEEK_CONTEXT and pd.notna(v)})
    log_batch(parent_id, context + [Metric(k, v, now, 0) for k, v in totals.items() if np.isfinite(v)])
    mlflow.set_tag(tracking.NOTE_TAG, backtest_description(result, refit))


def backtest_description(result: BacktestResult, refit: int) -> str:
    """The backtest run's description: what was compared on which weeks, the models ranked by PAI@1% (or the first
    PAI reported), and where the charts and the report are."""
    weeks, models = result.metrics["weeks"], result.metrics["models"]
    keys = [k for m in models.values() for k in m["mean"] if k.startswith("pai@")]
    key = "pai@1%" if "pai@1%" in keys else (keys[0] if keys else None)
    every = "every week" if refit == 1 else f"every {refit} weeks"
    text = (f"Rolling backtest of {len(models)} models on the {len(weeks)} weeks "
            f"{tracking.period_range(weeks[0], weeks[-1])}: each week forecast by models fitted only on the weeks "
            f"before it (refitted {every}).\n\n")
    verdict = (result.metrics.get("verdict") or {}).get("sentences") or []
    room = (result.metrics.get("headroom") or {}).get("sentence")
    if verdict or room:  # the accuracy report's verdict, first, as the report puts it
        text += " ".join([*verdict, *([room] if room else [])]) + "\n\n"
    if key:
        scores = {n: float(m["mean"][key]) for n, m in models.items() if pd.notna(m["mean"].get(key))}
        ranked = ", ".join(f"{n} {v:.2f}" for n, v in sorted(scores.items(), key=lambda item: -item[1]))
        text += f"Mean {key.replace('pai', 'PAI')} over the weeks, best first: {ranked}.\n\n"
    return text + ("One child run per model with the same metric names: select them and open the chart view to "
                   "compare (`weekly/...` holds each week's value as a step). The accuracy report, with intervals "
                   "and paired differences, is under Artifacts: `backtest/accuracy.html`.")


def model_forecast(cfg: StudyConfig, week: str, prepared: Prepared, pin: str | None = None):
    """The forecast of one period by `auto` (pin None: fitted with only the weeks before it) or a pinned version
    ('champion' or a number): cells with risk, rank, percentile (and reasons for LightGBM), the provenance and the
    ForecastModel (training/forecast_model.py)."""
    from hotspot.training.forecast import forecast_cells, forecast_provenance
    from hotspot.training.forecast_model import forecast_model

    panel = prepared.panel
    t = panel.period_index(week)
    fingerprint = prepared.incidents.fingerprint
    if pin in (None, "auto"):
        with console.status(f"auto: backtesting every candidate on the weeks before {week}", spinner="dots"):
            chosen = forecast_model(cfg, panel, t, fingerprint, pin)
    else:
        chosen = forecast_model(cfg, panel, t, fingerprint, pin)
    cells = forecast_cells(panel, chosen.model, t, places=prepared.places)
    return cells, forecast_provenance(cfg, panel, t, chosen.ref, fingerprint, selection=chosen.selection), chosen


def forecast_step(cfg: StudyConfig, week: str, out: Path, prepared: Prepared | None = None, pin: str | None = None):
    """Forecast one period with `auto` (default) or a pinned version and write it as GeoJSON; the MLflow run logs
    what forecast (for auto: the choice and every candidate's validation scores)."""
    from hotspot.training.forecast import write_geojson

    prepared = prepared or prepare(cfg)
    cells, metadata, chosen = model_forecast(cfg, week, prepared, pin)
    write_geojson(cells, out, metadata)
    with tracking.step_run(cfg, "forecast", prepared.incidents.fingerprint,
                           run_name=f"forecast {metadata['period_start']} {chosen.run_label}"):
        import mlflow

        mlflow.log_params({"forecast_week": metadata["period_start"], "model": chosen.ref.name,
                           "model_version": chosen.ref.version})
        mlflow.log_metrics({"expected_incidents": float(cells["risk"].sum()), "cells": len(cells)})
        if chosen.selection:
            mlflow.log_dict(chosen.selection, "forecast/selection.json")
            mlflow.log_metrics({"selection_s": chosen.seconds,
                                **{f"selection/{n}": v for n, v in chosen.selection["scores"].items()
                                   if np.isfinite(v)}})
        mlflow.set_tag(tracking.NOTE_TAG, f"Forecast of {metadata['period_start']} by {chosen.words}.")
        mlflow.log_artifact(str(out), "forecast")
    return cells, metadata
