"""Risk Terrain Modeling-style baseline: Poisson regression of each cell's recent rate on its context layers.

It uses only the panel's static context features (family `context`), so it says how much of the map the
environment alone explains; scikit-learn's PoissonRegressor, features log-scaled and standardised.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import PoissonRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from hotspot.features.panel import Panel
from hotspot.models.base import Forecaster, check_panel, family_features


class RiskTerrain(Forecaster):
    """Poisson regression of each cell's mean count over the last `weeks` periods on its context layers (L2 `alpha`)."""

    def __init__(self, weeks: int = 52, alpha: float = 1e-3):
        self.weeks = weeks
        self.alpha = alpha

    def _default_name(self) -> str:
        return "rtm"

    @staticmethod
    def context_columns(panel: Panel) -> np.ndarray:
        cols = [panel.feature_names.index(n) for n in family_features(panel, "context")]
        if not cols:
            raise ValueError("the RTM baseline needs context-layer features: add [[context]] layers to the config")
        return np.array(cols)

    def _design(self, panel: Panel) -> np.ndarray:
        X = panel.X_next[:, self.columns_].astype(np.float64)
        fill = np.nanmedian(X, axis=0) if np.isfinite(X).any() else 0.0
        # a per-column fill: numpy broadcasts an array `nan=`, though its stubs allow only a float
        return np.nan_to_num(X, nan=fill)  # type: ignore[arg-type]

    def fit(self, panel: Panel) -> RiskTerrain:
        check_panel(panel)
        self.columns_ = self.context_columns(panel)
        y = panel.target[-self.weeks:].mean(axis=0, dtype=np.float64)
        self.model_ = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                                    PoissonRegressor(alpha=self.alpha, max_iter=1000))
        self.model_.fit(self._design(panel), y)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("RiskTerrain.predict called before fit")
        return self.model_.predict(self._design(panel))

    def explain(self, panel: Panel) -> tuple[list[str], np.ndarray] | None:
        """Exact: the regression's log-linear terms, coefficient x (scaled layer value - its mean over the cells),
        one per context feature."""
        if not hasattr(self, "model_"):
            raise RuntimeError("RiskTerrain.explain called before fit")
        z = self.model_[:-1].transform(self._design(panel))
        terms = self.model_[-1].coef_ * (z - z.mean(axis=0))
        return [panel.feature_names[i] for i in self.columns_], terms
