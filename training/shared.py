"""Fits shared between the models of one run: a fit on the same weeks is made once, whoever asks for it.

A backtest that runs `auto` beside its candidates fits every candidate twice on the same weeks: once for the
candidate's own column, once inside `auto`'s rolling validation (whose blocks, counted back from each refit, start at
the same weeks as the backtest's refits when both refit every K weeks). Wrapping each model in `SharedFit` with one
`FitStore` makes the second fit a look-up: a fit is keyed by the model's class and parameters and by the panel it is
fitted on (the same underlying array, the same number of observed periods: `Panel.until` views of one panel), and a
forecast by the fit and the panel it forecasts from. Forecasters are deterministic given their parameters and data
(LightGBM is seeded, `deterministic = true`), so a shared fit is the fit that would have been made.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from hotspot.features.panel import Panel
from hotspot.models.base import Forecaster


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


class FitStore:
    """Fitted models and their forecasts, by model and panel prefix; shared (never copied) by clones of SharedFit."""

    def __init__(self) -> None:
        self.fits: dict[tuple, Forecaster] = {}
        self.forecasts: dict[tuple, np.ndarray] = {}
        self.roots: dict[int, np.ndarray] = {}  # keeps each panel's array alive, so its id is never reused
        self.fitted = 0
        self.reused = 0

    def __deepcopy__(self, memo: dict) -> FitStore:
        return self  # sklearn's clone deep-copies parameters it does not know; the store must stay one object

    def __repr__(self) -> str:
        return "FitStore()"

    def panel_key(self, panel: Panel) -> tuple:
        """The panel as a prefix of an array: (id of the array, offset of its first row, observed periods)."""
        root = _root(panel.target)
        self.roots.setdefault(id(root), root)
        offset = panel.target.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        return id(root), offset, panel.n_periods


def model_key(model: Forecaster) -> tuple:
    """A model's class and parameters (its name left out: two names for one model share their fits)."""
    params = {k: v for k, v in model.get_params(deep=False).items() if k != "name"}
    return type(model).__qualname__, repr(sorted(params.items()))


class SharedFit(Forecaster):
    """`model`, with its fits and forecasts shared through `store` by every SharedFit of the same model."""

    def __init__(self, model: Forecaster, store: FitStore):
        self.model = model
        self.store = store

    def _default_name(self) -> str:
        return self.model.name

    def fit(self, panel: Panel) -> SharedFit:
        """The stored fit of this model on these weeks, made now when there is none."""
        key = (model_key(self.model), self.store.panel_key(panel))
        fitted = self.store.fits.get(key)
        if fitted is None:
            fitted = clone(self.model).fit(panel)
            self.store.fits[key] = fitted
            self.store.fitted += 1
        else:
            self.store.reused += 1
        self.model_, self.key_ = fitted, key
        summary = getattr(fitted, "fit_summary_", None)
        if summary is not None:
            self.fit_summary_ = summary
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        """The fitted model's forecast for the panel's next period (computed once per fit and panel)."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{self.name}: predict called before fit")
        key = (self.key_, self.store.panel_key(panel))
        risk = self.store.forecasts.get(key)
        if risk is None:
            risk = np.asarray(self.model_.predict(panel), dtype=np.float64)
            risk.flags.writeable = False  # shared: a caller that changes it in place would change it for all
            self.store.forecasts[key] = risk
        return risk
