"""Evaluation over a backtest's predictions table (the contract file): curves, calibration, stability, intervals.

Everything here is computed from `predictions.parquet` alone (period_start, cell_id, risk, observed, model), so any
tool can recompute it. Definitions (one each, used by every report):
- hit-rate curve: hit rate at every coverage from one cell to all cells, ties shared by expectation;
- PEI* (Joshi et al. 2021): PAI / PAI*, where PAI* is the PAI of the model's own hits packed into the smallest
  area that could hold them (the fewest highest-count cells whose recorded counts reach the hits), so PEI* = a*/a.
  PEI asks how many more incidents the same area could have caught; PEI* asks how much less area the same catch
  needed. They differ whenever the flagged cells' incidents could have been caught by fewer, busier cells;
- calibration: mean forecast and mean observed count per risk decile, pooled over weeks;
- rank stability: Jaccard overlap of the flagged top-c cells between consecutive weeks;
- intervals: percentile bootstrap over weeks (scipy.stats.bootstrap, seeded); paired comparison = bootstrap of the
  mean weekly difference. Every bootstrap interval of the project (reports, promotion, ablation, audit) is made here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from hotspot.training.evaluation.metrics import hits_at, n_flagged

# One interval method everywhere: the percentile bootstrap. BCa would correct skew, but it needs a jackknife that is
# erratic on the 8-26 weeks a backtest or a promotion has, gives NaN on a degenerate distribution, and cannot run on the
# audit's ratios, which are undefined (0/0) in some resamples; the percentile interval handles all three the same way.
# Seeded with rng=default_rng(seed), scipy draws the same resampled weeks the hand-written resampling before it did.
BOOTSTRAP_METHOD = "percentile"
CURVE_COVERAGES = np.round(np.concatenate([np.arange(0.001, 0.01, 0.001), np.arange(0.01, 0.2001, 0.005)]), 4)


def pei_star_at(risk: np.ndarray, observed: np.ndarray, coverage: float) -> float:
    """PEI* = PAI / PAI* = a*/a: the fewest cells that could hold the model's hits over the cells it flagged."""
    observed = np.asarray(observed, dtype=np.float64)
    k = n_flagged(len(risk), coverage)
    if float(observed.sum()) == 0:
        return float("nan")
    hits = hits_at(risk, observed, k)
    if hits == 0:
        return 0.0  # nothing caught: no area was needed for it, and PAI is 0 as well
    reach = np.cumsum(np.sort(observed)[::-1])
    # hits are fractional when ties are shared; the tolerance keeps a sum that equals them from missing by a bit
    smallest = int(np.searchsorted(reach, hits - 1e-9 * max(1.0, hits), side="left")) + 1
    return min(smallest, k) / k


def weeks_of(predictions: pd.DataFrame, model: str) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(week, cell_id, risk, observed) per week of one model, cells in one order."""
    sub = predictions[predictions["model"].astype(str) == model].sort_values(["period_start", "cell_id"])
    return [(str(week), g["cell_id"].to_numpy(), g["risk"].to_numpy(float), g["observed"].to_numpy(float))
            for week, g in sub.groupby("period_start", sort=True)]


def hit_rate_curve(weeks, coverages=CURVE_COVERAGES) -> pd.DataFrame:
    """The mean share of incidents in the flagged cells at each coverage, over the weeks."""
    rows = []
    for c in coverages:
        rates = []
        for _, _, risk, obs in weeks:
            total = obs.sum()
            rates.append(np.nan if total == 0 else hits_at(risk, obs, n_flagged(len(risk), c)) / total)
        rows.append({"coverage": float(c), "hit_rate": float(np.nanmean(rates))})
    return pd.DataFrame(rows)


def calibration(weeks, bins: int = 10) -> pd.DataFrame:
    """Mean forecast and mean recorded count per decile of forecast risk."""
    risk = np.concatenate([w[2] for w in weeks])
    obs = np.concatenate([w[3] for w in weeks])
    order = pd.Series(risk).rank(method="first").to_numpy() - 1  # 0 .. n-1, ties in order of appearance
    decile = (order * bins // len(risk)).astype(int)
    frame = pd.DataFrame({"decile": decile + 1, "forecast": risk, "observed": obs})
    return frame.groupby("decile").agg(forecast=("forecast", "mean"), observed=("observed", "mean"),
                                       cell_weeks=("observed", "size")).reset_index()


def rank_stability(weeks, coverage: float = 0.01) -> float:
    """Mean Jaccard overlap of the flagged cells between consecutive weeks (1 = the same cells every week)."""
    flagged = []
    for _, cells, risk, _ in weeks:
        k = n_flagged(len(risk), coverage)
        flagged.append(set(cells[np.argsort(-risk, kind="stable")[:k]].tolist()))
    overlaps = [len(a & b) / len(a | b) for a, b in zip(flagged, flagged[1:])]
    return float(np.mean(overlaps)) if overlaps else float("nan")


def bootstrap_interval(data, statistic, reps: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of `statistic(*data, axis=-1)`, the samples' rows (weeks) resampled together."""
    with warnings.catch_warnings():  # a NaN interval is expected where some resamples are undefined; redone below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(data, statistic, n_resamples=reps, paired=True, vectorized=True, axis=0,
                              confidence_level=confidence, method=BOOTSTRAP_METHOD, rng=np.random.default_rng(seed))
    lo, hi = np.asarray(res.confidence_interval.low, float), np.asarray(res.confidence_interval.high, float)
    draws = res.bootstrap_distribution
    undefined = ~np.isfinite(draws).all(axis=-1)
    if undefined.any():  # a ratio undefined (0/0, x/0) in some resamples: the interval of the resamples where it is
        alpha = (1 - confidence) / 2
        finite = np.where(np.isfinite(draws), draws, np.nan)
        qlo, qhi = (stats.quantile(finite, q, axis=-1, nan_policy="omit") for q in (alpha, 1 - alpha))
        lo, hi = np.where(undefined, qlo, lo), np.where(undefined, qhi, hi)
    return lo, hi


def bootstrap_mean(values, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over weeks with a 95% percentile-bootstrap interval (resampling weeks)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    # scipy refuses a single value, and equal values only give the zero-width interval up to rounding: both are
    # the degenerate distribution of the mean (every resample the same), so the interval is the mean itself
    if len(values) == 1 or np.ptp(values) == 0:
        return mean, mean, mean
    lo, hi = bootstrap_interval((values,), np.mean, reps, seed)
    return mean, float(lo), float(hi)


def paired_comparison(weekly_a: list[float], weekly_b: list[float], reps: int = 2000, seed: int = 0) -> dict:
    """Mean weekly difference a - b with its bootstrap interval, and the share of weeks a wins."""
    a, b = np.asarray(weekly_a, float), np.asarray(weekly_b, float)
    d = a - b
    mean, lo, hi = bootstrap_mean(d, reps, seed)
    ok = np.isfinite(d)
    return {"difference": mean, "ci95": [lo, hi], "weeks_better": int((d[ok] > 0).sum()), "weeks": int(ok.sum())}
