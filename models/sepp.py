"""Grid self-exciting point process (ETAS/SEPP), the method of the PredPol field trials (Mohler et al. 2015).

In each cell c the intensity is lambda_c(t) = mu_c + theta * sum_{t_i < t, i in c} omega * exp(-omega (t - t_i)):
a constant background rate per cell plus exponentially decaying self-excitation. Parameters are fitted by
expectation-maximisation over the incidents' exact times (days). The E-step needs, for every incident, the earlier
incidents of its own cell; with the incidents sorted by cell and time these are the previous k rows for k = 1, 2, ...,
so the step is a loop over lags of whole-array operations, cut off where exp(-omega * dt) is negligible.
The forecast is the intensity integrated over the forecast period.
"""

from __future__ import annotations

import numpy as np

from hotspot.features.panel import Panel
from hotspot.models.base import Forecaster, check_panel, family_features


def _pairs(times: np.ndarray, cells: np.ndarray, max_lag_days: float, max_pairs_per_event: int,
           min_gap_days: float | None = None):
    """(child, parent, dt) for every ordered pair of incidents of one cell less than `max_lag_days` apart (and more
    than `min_gap_days`, when given)."""
    order = np.lexsort((times, cells))
    t, c = times[order], cells[order]
    child, parent, dt = [], [], []
    for k in range(1, max_pairs_per_event + 1):
        same = c[k:] == c[:-k]
        gap = t[k:] - t[:-k]
        near = same & (gap < max_lag_days)
        if not near.any():
            break
        ok = near if min_gap_days is None else near & (gap > min_gap_days)
        idx = np.flatnonzero(ok)
        child.append(order[idx + k])
        parent.append(order[idx])
        dt.append(gap[idx])
    if not child:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return np.concatenate(child), np.concatenate(parent), np.concatenate(dt)


def fit_sepp(times: np.ndarray, cells: np.ndarray, n_cells: int, horizon_days: float, *, theta0: float = 0.2,
             omega0: float = 0.1, iterations: int = 50, tol: float = 1e-5, max_lag_days: float | None = None,
             max_pairs_per_event: int = 400, min_gap_days: float | None = None) -> tuple[np.ndarray, float, float, int]:
    """EM for the grid ETAS model on [0, horizon_days]; returns (mu per cell per day, theta, omega, iterations).

    `min_gap_days`: pairs at most this far apart are not parent and child. Records of one cell at the same recorded
    time (several offences of one event, times rounded to the hour) otherwise draw the decay rate omega towards
    infinity: on Toronto's data it ends near 1e14 per day, the excitation then covers only those coincident records
    and the forecast is the background rate (benchmarks/sepp_fit.py measures both)."""
    times = np.asarray(times, dtype=np.float64)
    cells = np.asarray(cells, dtype=np.int64)
    n = len(times)
    counts = np.bincount(cells, minlength=n_cells).astype(np.float64)
    mu = np.maximum(counts, 0.5) / horizon_days
    theta, omega = theta0, omega0
    lag = max_lag_days if max_lag_days is not None else min(horizon_days, 365.0)
    child, parent, dt = _pairs(times, cells, lag, max_pairs_per_event, min_gap_days)
    it = 0
    for it in range(1, iterations + 1):  # noqa: B007 (the count is returned: iterations run)
        trig = theta * omega * np.exp(-omega * dt)  # (pairs,)
        lam = mu[cells] + np.bincount(child, weights=trig, minlength=n)  # intensity at each incident
        p_trig = trig / lam[child]
        p_back = mu[cells] / lam
        # M-step; the compensator's edge term (offspring beyond the horizon) enters theta's denominator
        remaining = 1.0 - np.exp(-omega * (horizon_days - times))
        new_mu = np.bincount(cells, weights=p_back, minlength=n_cells) / horizon_days
        new_theta = p_trig.sum() / max(remaining.sum(), 1e-12)
        new_omega = p_trig.sum() / max((p_trig * dt).sum(), 1e-12)
        change = max(abs(new_theta - theta), abs(new_omega - omega) / max(omega, 1e-12))
        mu, theta, omega = np.maximum(new_mu, 1e-9 / horizon_days), min(new_theta, 0.99), new_omega
        if change < tol:
            break
    return mu, float(theta), float(omega), it


class SEPP(Forecaster):
    """Grid ETAS forecaster: fits by EM on the last `train_days` of incident times; risk = expected count in the
    forecast period."""

    def __init__(self, train_days: float = 730.0, iterations: int = 50, max_lag_days: float = 180.0,
                 min_gap_days: float | None = None):
        self.train_days = train_days
        self.iterations = iterations
        self.max_lag_days = max_lag_days
        self.min_gap_days = min_gap_days

    def _default_name(self) -> str:
        return "sepp"

    def _window(self, panel: Panel) -> tuple[np.ndarray, np.ndarray, float, float]:
        if panel.event_days is None or panel.event_cell is None:
            raise ValueError("the SEPP model needs the panel's incident times (panel.event_days, panel.event_cell)")
        end = panel.days_since_start(panel.next_period_start)
        start = max(0.0, end - self.train_days)
        keep = panel.event_days >= start
        return panel.event_days[keep] - start, panel.event_cell[keep], end - start, start

    def fit(self, panel: Panel) -> SEPP:
        check_panel(panel)
        times, cells, horizon, _ = self._window(panel)
        self.mu_, self.theta_, self.omega_, self.iterations_ = fit_sepp(
            times, cells, panel.grid.n_cells, horizon, iterations=self.iterations, max_lag_days=self.max_lag_days,
            min_gap_days=self.min_gap_days)
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        if not hasattr(self, "mu_"):
            raise RuntimeError("SEPP.predict called before fit")
        check_panel(panel)
        times, cells, horizon, _ = self._window(panel)
        length = float((panel.period_starts[-1] - panel.period_starts[-2]) / np.timedelta64(1, "D"))
        # integral over [T, T + length) of the excitation left by every past incident of the cell
        age = horizon - times
        carry = self.theta_ * (np.exp(-self.omega_ * age) - np.exp(-self.omega_ * (age + length)))
        return self.mu_ * length + np.bincount(cells, weights=carry, minlength=panel.grid.n_cells)

    def reason_features(self, panel: Panel) -> list[str]:
        """The cell's own past (its background rate and the excitation of its recent incidents)."""
        return family_features(panel, "temporal")


def simulate_sepp(mu: np.ndarray, theta: float, omega: float, horizon_days: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the grid ETAS model by its branching structure (for tests of parameter recovery)."""
    times, cells = [], []
    for c, rate in enumerate(mu):
        generation = rng.uniform(0, horizon_days, rng.poisson(rate * horizon_days))
        while len(generation):
            times.append(generation)
            cells.append(np.full(len(generation), c))
            n_children = rng.poisson(theta, len(generation))
            parents = np.repeat(generation, n_children)
            children = parents + rng.exponential(1.0 / omega, len(parents))
            generation = children[children < horizon_days]
    t, cell = np.concatenate(times), np.concatenate(cells)
    order = np.argsort(t)
    return t[order], cell[order].astype(np.int32)
