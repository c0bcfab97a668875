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

    def reason_features(self, panel: Panel) -> list[str]:
        """The panel's features that carry the evidence this forecaster reads (a 52-week count reads `count_w52`):
        what its reasons are told from. Empty by default (no reasons)."""
        return []

    def explain(self, panel: Panel) -> tuple[list[str], np.ndarray] | None:
        """Per-cell contributions to the log of the forecast, by feature: (feature names, (C, F) array), or None
        when the forecaster cannot say. By default the forecast's log ratio to the area's mean cell, shared equally
        among its `reason_features` (a count baseline's one piece of evidence is the count it reads); LightGBM
        gives its own TreeSHAP values, a blend its parts' contributions weighted by their share of each cell."""
        names = [n for n in self.reason_features(panel) if n in panel.feature_names]
        if not names:
            return None
        ratio = log_ratio(np.asarray(self.predict(panel), dtype=np.float64))
        return names, np.repeat(ratio[:, None] / len(names), len(names), axis=1)


def log_ratio(risk: np.ndarray) -> np.ndarray:
    """log(risk / the mean cell's risk), with a floor of a thousandth of the mean so that a cell forecast at zero
    gets a large negative value rather than minus infinity."""
    mean = float(np.mean(risk)) if len(risk) else 0.0
    if not mean > 0:
        return np.zeros(len(risk))
    return np.log(np.maximum(risk, 1e-3 * mean) / mean)


def family_features(panel: Panel, family: str, prefix: str = "") -> list[str]:
    """The panel's features of one family (whose names start with `prefix`), in panel order."""
    return [n for n in panel.feature_names if panel.feature_families.get(n) == family and n.startswith(prefix)]


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
