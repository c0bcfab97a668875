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
    from hotspot.features.engine import current

    frames, weekly, seconds, refits = [], {}, {}, {}
    client = current()
    spread = [m for m in models if not getattr(m, "sequential_refits", False)] if client is not None else []
    n_blocks = -(-len(periods) // refit_every)
    if len(spread) * n_blocks < 2:  # one fit: nothing to spread (a LightGBM fit then uses the workers itself)
        spread = []
    done = _blocks_on_workers(client, panel, spread, periods, refit_every, coverages, on_step) if spread else {}
    for model in models:
        # the Dask engine ran its refit blocks as tasks on the workers; otherwise here, in order (a model may keep
        # state from one refit to the next)
        risks, rows, summaries, seconds[model.name] = done.get(model.name) or _in_order(
            model, panel, periods, refit_every, coverages, on_step)
        for t, risk in zip(periods, risks, strict=True):
            frames.append(_frame(panel, int(t), risk, model.name))
        weekly[model.name] = rows
        if any(s is not None for s in summaries):
            refits[model.name] = [{"refit_week": str(panel.period_starts[block[0]].date()), **s}
                                  for block, s in zip(_blocks(periods, refit_every), summaries, strict=True)
                                  if s is not None]
    predictions = pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]
    predictions["model"] = predictions["model"].astype("category")
    metrics = summarise(weekly, coverages, panel, periods, refit_every)
    for name, records in refits.items():
        metrics["models"][name]["refits"] = records
    for name, s in seconds.items():
        metrics["models"][name]["fit_predict_s"] = s
    return BacktestResult(predictions, metrics, seconds)


def _frame(panel: Panel, t: int, risk: np.ndarray, name: str) -> pd.DataFrame:
    """One week's prediction rows (PREDICTION_COLUMNS)."""
    grid = panel.grid
    return pd.DataFrame({
        "period_start": panel.period_starts[t].date(), "cell_id": grid.cell_id, "x": grid.x, "y": grid.y,
        "lon": grid.lon, "lat": grid.lat, "risk": risk, "observed": panel.target[t].astype(np.int32), "model": name,
    })


def _blocks(periods: np.ndarray, refit_every: int) -> list[np.ndarray]:
    """The test periods in refit blocks: each block is forecast by one fit on the weeks before its first."""
    return [periods[i:i + refit_every] for i in range(0, len(periods), refit_every)]


def _run_block(model: Forecaster, panel: Panel, block: np.ndarray, coverages: list[float]):
    """Fit the model on the weeks before the block and forecast each week of it (here, or as a task on a worker).
    Returns the forecasts, the weekly metrics, the fit's summary (or None), the seconds and the fitted model."""
    import time

    start = time.perf_counter()
    model.fit(panel.until(int(block[0])))
    risks, rows = [], []
    for t in block:
        risk = model.predict(panel.until(int(t)))
        risks.append(risk)
        rows.append({"period_start": str(panel.period_starts[t].date()),
                     **week_metrics(risk, panel.target[t], coverages)})
    return risks, rows, getattr(model, "fit_summary_", None), time.perf_counter() - start, model


def _in_order(model: Forecaster, panel: Panel, periods: np.ndarray, refit_every: int, coverages: list[float],
              on_step: Callable[[str, int], None] | None):
    """Every refit block of one model, in order, in this process: (risks, weekly rows, refit summaries, seconds)."""
    risks, rows, summaries, seconds, weeks = [], [], [], 0.0, 0
    for block in _blocks(periods, refit_every):
        block_risks, block_rows, summary, block_seconds, _ = _run_block(model, panel, block, coverages)
        risks += block_risks
        rows += block_rows
        summaries.append(summary)
        seconds += block_seconds
        weeks += len(block)
        if on_step:
            on_step(model.name, weeks)
    return risks, rows, summaries, seconds


def _blocks_on_workers(client, panel: Panel, models: list[Forecaster], periods: np.ndarray, refit_every: int,
                       coverages: list[float], on_step: Callable[[str, int], None] | None) -> dict:
    """The Dask engine: every (model, refit block) as a task on the workers, each fitting its own copy of the model
    (the fits of one block do not depend on another's: the same forecasts as the loop in order). The models passed in
    end fitted as the loop leaves them (on the last block). Returns name -> (risks, weekly rows, refit summaries,
    seconds)."""
    from distributed import as_completed

    from hotspot.models.base import named_clone

    blocks = _blocks(periods, refit_every)
    [panel_f] = client.scatter([panel], broadcast=True, hash=False)
    tasks, futures = {}, []
    for model in models:
        for b, block in enumerate(blocks):
            future = client.submit(_run_block, named_clone(model), panel_f, block, coverages, pure=False)
            tasks[future.key] = (model.name, b)
            futures.append(future)
    results: dict = {}
    steps: dict[str, int] = {}
    for future in as_completed(futures):
        name, b = tasks[future.key]
        results[(name, b)] = future.result()
        future.release()
        steps[name] = steps.get(name, 0) + len(blocks[b])
        if on_step:
            on_step(name, steps[name])
    out = {}
    for model in models:
        parts = [results[(model.name, b)] for b in range(len(blocks))]
        model.__dict__.update(parts[-1][4].__dict__)  # the caller's model, fitted on the last block
        out[model.name] = ([r for p in parts for r in p[0]], [row for p in parts for row in p[1]],
                           [p[2] for p in parts], sum(p[3] for p in parts))
    return out


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
