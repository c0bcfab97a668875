"""The rolling-origin loop: for each test week, fit only on the weeks before it and forecast that week.

A leaf of training/: the backtest (training/backtest.py, which builds models from a config) and model selection
(training/selection.py, whose `auto` forecaster is one of those models) both run it, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hotspot.features.panel import Panel
from hotspot.models import Forecaster
from hotspot.training.evaluation.metrics import coverage_label, week_metrics

PREDICTION_COLUMNS = ["period_start", "cell_id", "x", "y", "lon", "lat", "risk", "observed", "model"]


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
    """Forecast each test period with each model, refitting every `refit_every` periods on the data before it.

    A model that describes its fit in `fit_summary_` (a JSON-able dict; `auto` says what it chose and why) has one
    record per refit under metrics["models"][name]["refits"], each with the week it forecast first."""
    import time

    grid = panel.grid
    frames, weekly, seconds, refits = [], {}, {}, {}
    for model in models:
        start = time.perf_counter()
        rows = []
        for i, t in enumerate(periods):
            known = panel.until(int(t))
            if i % refit_every == 0:
                model.fit(known)
                summary = getattr(model, "fit_summary_", None)
                if summary is not None:
                    refits.setdefault(model.name, []).append(
                        {"refit_week": str(panel.period_starts[t].date()), **summary})
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
    for name, records in refits.items():
        metrics["models"][name]["refits"] = records
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
