"""Gradient-boosted forecaster (LightGBM, Poisson objective by default) on the panel's feature cube."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from features.panel import Panel
from models.base import check_panel


class LightGBMForecaster:
    """Fits on the feature rows of the most recent `train_periods` observed periods with full look-back.

    `features` restricts the model to a subset of the panel's features (by name), e.g. for ablation studies.
    """

    def __init__(self, params: dict | None = None, num_boost_round: int = 300, train_periods: int | None = 156,
                 features: list[str] | None = None, name: str = "lightgbm", zero_row_fraction: float = 1.0,
                 seed: int = 42):
        self.params = dict(params or {})
        self.zero_row_fraction = zero_row_fraction
        self.seed = seed
        self.num_boost_round = num_boost_round
        self.train_periods = train_periods
        self.features = list(features) if features is not None else None
        self.name = name

    def _columns(self, panel: Panel, names: tuple[str, ...] | list[str] | None) -> np.ndarray:
        """Indices of `names` (all features when None) in the panel; ValueError naming any that are missing."""
        if names is None:
            return np.arange(len(panel.feature_names))
        position = {n: i for i, n in enumerate(panel.feature_names)}
        missing = [n for n in names if n not in position]
        if missing:
            raise ValueError(f"the panel lacks the model's feature(s) {missing[:10]}"
                             f"{' and more' if len(missing) > 10 else ''} (was the model trained with another "
                             "[features] config?)")
        return np.array([position[n] for n in names])

    def _lgb_params(self) -> dict:
        params = {"objective": "poisson", "verbosity": -1, "deterministic": True, "force_row_wise": True}
        params.update(self.params)
        return params

    def training_window(self, panel: Panel) -> tuple[int, int]:
        """First and last+1 observed period used to fit."""
        end = panel.n_periods
        start = panel.min_history
        if self.train_periods is not None:
            start = max(start, end - self.train_periods)
        return start, end

    def fit(self, panel: Panel) -> "LightGBMForecaster":
        start, end = self.training_window(panel)
        check_panel(panel, min_periods=panel.min_history + 1)
        cols = self._columns(panel, self.features)
        F = panel.X.shape[2]
        X = panel.X[start:end].reshape(-1, F)
        if len(cols) < F:
            X = X[:, cols]
        y = panel.target[start:end].reshape(-1)
        weight = None
        if self.zero_row_fraction < 1.0:
            # keep every cell-week with incidents and a random share of the empty ones, weighted back up so the
            # Poisson mean stays unbiased; most cell-weeks are empty, so this is most of the fitting cost
            rng = np.random.default_rng(self.seed + end)
            keep = (y > 0) | (rng.random(len(y)) < self.zero_row_fraction)
            X, y = X[keep], y[keep]
            weight = np.where(y > 0, 1.0, 1.0 / self.zero_row_fraction)
        names = [panel.feature_names[i] for i in cols]
        data = lgb.Dataset(X, label=y, weight=weight, feature_name=names, free_raw_data=True)
        self.booster_ = lgb.train(self._lgb_params(), data, num_boost_round=self.num_boost_round)
        self.feature_names_ = tuple(names)
        self.train_periods_ = (panel.period_starts[start], panel.period_starts[end - 1])
        return self

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> "LightGBMForecaster":
        """Wrap a booster loaded from the model registry."""
        model = cls(features=booster.feature_name())
        model.booster_ = booster
        model.feature_names_ = tuple(booster.feature_name())
        return model

    def predict(self, panel: Panel) -> np.ndarray:
        if not hasattr(self, "booster_"):
            raise RuntimeError("LightGBMForecaster.predict called before fit")
        cols = self._columns(panel, self.feature_names_)
        return self.booster_.predict(panel.X_next[:, cols]).astype(np.float64)

    def gain_importance(self) -> dict[str, float]:
        """Total split gain of each feature in the fitted booster."""
        gains = self.booster_.feature_importance(importance_type="gain")
        return dict(zip(self.feature_names_, map(float, gains)))
