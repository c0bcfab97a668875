"""Rolling-origin backtest: for each test week, fit only on the weeks before it and forecast that week."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.config import StudyConfig
from hotspot.features.locking import locked, replace_atomically, write_text_atomically
from hotspot.features.panel import Panel
from hotspot.models import (
    SEPP,
    EWMCounts,
    Forecaster,
    HistoryCounts,
    KernelDensity,
    LightGBMForecaster,
    ProspectiveHotspots,
    RecentCounts,
    RiskTerrain,
)
from hotspot.training.evaluation.metrics import coverage_label, week_metrics

PREDICTION_COLUMNS = ["period_start", "cell_id", "x", "y", "lon", "lat", "risk", "observed", "model"]


def lightgbm_from_config(cfg: StudyConfig) -> LightGBMForecaster:
    """The LightGBM forecaster the config's [model.lightgbm] parameters describe."""
    lc = cfg.model.lightgbm
    params = lc.model_dump(exclude={"num_boost_round", "zero_row_fraction"})
    return LightGBMForecaster(params=params, num_boost_round=lc.num_boost_round, train_periods=cfg.model.train_periods,
                              zero_row_fraction=lc.zero_row_fraction, seed=lc.seed)


def available_models(cfg: StudyConfig) -> dict[str, Callable[[], Forecaster]]:
    """Every model a backtest can run, by name, built from the config."""
    from hotspot.training.tuning import best_spec

    factories: dict[str, Callable[[], Forecaster]] = {"lightgbm": lambda: lightgbm_from_config(cfg)}
    tuned = best_spec(cfg)
    if tuned:  # the tuned study's best spec, trained with the config's share of empty cell-periods
        spec = {**tuned[0], "zero_row_fraction": cfg.model.lightgbm.zero_row_fraction}
        factories["lightgbm_tuned"] = lambda: LightGBMForecaster.from_spec(spec, name="lightgbm_tuned")
    for w in cfg.backtest.naive_weeks:
        factories[f"naive_{w}w"] = lambda w=w: RecentCounts(weeks=w)
    factories["history"] = HistoryCounts
    bc = cfg.backtest
    factories[f"ewm_hl{bc.ewm_halflife:g}"] = lambda: EWMCounts(halflife=bc.ewm_halflife)
    factories[f"kde_{bc.kde_bandwidth_m:g}m"] = lambda: KernelDensity(bandwidth_m=bc.kde_bandwidth_m)
    factories["prospective"] = lambda: ProspectiveHotspots(bc.prospective_bandwidth_cells, bc.prospective_weeks)
    factories["sepp"] = lambda: SEPP(train_days=bc.sepp_train_days)
    if cfg.context:
        factories["rtm"] = RiskTerrain
    return factories


def make_models(cfg: StudyConfig, names: list[str]) -> list[Forecaster]:
    """The named forecasters (or every available one for ["all"]); an unknown name is a ValueError."""
    factories = available_models(cfg)
    if names == ["all"]:
        names = list(factories)
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(factories)} or 'all'")
    return [factories[n]() for n in names]


def forecast_periods(panel: Panel, weeks: int, end: str | pd.Timestamp | None = None) -> np.ndarray:
    """Indices of the `weeks` observed periods that start before `end` (default: after the last observed one)."""
    observed = panel.period_starts[: panel.n_periods]
    stop = panel.n_periods if end is None else int(observed.searchsorted(pd.Timestamp(end), side="left"))
    first = stop - weeks
    if first < panel.min_history + 1:
        raise ValueError(
            f"a {weeks}-week backtest ending {observed[stop - 1].date() if stop else '?'} needs periods from index "
            f"{first}, but the first {panel.min_history + 1} periods are the features' look-back"
            f" (data start {observed[0].date()}); use fewer weeks or a later end"
        )
    return np.arange(first, stop)


@dataclass
class BacktestResult:
    predictions: pd.DataFrame
    metrics: dict
    seconds: dict[str, float]


def run_backtest(panel: Panel, models: list[Forecaster], periods: np.ndarray, refit_every: int,
                 coverages: list[float], on_step: Callable[[str, int], None] | None = None) -> BacktestResult:
    """Forecast each test period with each model, refitting every `refit_every` periods on the data before it."""
    import time

    grid = panel.grid
    frames, weekly, seconds = [], {}, {}
    for model in models:
        start = time.perf_counter()
        rows = []
        for i, t in enumerate(periods):
            known = panel.until(int(t))
            if i % refit_every == 0:
                model.fit(known)
            risk = model.predict(known)
            observed = panel.target[t]
            frames.append(pd.DataFrame({
                "period_start": panel.period_starts[t].date(), "cell_id": grid.cell_id, "x": grid.x, "y": grid.y,
                "lon": grid.lon, "lat": grid.lat, "risk": risk, "observed": observed.astype(np.int32),
                "model": model.name,
            }))
            rows.append({"period_start": str(panel.period_starts[t].date()), **week_metrics(risk, observed, coverages)})
            if on_step:
                on_step(model.name, i + 1)
        weekly[model.name] = rows
        seconds[model.name] = time.perf_counter() - start
    predictions = pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]
    predictions["model"] = predictions["model"].astype("category")
    metrics = summarise(weekly, coverages, panel, periods, refit_every)
    for name, s in seconds.items():
        metrics["models"][name]["fit_predict_s"] = s
    return BacktestResult(predictions, metrics, seconds)


def summarise(weekly: dict[str, list[dict]], coverages: list[float], panel: Panel, periods: np.ndarray,
              refit_every: int) -> dict:
    """The backtest's metrics: each model's weekly rows and their means, with the weeks, grid and refit setting."""
    models = {}
    for name, rows in weekly.items():
        frame = pd.DataFrame(rows).set_index("period_start")
        models[name] = {
            "mean": {k: float(v) for k, v in frame.mean(skipna=True).items()},
            "weekly": rows,
        }
    return {
        "coverages": [coverage_label(c) for c in coverages],
        "weeks": [str(panel.period_starts[t].date()) for t in periods],
        "n_cells": panel.grid.n_cells,
        "cell_size_m": panel.grid.cell_size_m,
        "refit_every": refit_every,
        "models": models,
        "note": "Recorded incidents are policing data, not ground truth: they measure where crime was recorded.",
    }


def write_backtest(result: BacktestResult, out_dir: Path, limit: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write predictions.parquet, metrics.json and plots into out_dir (each file replaced atomically), and the
    clairvoyant limit as limit.parquet beside them when given (a stale one removed when not)."""
    from hotspot.training.evaluation.plots import plot_backtest

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"predictions": out_dir / "predictions.parquet", "metrics": out_dir / "metrics.json"}
    with locked(paths["metrics"], what="writing the backtest"):  # predictions, metrics and plots from one run
        replace_atomically(paths["predictions"], lambda tmp: result.predictions.to_parquet(tmp, index=False))
        if limit is not None:
            paths["limit"] = out_dir / "limit.parquet"
            replace_atomically(paths["limit"], lambda tmp: limit.to_parquet(tmp, index=False))
        else:  # an earlier run's limit would be read as this run's
            (out_dir / "limit.parquet").unlink(missing_ok=True)
        write_text_atomically(paths["metrics"], json.dumps(result.metrics, indent=2, allow_nan=True))
        paths.update(plot_backtest(result.metrics, out_dir))
    return paths


def summary_table(metrics: dict, keys: list[str] | None = None) -> pd.DataFrame:
    """Mean of each headline metric per model, best PAI@1% first."""
    keys = keys or ["pai@1%", "pai@5%", "hit_rate@1%", "pei@1%", "poisson_deviance"]
    table = pd.DataFrame({name: {k: m["mean"].get(k, np.nan) for k in keys} for name, m in metrics["models"].items()}).T
    return table.sort_values(keys[0], ascending=False)
