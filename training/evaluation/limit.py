"""The clairvoyant limit: how well a ranking could do that knew each cell's long-run rate (DESIGN.md, Metrics).

For each backtest week t, each cell's "risk" is its mean count of the label over the `weeks` periods before t and
the `weeks` periods after t, week t itself left out. It uses future data, so it is a reference for the headroom
above the baselines, never a forecast: it is not a Forecaster, it is never in `make_models`, in the predictions of
the models, or in promotion. What is left between it and a perfect ranking is the week's own noise, which no
forecaster can rank; a model beats it only by predicting short-term departures from the long-run rate.

The limit needs `min_after` recorded periods after every backtest week: a backtest at the very end of the data has
only a one-sided, shorter window there, so it would be a different (weaker) reference. Rather than a biased number
the limit is then unavailable, with a sentence that says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hotspot.features.panel import Panel

LIMIT_NAME = "clairvoyant limit"
LIMIT_LABEL = "reference: uses future data, not a forecast"


@dataclass(frozen=True)
class ClairvoyantLimit:
    periods: np.ndarray  # the backtest's period indices
    risk: np.ndarray  # (len(periods), C) mean weekly count around each period, the period left out
    weeks: int  # periods averaged on each side
    min_after: int
    weeks_after: int  # recorded periods after the last backtest week

    @property
    def available(self) -> bool:
        """Whether every backtest week has at least `min_after` recorded periods after it."""
        return self.weeks_after >= self.min_after

    @property
    def note(self) -> str:
        """What the limit is, or why the report shows none."""
        if not self.available:
            return (f"The {LIMIT_NAME} needs at least {self.min_after} recorded weeks after each backtest week; these "
                    f"weeks end {self.weeks_after} week{'s' * (self.weeks_after != 1)} before the end of the data, "
                    f"so no limit is shown (set [backtest] end, or --end, earlier to see it).")
        return (f"The {LIMIT_NAME} ranks cells by their mean weekly count over the {self.weeks} weeks before and the "
                f"{self.weeks} weeks after each backtest week (the week itself left out). It uses future data, so it "
                f"is a reference, not a forecast: what separates it from a perfect ranking is the week's own noise.")


def clairvoyant_limit(target: np.ndarray, periods: np.ndarray, weeks: int = 52, min_after: int = 26
                      ) -> ClairvoyantLimit:
    """Each cell's mean count over the `weeks` periods on each side of every backtest period, that period left out.

    target: (T, C) counts of the label per period and cell (`Panel.target`); periods: indices into its first axis.
    At the edges of the data the window holds only the periods recorded there.
    """
    target = np.asarray(target, dtype=np.float64)
    periods = np.asarray(periods, dtype=int)
    T = target.shape[0]
    if len(periods) == 0 or periods.min() < 0 or periods.max() >= T:
        raise ValueError(f"backtest period indices must lie in 0..{T - 1}, got {periods.tolist()}")
    if weeks < 1 or min_after < 0:
        raise ValueError(f"limit weeks must be >= 1 and min_after >= 0, got {weeks} and {min_after}")
    cum = np.concatenate([np.zeros((1, target.shape[1])), np.cumsum(target, axis=0)])  # cum[i] = sum of rows < i
    lo, hi = np.maximum(periods - weeks, 0), np.minimum(periods + 1 + weeks, T)
    total = (cum[periods] - cum[lo]) + (cum[hi] - cum[periods + 1])
    n = (periods - lo) + (hi - periods - 1)
    risk = total / np.maximum(n, 1)[:, None]
    return ClairvoyantLimit(periods=periods, risk=risk, weeks=weeks, min_after=min_after,
                            weeks_after=int(T - 1 - periods.max()))


def panel_limit(panel: Panel, periods: np.ndarray, weeks: int = 52, min_after: int = 26) -> ClairvoyantLimit:
    """The clairvoyant limit of a panel's label over the backtest periods."""
    return clairvoyant_limit(panel.target, periods, weeks, min_after)


def limit_predictions(panel: Panel, limit: ClairvoyantLimit) -> pd.DataFrame:
    """The limit as a table with the columns of predictions.parquet (model = "clairvoyant limit")."""
    grid, C = panel.grid, panel.grid.n_cells
    P = len(limit.periods)
    frame = pd.DataFrame({
        "period_start": np.repeat([panel.period_starts[t].date() for t in limit.periods], C),
        "cell_id": np.tile(grid.cell_id, P), "x": np.tile(grid.x, P), "y": np.tile(grid.y, P),
        "lon": np.tile(grid.lon, P), "lat": np.tile(grid.lat, P), "risk": limit.risk.reshape(-1),
        "observed": panel.target[limit.periods].reshape(-1).astype(np.int32), "model": LIMIT_NAME,
    })  # the columns of backtest.PREDICTION_COLUMNS, in order (not imported: the backtest's plots import this)
    frame["model"] = frame["model"].astype("category")
    return frame
