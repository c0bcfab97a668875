"""Gradient-boosted forecaster (LightGBM, Poisson objective by default) on the panel's feature cube."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from features.panel import Panel
from models.base import check_panel


class LightGBMForecaster:
    """Fits on the feature rows of the most recent `train_periods` observed periods with full look-back."""

    name = "lightgbm"

    def __init__(self, params: dict | None = None, num_boost_round: int = 300, train_periods: int | None = 156):
        self.params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.train_periods = train_periods

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
        F = panel.X.shape[2]
        X = panel.X[start:end].reshape(-1, F)
        y = panel.target[start:end].reshape(-1)
        data = lgb.Dataset(X, label=y, feature_name=list(panel.feature_names), free_raw_data=True)
        self.booster_ = lgb.train(self._lgb_params(), data, num_boost_round=self.num_boost_round)
        self.feature_names_ = tuple(panel.feature_names)
        self.train_periods_ = (panel.period_starts[start], panel.period_starts[end - 1])
        return self

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> "LightGBMForecaster":
        """Wrap a booster loaded from the model registry."""
        model = cls()
        model.booster_ = booster
        model.feature_names_ = tuple(booster.feature_name())
        return model

    def predict(self, panel: Panel) -> np.ndarray:
        if not hasattr(self, "booster_"):
            raise RuntimeError("LightGBMForecaster.predict called before fit")
        if tuple(panel.feature_names) != self.feature_names_:
            missing = sorted(set(self.feature_names_) - set(panel.feature_names))
            extra = sorted(set(panel.feature_names) - set(self.feature_names_))
            raise ValueError(f"the panel's features differ from the model's: missing {missing}, unexpected {extra}"
                             " (was the model trained with another [features] config?)")
        return self.booster_.predict(panel.X_next).astype(np.float64)
