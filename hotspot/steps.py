"""Each pipeline step as a function: run the packages' work, log it to MLflow, return what it made.

The CLI, the demo, MLproject and the notebook all call these, so every way in does the same thing.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.config import StudyConfig
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
    (out_dir / "validation.json").write_text(json.dumps(summary, indent=2))
    with tracking.step_run(cfg, "validate", result.fingerprint):
        import mlflow

        mlflow.log_metrics({"rows_read": result.n_read, "rows_accepted": len(result.accepted),
                            "rows_quarantined": len(result.quarantine), "cells": result.grid.n_cells,
                            **{f"quarantined_{k}": v for k, v in counts.items()}})
        mlflow.log_artifact(str(path), "validation")
        mlflow.log_artifact(str(out_dir / "validation.json"), "validation")
    return result, path


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


def train_step(cfg: StudyConfig, prepared: Prepared | None = None):
    """Fit LightGBM on all observed periods, log it with its signature and register it."""
    from training.backtest import lightgbm_from_config
    from training.registry import log_and_register

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    model = lightgbm_from_config(cfg)
    with tracking.step_run(cfg, "train", prepared.incidents.fingerprint):
        import mlflow

        with console.status("fitting LightGBM", spinner="dots"):
            start = time.perf_counter()
            model.fit(panel)
            fit_s = time.perf_counter() - start
        first, last = model.train_periods_
        start_t, end_t = model.training_window(panel)
        mlflow.log_params({"train_first_period": str(first.date()), "train_last_period": str(last.date())})
        mlflow.log_metrics({"fit_s": fit_s, "train_rows": (end_t - start_t) * panel.grid.n_cells})
        log_feature_table(panel)
        ref = log_and_register(cfg, model, panel)
    return model, ref


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


def forecast_step(cfg: StudyConfig, week: str, out: Path, prepared: Prepared | None = None):
    """Forecast one period with the champion model and write it as GeoJSON."""
    from training.forecast import forecast_cells, write_geojson
    from training.registry import load_champion

    prepared = prepared or prepare(cfg)
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
    write_geojson(cells, out, metadata)
    with tracking.step_run(cfg, "forecast", prepared.incidents.fingerprint):
        import mlflow

        mlflow.log_params({"forecast_week": metadata["period_start"], "model_version": ref.version})
        mlflow.log_metrics({"expected_incidents": float(cells["risk"].sum()), "cells": len(cells)})
        mlflow.log_artifact(str(out), "forecast")
    return cells, metadata


def reason_table(result: ValidatedIncidents) -> list[tuple[str, int, str]]:
    return [(reason, count, REASONS[reason]) for reason, count in result.reason_counts().items() if count]


__all__ = ["prepare", "validate_step", "features_step", "train_step", "backtest_step", "forecast_step",
           "summary_table", "reason_table"]
