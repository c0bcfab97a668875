"""Baselines on past counts alone: every accuracy claim is measured against these on the same weeks."""

from __future__ import annotations

import numpy as np

from hotspot.features.panel import Panel
from hotspot.models.base import Forecaster, check_panel, family_features


class RecentCounts(Forecaster):
    """Mean count per period over the last `weeks` periods (the classic 'hot in the last N weeks' map)."""

    def __init__(self, weeks: int = 52):
        self.weeks = weeks

    def _default_name(self) -> str:
        return f"naive_{self.weeks}w"

    def fit(self, panel: Panel) -> RecentCounts:
        check_panel(panel)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        check_panel(panel)
        return panel.target[-self.weeks:].mean(axis=0, dtype=np.float64)

    def reason_features(self, panel: Panel) -> list[str]:
        """The window count it averages (the cell's own past when the panel has no such window)."""
        own = f"count_w{self.weeks}"
        return [own] if own in panel.feature_names else family_features(panel, "temporal")


class HistoryCounts(Forecaster):
    """Mean count per period over all observed history."""

    def _default_name(self) -> str:
        return "history"

    def fit(self, panel: Panel) -> HistoryCounts:
        check_panel(panel)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        check_panel(panel)
        return panel.target.mean(axis=0, dtype=np.float64)

    def reason_features(self, panel: Panel) -> list[str]:
        """The all-history rate (the cell's own past when the panel lacks it)."""
        return ["rate_all"] if "rate_all" in panel.feature_names else family_features(panel, "temporal")


class EWMCounts(Forecaster):
    """Exponentially weighted mean count per period; weights halve every `halflife` periods."""

    def __init__(self, halflife: float = 26.0):
        self.halflife = halflife

    def _default_name(self) -> str:
        return f"ewm_hl{self.halflife:g}"

    def fit(self, panel: Panel) -> EWMCounts:
        check_panel(panel)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        check_panel(panel)
        age = np.arange(panel.n_periods - 1, -1, -1, dtype=np.float64)  # 0 = the last observed period
        weights = 0.5 ** (age / self.halflife)
        return (weights @ panel.target.astype(np.float64)) / weights.sum()

    def reason_features(self, panel: Panel) -> list[str]:
        """The weighted mean of the same half-life (the cell's own past when the panel lacks it)."""
        own = f"ewm_hl{self.halflife:g}"
        return [own] if own in panel.feature_names else family_features(panel, "temporal")


class FlatRate(Forecaster):
    """Every cell the area's mean count per cell over the last `weeks` periods: no ranking at all (PAI about 1, what
    patrolling cells at random would catch). A floor for reports and the forecast a broken model degrades to; never
    among the baselines a forecast is compared with."""

    def __init__(self, weeks: int = 52):
        self.weeks = weeks

    def _default_name(self) -> str:
        return "flat"

    def fit(self, panel: Panel) -> FlatRate:
        check_panel(panel)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        check_panel(panel)
        return np.full(panel.grid.n_cells, panel.target[-self.weeks:].mean(dtype=np.float64))
