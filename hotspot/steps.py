"""Each pipeline step as a function: run the packages' work, log it to MLflow, return what it made.

The CLI, the demo, MLproject and the notebook all call these, so every way in does the same thing.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.config import StudyConfig
from features.errors import HotspotError
from features.ingest import REASONS, ValidatedIncidents, validate, write_quarantine
from features.panel import Panel, build_panel, write_panel
from training import tracking
from training.backtest import (
    BacktestResult,
    make_models,
    run_backtest,
    summary_table,
    forecast_periods,
    write_backtest,
)

console = Console(stderr=True)


@dataclass
class Prepared:
    incidents: ValidatedIncidents
    panel: Panel
    seconds: dict[str, float]


def prepare(cfg: StudyConfig, quiet: bool = False, incidents: ValidatedIncidents | None = None) -> Prepared:
    """Validate the inputs (unless already validated) and build the panel (the shared first half of every step)."""
    timings = {}
    if incidents is None:
        with console.status("reading and validating incidents", spinner="dots") if not quiet else nullcontext():
            start = time.perf_counter()
            incidents = validate(cfg)
            timings["validate_s"] = time.perf_counter() - start
    with console.status(f"building the panel ({incidents.grid.n_cells:,} cells)", spinner="dots") if not quiet else nullcontext():
        start = time.perf_counter()
        panel = build_panel(cfg, incidents.accepted, incidents.grid)
        timings["panel_s"] = time.perf_counter() - start
    return Prepared(incidents, panel, timings)


def validate_step(cfg: StudyConfig, out_dir: Path) -> tuple[ValidatedIncidents, Path]:
    """Validate the incidents, write the quarantine file and log counts per reason to MLflow."""
    start = time.perf_counter()
    result = validate(cfg)
    path = write_quarantine(result, out_dir)
    counts = result.reason_counts()
    summary = {"read": result.n_read, "accepted": len(result.accepted), "quarantined": len(result.quarantine),
               "by_reason": counts, "cells": result.grid.n_cells, "area_km2": round(result.area.area_km2, 2),
               "area_origin": result.area.origin, "crs": result.grid.crs.to_string(),
               "seconds": round(time.perf_counter() - start, 2)}
    summary["by_source"] = result.source_counts()
    if result.history is not None:
        summary["history"] = str(result.history)
    (out_dir / "validation.json").write_text(json.dumps(summary, indent=2))
    with tracking.step_run(cfg, "validate", result.fingerprint):
        import mlflow

        mlflow.log_metrics({"rows_read": result.n_read, "rows_accepted": len(result.accepted),
                            "rows_quarantined": len(result.quarantine), "cells": result.grid.n_cells,
                            **{f"quarantined_{k}": v for k, v in counts.items()},
                            **source_metrics(summary["by_source"])})
        mlflow.log_artifact(str(path), "validation")
        mlflow.log_artifact(str(out_dir / "validation.json"), "validation")
    return result, path


def ingest_step(cfg: StudyConfig, out_dir: Path, append: Path | None = None, source: str | None = None):
    """Build the stored incident history from every source, or append one file to it (features.history); write
    the quarantine and an ingest.json summary and log counts per source to MLflow. Returns the IngestReport."""
    from features import history

    start = time.perf_counter()
    report = history.append(cfg, append, source) if append is not None else history.build(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    q_path = out_dir / "quarantine.csv"
    tmp = q_path.with_suffix(".csv.tmp")
    report.quarantine.to_csv(tmp, index=False)
    tmp.replace(q_path)
    summary = {"mode": "append" if append is not None else "build",
               "file": str(append) if append is not None else None, **report.as_dict(),
               "seconds": round(time.perf_counter() - start, 2)}
    (out_dir / "ingest.json").write_text(json.dumps(summary, indent=2))
    with tracking.step_run(cfg, "ingest", report.fingerprint):
        import mlflow

        mlflow.log_metrics({"rows_stored": report.rows_stored, "rows_added": report.added,
                            "rows_already_stored": report.already_stored, "rows_late": report.late,
                            **source_metrics(report.by_source)})
        if report.late_periods:
            mlflow.set_tag("late_periods", ",".join(report.late_periods)[:5000])
        mlflow.log_artifact(str(q_path), "ingest")
        mlflow.log_artifact(str(out_dir / "ingest.json"), "ingest")
    return report, summary


def features_step(cfg: StudyConfig, out_dir: Path,
                  incidents: ValidatedIncidents | None = None) -> tuple[Prepared, Path, Path]:
    prepared = prepare(cfg, incidents=incidents)
    start = time.perf_counter()
    panel_path, schema_path = write_panel(prepared.panel, out_dir)
    prepared.seconds["write_s"] = time.perf_counter() - start
    with tracking.step_run(cfg, "features", prepared.incidents.fingerprint):
        import mlflow

        panel = prepared.panel
        mlflow.log_metrics({"cells": panel.grid.n_cells, "periods": panel.n_periods,
                            "features": len(panel.feature_names), **prepared.seconds})
        mlflow.log_artifact(str(schema_path), "features")
        log_feature_table(panel)
    return prepared, panel_path, schema_path


def model_from_params(cfg: StudyConfig, params: str = "auto"):
    """The forecaster `hotspot train` fits: the tuned study's best spec ('study', or 'auto' when a study exists),
    else the config's own parameters ('config'). Returns (forecaster, where its parameters came from)."""
    from models import LightGBMForecaster
    from training.backtest import lightgbm_from_config
    from training.tuning import best_spec

    if params not in ("auto", "study", "config"):
        raise ValueError(f"--params must be auto, study or config, not {params!r}")
    found = best_spec(cfg) if params != "config" else None
    if params == "study" and found is None:
        raise HotspotError(f"no tuned study for this config in {cfg.tune.storage}; run `hotspot tune --config "
                           f"{cfg.source_path}` first or use --params config")
    if found:
        spec, name = found
        # train with the config's share of empty cell-periods (tuning may have used a smaller one to save time)
        spec = {**spec, "zero_row_fraction": cfg.model.lightgbm.zero_row_fraction}
        return LightGBMForecaster.from_spec(spec), f"study:{name}"
    return lightgbm_from_config(cfg), "config"


def train_step(cfg: StudyConfig, prepared: Prepared | None = None, params: str = "auto"):
    """Fit LightGBM on all observed periods (tuned parameters when a study exists), log it with its signature,
    spec and feature list, and register it."""
    from training.registry import log_and_register

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    model, source = model_from_params(cfg, params)
    with tracking.step_run(cfg, "train", prepared.incidents.fingerprint):
        import mlflow

        with console.status(f"fitting LightGBM ({model.objective}, parameters from {source})", spinner="dots"):
            start = time.perf_counter()
            model.fit(panel)
            fit_s = time.perf_counter() - start
        first, last = model.train_periods_
        start_t, end_t = model.training_window(panel)
        mlflow.log_params({"train_first_period": str(first.date()), "train_last_period": str(last.date()),
                           "params_source": source, **{f"model_spec.{k}": v for k, v in tracking.flatten(
                               "", {"params": model.params, "num_boost_round": model.num_boost_round,
                                    "train_periods": model.train_periods}).items()}})
        mlflow.log_metrics({"fit_s": fit_s, "train_rows": (end_t - start_t) * panel.grid.n_cells})
        log_feature_table(panel)
        ref = log_and_register(cfg, model, panel, params_source=source)
    return model, ref


def tune_step(cfg: StudyConfig, trials: int | None = None, before: str | None = None,
              prepared: Prepared | None = None, out_dir: Path | None = None):
    """Run or resume the Optuna study; each trial a nested MLflow run; the best spec saved with the study."""
    import mlflow

    from training.tuning import fold_blocks, study_name, tune

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    blocks = fold_blocks(panel, cfg, before)
    trials = trials or cfg.tune.trials
    out_dir = out_dir or Path("outputs") / cfg.area.name / "tune"
    with tracking.step_run(cfg, "tune", prepared.incidents.fingerprint, run_name=f"tune {study_name(cfg)}"):
        mlflow.log_params({"study_name": study_name(cfg), "trials_target": trials,
                           "folds": ",".join(f"{panel.period_starts[b[0]].date()}+{len(b)}" for b in blocks)})

        def log_trial(trial, spec: dict, fold_scores: list) -> None:
            # every tag at creation: a run cut off by a kill while logging is still found and labelled
            state = "pruned" if len(fold_scores) < len(blocks) else "complete"
            with mlflow.start_run(run_name=f"trial {trial.number}", nested=True,
                                  tags={"step": "tune_trial", "study": study_name(cfg), "state": state}):
                mlflow.log_params({"trial": trial.number, **tracking.flatten("", {
                    "params": spec["params"], "num_boost_round": spec["num_boost_round"],
                    "train_periods": spec["train_periods"]})})
                for k, scores in enumerate(fold_scores):
                    mlflow.log_metrics({m.replace("@", "_at_").replace("%", "pct"): v for m, v in scores.items()
                                        if np.isfinite(v)}, step=k)

        with Progress(TextColumn("[bold]tune[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task(study_name(cfg), total=trials)

            def on_trial(trial) -> None:
                progress.advance(task)

            result = tune(cfg, panel, trials, before, on_trial=on_trial, log_trial=log_trial)
        table = result.study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"trials": out_dir / "trials.csv", "best": out_dir / "best_spec.json"}
        table.to_csv(paths["trials"], index=False)
        paths["best"].write_text(json.dumps({"study": study_name(cfg), "metric": cfg.tune.metric,
                                             "best_value": result.best_value, "spec": result.best_spec}, indent=2))
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def promote_step(cfg: StudyConfig, version: str, weeks: int | None = None, end: str | None = None,
                 prepared: Prepared | None = None):
    """Judge a registered version against the champion on the same backtest weeks; move the alias if it wins."""
    from training.promotion import promote

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
    return decision


def rollback_step(cfg: StudyConfig, to: str | None = None, why: str = "") -> tuple[str, str]:
    """Move the champion alias back (to the previous champion, or to version `to`) and log why."""
    from training.promotion import rollback

    before, after = rollback(cfg, to, why)
    with tracking.step_run(cfg, "rollback", "", run_name=f"rollback v{before} -> v{after}"):
        import mlflow

        mlflow.set_tags({"model_version": after, "from_version": before})
        mlflow.log_params({"from_version": before, "to_version": after, "why": why or "(none given)"})
    return before, after


def with_overrides(cfg: StudyConfig, without: list[str] | None = None, targets: list[str] | None = None) -> StudyConfig:
    """A copy of the config with feature families switched off and/or another target offence set."""
    from features.config import FeaturesConfig, ModelConfig

    features, model = cfg.features, cfg.model
    if without:
        features = FeaturesConfig.model_validate({**features.model_dump(), "exclude": [*features.exclude, *without]})
    if targets:
        model = ModelConfig.model_validate({**model.model_dump(), "target_offenses": targets})
    return type(cfg).model_validate({**cfg.model_dump(), "features": features, "model": model},
                                    context={"base_dir": Path("/")}).model_copy(
        update={"source_path": cfg.source_path, "source_sha256": cfg.source_sha256})


def backtest_step(cfg: StudyConfig, model_names: list[str], weeks: int, end: str | None, out_dir: Path,
                  refit_every: int | None = None, prepared: Prepared | None = None,
                  ablation: bool = False) -> tuple[BacktestResult, dict]:
    """Rolling weekly backtest of the named models (or the family ablation); writes the contract files and logs
    them to MLflow."""
    from training.ablation import reference_baselines, run_ablation, write_ablation

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
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
    result.metrics["demographics_as_features"] = cfg.features.demographics_as_features
    paths = write_backtest(result, out_dir)
    from training.report import accuracy_report, write_report

    report = accuracy_report(result.predictions, cfg.backtest.coverages, reference="lightgbm")
    targets_text = ", ".join(result.metrics["target_offenses"])
    paths.update(write_report(report, result.predictions, out_dir,
                              f"Accuracy report: {cfg.area.name} ({targets_text})"))
    if ablation:
        paths.update(write_ablation(abl, out_dir, f"{cfg.area.name} ({targets_text})"))
    with tracking.step_run(cfg, "backtest", prepared.incidents.fingerprint):
        import mlflow

        mlflow.log_params({"backtest_models": ",".join(result.metrics["models"])[:500], "backtest_weeks": weeks,
                           "backtest_end": end or "end of data", "backtest_first_week": result.metrics["weeks"][0],
                           "backtest_last_week": result.metrics["weeks"][-1], "refit_every_used": refit,
                           "ablation": ablation})
        for name, m in result.metrics["models"].items():
            mlflow.log_metrics({f"{name}.{k.replace('@', '_at_').replace('%', 'pct')}": v
                                for k, v in m["mean"].items() if pd.notna(v)})
            mlflow.log_metric(f"{name}.fit_predict_s", result.seconds[name])
        log_feature_table(panel)
        for path in paths.values():
            mlflow.log_artifact(str(path), "backtest")
    return result, paths


def trends_step(cfg: StudyConfig, out_dir: Path, public: bool | None = None, formats: list[str] | None = None,
                prepared: Prepared | None = None):
    """Counts, rates and seasonally adjusted change per offence group and area (training.trends); writes
    trends.json, PNG plots and the tables in `formats` (csv, gpkg, geojson); logs them to a `trends` run."""
    from training.exports import export_trends
    from training.trends import compute_trends, plot_trends

    prepared = prepared or prepare(cfg)
    trends = compute_trends(cfg, prepared.panel, public=public)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**trends.meta, "data_fingerprint": prepared.incidents.fingerprint, "code_version": tracking.code_version(),
            "config": str(cfg.source_path), "config_sha256": cfg.source_sha256}
    trends.meta = meta
    paths = {"json": out_dir / "trends.json"}
    tmp = paths["json"].with_name("trends.json.tmp")
    tmp.write_text(json.dumps(trends.to_dict(), indent=1))
    tmp.replace(paths["json"])
    paths.update(plot_trends(trends, out_dir))
    paths.update(export_trends(trends, out_dir, formats or ["csv"]))
    with tracking.step_run(cfg, "trends", prepared.incidents.fingerprint, run_name=f"trends ({meta['view']})"):
        import mlflow

        mlflow.set_tags({"view": meta["view"]})
        mlflow.log_params({"trends_view": meta["view"], "trends_first_week": meta["first_week"],
                           "trends_last_week": meta["last_week"]})
        for path in paths.values():
            mlflow.log_artifact(str(path), "trends")
    return trends, paths


def intervention_step(cfg: StudyConfig, cells_file: Path, start: str, end: str | None, out_dir: Path,
                      prepared: Prepared | None = None, offences: list[str] | None = None):
    """Difference-in-differences of an intervention in the cells of `cells_file` from `start` (training.intervention):
    estimate with its interval, placebo and displacement; writes intervention.json and .png; an `intervention` run."""
    from training.intervention import evaluate_intervention, read_cells_file, write_intervention

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    groups = offences or list(panel.groups)
    unknown = [g for g in groups if g not in panel.groups]
    if unknown:
        raise HotspotError(f"offences {unknown} are not in the data; offences: {list(panel.groups)}")
    y = panel.counts[:, :, [panel.groups.index(g) for g in groups]].sum(axis=2)
    treated = read_cells_file(cells_file, panel.grid)
    result = evaluate_intervention(y, panel.period_starts, panel.grid, treated, start, end)
    paths = write_intervention(result, out_dir)
    with tracking.step_run(cfg, "intervention", prepared.incidents.fingerprint,
                           run_name=f"intervention {result.start}"):
        import mlflow

        mlflow.log_params({"intervention_start": result.start, "intervention_end": result.end,
                           "intervention_cells": len(result.treated_cells), "intervention_offences": ",".join(groups),
                           "cells_file": str(cells_file)})
        figures = {"estimate": result.estimate, "placebo": result.placebo, "displacement": result.displacement}
        mlflow.log_metrics({f"{name}.{key}": value for name, e in figures.items() if e is not None
                            for key, value in (("effect_pct", e.effect_pct), ("effect_per_cell_week",
                                                                              e.effect_per_cell_week),
                                               ("ci95_lo", e.ci95[0]), ("ci95_hi", e.ci95[1]))
                            if np.isfinite(value)})
        for path in paths.values():
            mlflow.log_artifact(str(path), "intervention")
    return result, paths


def export_step(cfg: StudyConfig, week: str, fmt: str, out: Path, prepared: Prepared | None = None):
    """Forecast one period with the champion (as `hotspot forecast`) and write it as GeoJSON, GeoPackage or CSV for
    partners' GIS; an `export` run."""
    from training.exports import export_forecast, parse_formats

    fmt = parse_formats(fmt)[0]
    prepared = prepared or prepare(cfg)
    cells, metadata, ref = champion_forecast(cfg, week, prepared)
    metadata.update({"format": fmt, "note": metadata["note"] + " Cells only: no incident locations."})
    path = export_forecast(cells, out, fmt, metadata)
    with tracking.step_run(cfg, "export", prepared.incidents.fingerprint, run_name=f"export {fmt}"):
        import mlflow

        mlflow.log_params({"export_week": metadata["period_start"], "export_format": fmt,
                           "model_version": ref.version})
        mlflow.log_metrics({"cells": len(cells)})
        mlflow.log_artifact(str(path), "export")
    return cells, metadata, path


def feature_table(panel: Panel) -> pd.DataFrame:
    """Name, family, description and unit of every feature of the panel (the self-documenting feature table)."""
    return pd.DataFrame({"feature": list(panel.feature_names),
                         "family": [panel.feature_families.get(n, "") for n in panel.feature_names],
                         "description": [panel.feature_descriptions.get(n, "") for n in panel.feature_names],
                         "unit": [panel.feature_units.get(n, "") for n in panel.feature_names]})


def log_feature_table(panel: Panel) -> None:
    """Log the feature table to the active MLflow run (as a table, JSON and params per family)."""
    import mlflow

    table = feature_table(panel)
    mlflow.log_table(table, "features/feature_table.json")
    mlflow.log_dict({"families": sorted(set(table["family"])), "skipped_families": panel.skipped_families,
                     "features": table.to_dict(orient="records")}, "features/features.json")
    mlflow.log_params({"feature_families": ",".join(sorted(set(table["family"]))), "n_features": len(table)})


def champion_forecast(cfg: StudyConfig, week: str, prepared: Prepared):
    """The champion's forecast of one period (cells with risk, rank, percentile, reasons) and its provenance."""
    from training.forecast import forecast_cells
    from training.registry import load_champion

    panel = prepared.panel
    t = panel.period_index(week)
    model, ref = load_champion(cfg)
    cells = forecast_cells(panel, model, t)
    metadata = {"period_start": str(panel.period_starts[t].date()), "model": ref.name,
                "model_version": ref.version, "model_run_id": ref.run_id,
                "data_fingerprint": prepared.incidents.fingerprint, "code_version": tracking.code_version(),
                "area": cfg.area.name, "cell_size_m": panel.grid.cell_size_m,
                "retrospective": bool(t < panel.n_periods),
                "note": "Risk is the expected count of recorded incidents in the period; recorded incidents are "
                        "policing data, not ground truth."}
    return cells, metadata, ref


def forecast_step(cfg: StudyConfig, week: str, out: Path, prepared: Prepared | None = None):
    """Forecast one period with the champion model and write it as GeoJSON."""
    from training.forecast import write_geojson

    prepared = prepared or prepare(cfg)
    cells, metadata, ref = champion_forecast(cfg, week, prepared)
    write_geojson(cells, out, metadata)
    with tracking.step_run(cfg, "forecast", prepared.incidents.fingerprint):
        import mlflow

        mlflow.log_params({"forecast_week": metadata["period_start"], "model_version": ref.version})
        mlflow.log_metrics({"expected_incidents": float(cells["risk"].sum()), "cells": len(cells)})
        mlflow.log_artifact(str(out), "forecast")
    return cells, metadata


def audit_step(cfg: StudyConfig, model_version: str | None = None, weeks: int | None = None, end: str | None = None,
               out_dir: Path | None = None, baselines: list[str] | None = None, refit_every: int | None = None,
               prepared: Prepared | None = None) -> tuple[dict, dict[str, Path]]:
    """Fairness audit of a registered version (the champion when None) beside the count baselines on the same
    backtest weeks; writes audit.json, audit.html and PNGs and logs them to the version's run and an audit run."""
    from training.audit import build_audit
    from training.audit_report import clean, write_audit
    from training.fairness import cell_demography, read_areas
    from training.registry import registry_client, version_forecaster, version_spec

    if cfg.fairness is None:
        raise HotspotError(f"{cfg.source_path}: the config has no fairness section; add one with areas, population "
                           "and groups to audit a model")
    read_areas(cfg.fairness)  # fail on a missing file or column before the long work
    forecaster, ref = version_forecaster(cfg, model_version)
    spec, _ = version_spec(cfg, ref.version)
    start = time.perf_counter()
    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    demography = cell_demography(cfg.fairness, panel.grid)
    periods = forecast_periods(panel, weeks or cfg.backtest.weeks, end)
    bc = cfg.backtest
    names = baselines
    if names is None:  # the count baselines
        names = [*(f"naive_{w}w" for w in bc.naive_weeks), f"ewm_hl{bc.ewm_halflife:g}"]
    models = [forecaster, *make_models(cfg, names)]
    refit = refit_every or bc.refit_every
    seconds = {"prepare_s": time.perf_counter() - start}
    start = time.perf_counter()
    with Progress(TextColumn("[bold]audit backtest[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        tasks = {m.name: progress.add_task(m.name, total=len(periods)) for m in models}
        result = run_backtest(panel, models, periods, refit, [cfg.fairness.coverage],
                              on_step=lambda name, done: progress.update(tasks[name], completed=done))
    seconds["backtest_s"] = time.perf_counter() - start
    start = time.perf_counter()
    provenance = {"model_data_fingerprint": ref.data_fingerprint, "data_fingerprint": prepared.incidents.fingerprint,
                  "code_version": tracking.code_version(), "config": str(cfg.source_path),
                  "config_sha256": cfg.source_sha256}
    with console.status("auditing: groups, simulation, trade-off", spinner="dots"):
        audit = build_audit(cfg, panel, result.predictions, demography, ref, spec, provenance)
    seconds["audit_s"] = time.perf_counter() - start
    audit.update(seconds=seconds, refit_every=refit)
    out_dir = out_dir or Path("outputs") / cfg.area.name / "audit"
    paths = write_audit(audit, out_dir)
    metrics = audit_metrics(clean(audit))
    client = registry_client()
    if ref.run_id:
        client.log_batch(ref.run_id, metrics=[_metric(k, v) for k, v in metrics.items()])
        for path in paths.values():
            client.log_artifact(ref.run_id, str(path), "audit")
    with tracking.step_run(cfg, "audit", prepared.incidents.fingerprint, run_name=f"audit v{ref.version}"):
        import mlflow

        mlflow.set_tags({"model_version": ref.version, "model_name": ref.name, "model_run_id": ref.run_id or ""})
        mlflow.log_params({"audit_models": ",".join(m.name for m in models), "audit_weeks": len(periods),
                           "audit_first_week": audit["weeks"][0], "audit_last_week": audit["weeks"][-1],
                           "audit_refit_every": refit})
        mlflow.log_metrics(metrics)
        for path in paths.values():
            mlflow.log_artifact(str(path), "audit")
    return audit, paths


def audit_metrics(audit: dict) -> dict[str, float]:
    """Headline audit figures as MLflow metrics named audit.*: per group of every definition for the audited model,
    the largest flag-rate ratio of every model, the simulation's end distances and the time taken."""
    import re

    out = {}
    audited = audit["audited_model"]
    for name, d in audit["definitions"].items():
        for label, g in d["models"][audited]["groups"].items():
            for key in ("flag_share", "disparate_impact", "hit_rate", "pai", "flagged_population_share"):
                out[f"audit.{name}.{label}.{key}"] = g[key]["value"]
            out[f"audit.{name}.{label}.population_share"] = d["groups"][label]["population_share"]
        for model, figs in d["models"].items():
            out[f"audit.{name}.largest_flag_rate_ratio.{model}"] = figs["largest_flag_rate_ratio"]
    for arm, a in audit.get("feedback", {}).get("arms", {}).items():
        out[f"audit.feedback.{arm}.distance_end"] = a["distance_end"]
    out.update({f"audit.{k}": v for k, v in audit.get("seconds", {}).items()})
    return {re.sub(r"[^A-Za-z0-9_.\-/]", "_", k): float(v) for k, v in out.items() if v is not None}


def _metric(key: str, value: float):
    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), 0)


def reason_table(result: ValidatedIncidents) -> list[tuple[str, int, str]]:
    from features.ingest import ALL_REASONS  # REASONS plus the multi-source reasons

    return [(reason, count, REASONS.get(reason) or ALL_REASONS[reason])
            for reason, count in result.reason_counts().items() if count]


def source_metrics(by_source: dict[str, dict[str, int]]) -> dict[str, float]:
    """MLflow metrics `source.<name>.<count>` (names made safe for MLflow keys)."""
    import re

    return {re.sub(r"[^A-Za-z0-9_.\-/]", "_", f"source.{name}.{k}"): float(v)
            for name, counts in by_source.items() for k, v in counts.items()}


__all__ = ["prepare", "validate_step", "features_step", "train_step", "tune_step", "promote_step", "rollback_step",
           "backtest_step", "forecast_step",
           "summary_table", "reason_table", "audit_step"]
