"""The one contract every forecaster honours, baselines included.

`fit(panel)` learns from the observed periods of a panel; `predict(panel)` returns the expected incident count of
every cell for the panel's next period (`panel.period_starts[-1]`). Backtests, tuning and audits call only these.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from hotspot.features.panel import Panel


@runtime_checkable
class Forecaster(Protocol):
    name: str

    def fit(self, panel: Panel) -> "Forecaster": ...

    def predict(self, panel: Panel) -> np.ndarray: ...


def check_panel(panel: Panel, min_periods: int = 1) -> None:
    """Reject a panel a forecaster cannot learn from, with a message that says what was expected."""
    if panel.n_periods < min_periods:
        raise ValueError(f"need at least {min_periods} observed period(s) before {panel.next_period_start.date()},"
                         f" the panel has {panel.n_periods}")
