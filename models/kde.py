"""Kernel baselines on the grid: fixed-bandwidth kernel density and prospective hotspotting.

Both work on the panel's counts cube (incident counts per cell and period), so they honour the same contract as every
other forecaster and never see the period they forecast.
"""

from __future__ import annotations

import numpy as np

from hotspot.features.panel import Panel
from hotspot.features.spatial import gaussian_smooth
from hotspot.models.base import Forecaster, check_panel, family_features


class KernelDensity(Forecaster):
    """Gaussian kernel density of the last `weeks` periods' incidents (fixed bandwidth, metres), per period."""

    def __init__(self, bandwidth_m: float = 250.0, weeks: int = 52):
        self.bandwidth_m = bandwidth_m
        self.weeks = weeks

    def _default_name(self) -> str:
        return f"kde_{self.bandwidth_m:g}m"

    def fit(self, panel: Panel) -> KernelDensity:
        check_panel(panel)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        check_panel(panel)
        recent = panel.target[-self.weeks:].mean(axis=0, dtype=np.float64)
        # the smoothed surface keeps the total expected count of the cells (mass leaving the area is lost)
        return gaussian_smooth(panel.grid, recent, self.bandwidth_m)

    def reason_features(self, panel: Panel) -> list[str]:
        """The smoothed counts of the same bandwidth and window, else the panel's smoothed counts."""
        own = f"kde{self.bandwidth_m:g}m_w{self.weeks}"
        return [own] if own in panel.feature_names else family_features(panel, "spatial", "kde")


class ProspectiveHotspots(Forecaster):
    """Prospective hotspotting (Bowers, Johnson & Pease 2004) on the grid.

    Each past incident adds 1 / (1 + d) x 1 / (1 + w) to the cells within `bandwidth_cells` (d = distance in cells,
    w = whole weeks since the incident, up to `weeks`). Space and time weights are separable, so the score is one
    spatial correlation of the time-weighted counts.
    """

    def __init__(self, bandwidth_cells: int = 2, weeks: int = 8):
        self.bandwidth_cells = bandwidth_cells
        self.weeks = weeks

    def _default_name(self) -> str:
        return f"prospective_{self.bandwidth_cells}c{self.weeks}w"

    def fit(self, panel: Panel) -> ProspectiveHotspots:
        check_panel(panel)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        from scipy import ndimage

        check_panel(panel)
        recent = panel.target[-self.weeks:].astype(np.float64)  # oldest first
        age = np.arange(len(recent) - 1, -1, -1, dtype=np.float64)  # 0 = last observed week
        weighted = (recent / (1.0 + age)[:, None]).sum(axis=0)
        r = self.bandwidth_cells
        offsets = np.arange(-r, r + 1)
        dist = np.hypot(*np.meshgrid(offsets, offsets))
        kernel = np.where(dist <= r, 1.0 / (1.0 + dist), 0.0)
        raster = panel.grid.to_raster(weighted)
        score = panel.grid.from_raster(ndimage.correlate(raster, kernel, mode="constant", cval=0.0))
        # a score, not a count: scale it to the recent mean total so deviance and calibration stay comparable
        total = panel.target[-min(52, panel.n_periods):].sum(axis=1).mean()
        return score * (total / score.sum()) if score.sum() > 0 else np.full(len(score), total / len(score))

    def reason_features(self, panel: Panel) -> list[str]:
        """Recent incidents around the cell: the near-repeat counts, else the ring counts."""
        return family_features(panel, "near_repeat") or family_features(panel, "spatial", "ring")
