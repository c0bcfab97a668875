"""The one contract every forecaster honours, baselines included.

`fit(panel)` learns from the observed periods of a panel; `predict(panel)` returns the expected incident count of
every cell for the panel's next period (`panel.period_starts[-1]`). Backtests, tuning and audits call only these.

Forecasters are scikit-learn estimators: constructor arguments are stored unchanged under their own names and
`__init__` does nothing else, so `get_params`, `set_params` and `sklearn.base.clone` work; what `fit` learns lives in
attributes ending in `_`. They take a `Panel` rather than an (X, y) pair, so they are not sklearn models otherwise.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import numpy as np
from sklearn.base import BaseEstimator

from hotspot.features.panel import Panel


class Forecaster(BaseEstimator, metaclass=ABCMeta):
    """Base of every forecaster: `fit(panel) -> self`, `predict(panel) -> risk per cell`, and a `name`."""

    @property
    def name(self) -> str:
        """The model's label in results: the one set on it, else one derived from its parameters.

        Derived on access (not stored by `__init__`) so that `set_params` and `clone` keep it in step."""
        given = self.__dict__.get("_name")
        return given if given is not None else self._default_name()

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["_name"] = value

    def _default_name(self) -> str:
        return type(self).__name__.lower()

    @abstractmethod
    def fit(self, panel: Panel) -> Forecaster:
        """Learn from the panel's observed periods; return self."""

    @abstractmethod
    def predict(self, panel: Panel) -> np.ndarray:
        """Expected incident count of every cell in the panel's next period."""


def check_panel(panel: Panel, min_periods: int = 1) -> None:
    """Reject a panel a forecaster cannot learn from, with a message that says what was expected."""
    if panel.n_periods < min_periods:
        raise ValueError(f"need at least {min_periods} observed period(s) before {panel.next_period_start.date()},"
                         f" the panel has {panel.n_periods}")


def named_clone(model: Forecaster) -> Forecaster:
    """An unfitted copy of a forecaster that keeps the name it was given (clone rebuilds from parameters only)."""
    from sklearn.base import clone

    copy = clone(model)
    copy.name = model.name
    return copy
