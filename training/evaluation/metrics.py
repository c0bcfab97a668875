"""Accuracy metrics, one definition each, used by every report (see DESIGN.md, Metrics).

Ties in risk are resolved by their expectation under a random order: when the top-k boundary cuts through cells of
equal risk, each tied cell is credited with the share of the remaining slots. A flat forecast therefore scores
exactly the chance level (hit rate = coverage, PAI = 1) and earns no credit for an arbitrary order.
"""

from __future__ import annotations

import numpy as np


def n_flagged(n_cells: int, coverage: float) -> int:
    """Number of cells in the top `coverage` share of the area (at least one)."""
    return max(1, int(round(coverage * n_cells)))


def _tie_split(risk: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along the last axis (k < cells): cells above the k-th largest risk, cells tied with it, and the slots left
    for the tied ones (keepdims). The one place the top-k boundary and its ties are decided."""
    C = risk.shape[-1]
    threshold = np.partition(risk, C - k, axis=-1)[..., C - k: C - k + 1]  # k-th largest, kept as an axis
    above, tied = risk > threshold, risk == threshold
    return above, tied, k - above.sum(-1, keepdims=True)


def flag_weights(risk: np.ndarray, k: int) -> np.ndarray:
    """Share of each cell that is flagged, (..., C): 1 above the k-th largest risk, tied cells share the rest."""
    if k >= risk.shape[-1]:
        return np.ones_like(risk, dtype=float)
    above, tied, slots = _tie_split(risk, k)
    return above + tied * (slots / tied.sum(-1, keepdims=True))


def hits_at(risk: np.ndarray, observed: np.ndarray, k: int) -> float:
    """Expected incidents caught by the k highest-risk cells, ties shared out evenly (= flag_weights . observed)."""
    risk = np.asarray(risk, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    if k >= len(risk):
        return float(observed.sum())
    above, tied, slots = _tie_split(risk, k)
    # summed per group rather than as a dot product with flag_weights: the same value, in the order the published
    # figures were computed, so they stay identical to the last bit
    return float(observed[above].sum() + observed[tied].sum() * int(slots[0]) / int(tied.sum()))


def best_hits_at(observed: np.ndarray, k: int) -> float:
    """Most incidents any choice of k cells could have caught."""
    observed = np.asarray(observed, dtype=np.float64)
    k = min(k, len(observed))
    return float(np.sort(observed)[::-1][:k].sum())


def hit_rate_at(risk: np.ndarray, observed: np.ndarray, coverage: float) -> float:
    """Share of the week's recorded incidents that fall in the flagged cells (ties shared)."""
    total = float(np.sum(observed))
    if total == 0:
        return float("nan")
    return hits_at(risk, observed, n_flagged(len(risk), coverage)) / total


def pai_at(risk: np.ndarray, observed: np.ndarray, coverage: float) -> float:
    """Predictive accuracy index: hit rate / share of the area flagged (Chainey et al. 2008)."""
    k = n_flagged(len(risk), coverage)
    return hit_rate_at(risk, observed, coverage) / (k / len(risk))


def pei_at(risk: np.ndarray, observed: np.ndarray, coverage: float) -> float:
    """Predictive efficiency index: hits / the most hits possible with the same area (Hunt 2016)."""
    k = n_flagged(len(risk), coverage)
    best = best_hits_at(observed, k)
    return float("nan") if best == 0 else hits_at(risk, observed, k) / best


def poisson_deviance(risk: np.ndarray, observed: np.ndarray, floor: float = 1e-9) -> float:
    """Mean Poisson deviance per cell (lower is better); risk is floored so a zero forecast stays finite."""
    mu = np.maximum(np.asarray(risk, dtype=np.float64), floor)
    y = np.asarray(observed, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(np.mean(2.0 * (term - (y - mu))))


def coverage_label(coverage: float) -> str:
    """A coverage as the label results use, e.g. 0.01 -> "1%"."""
    return f"{coverage * 100:g}%"


def week_metrics(risk: np.ndarray, observed: np.ndarray, coverages: list[float]) -> dict[str, float]:
    """Every per-week metric for one forecast: hit rate, PAI and PEI at each coverage, and Poisson deviance."""
    out: dict[str, float] = {"incidents": float(np.sum(observed)), "poisson_deviance": poisson_deviance(risk, observed)}
    for c in coverages:
        label = coverage_label(c)
        out[f"hit_rate@{label}"] = hit_rate_at(risk, observed, c)
        out[f"pai@{label}"] = pai_at(risk, observed, c)
        out[f"pei@{label}"] = pei_at(risk, observed, c)
    return out
