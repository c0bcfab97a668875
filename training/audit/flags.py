"""Which cells a forecast flags each week: the forecasts of every model for the audited weeks and the top-k cells.
Used by the audit and by the feedback-loop, parity and sensitivity analyses that the audit runs. The expected-value
weights that share the last slots among tied cells are `flag_weights` of training.evaluation.metrics, the rule the
accuracy metrics use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NO_REFERENCE_FLAGS = "no flags in the reference group"  # a disparate-impact status (see training/audit/run.py)


@dataclass(frozen=True, eq=False)
class Forecasts:
    models: list[str]
    weeks: list[str]
    risk: np.ndarray  # (M, W, C)
    observed: np.ndarray  # (W, C)


def forecasts_from_predictions(predictions: pd.DataFrame, cell_id: np.ndarray) -> Forecasts:
    """Arrays of risk per model, week and cell (cells in grid order) from a backtest's predictions table."""
    models = [str(m) for m in pd.unique(predictions["model"].astype(str))]
    weeks = sorted(str(w) for w in pd.unique(predictions["period_start"].astype(str)))
    week_pos = {w: i for i, w in enumerate(weeks)}
    cell_pos = pd.Index(cell_id).get_indexer(predictions["cell_id"])
    if (cell_pos < 0).any():
        raise ValueError("the predictions hold cells that are not in the grid")
    W, C = len(weeks), len(cell_id)
    risk = np.full((len(models), W, C), np.nan)
    observed = np.zeros((W, C))
    m = pd.Index(models).get_indexer(predictions["model"].astype(str))
    w = predictions["period_start"].astype(str).map(week_pos).to_numpy()
    risk[m, w, cell_pos] = predictions["risk"].to_numpy(float)
    observed[w, cell_pos] = predictions["observed"].to_numpy(float)
    if np.isnan(risk).any():
        raise ValueError("the predictions do not cover every model, week and cell")
    return Forecasts(models, weeks, risk, observed)


def top_k(risk: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k highest-risk cells of each row, ties broken by cell order.

    A hard choice of k cells (for rankings that need one, e.g. parity re-ranking); shares of tied cells are
    metrics.flag_weights.
    """
    order = np.argsort(-risk, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(risk.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask
