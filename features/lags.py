"""Temporal feature families computed on a (T, C) series of counts per period and cell.

Every function returns T + 1 rows: row t describes period t using only periods before t, and the extra last row
describes the period right after the data (the one a forecast is made for). Nothing here looks at period t itself.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def history_sums(counts: np.ndarray) -> np.ndarray:
    """S[t] = sum of counts over periods < t; shape (T + 1, C), S[0] = 0."""
    out = np.zeros((counts.shape[0] + 1,) + counts.shape[1:], dtype=np.float64)
    np.cumsum(counts, axis=0, out=out[1:])
    return out


def window_counts(sums: np.ndarray, window: int) -> np.ndarray:
    """Count over the `window` periods before t; NaN where fewer than `window` periods exist."""
    out = np.full(sums.shape, np.nan, dtype=np.float32)
    out[window:] = sums[window:] - sums[:-window]
    return out


def history_rate(sums: np.ndarray) -> np.ndarray:
    """Mean count per period over all periods before t; NaN at t = 0."""
    t = np.arange(sums.shape[0], dtype=np.float64).reshape((-1,) + (1,) * (sums.ndim - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / t).astype(np.float32)


def ewm_rate(counts: np.ndarray, halflife: float) -> np.ndarray:
    """Exponentially weighted mean count per period over periods before t (weights halve every `halflife`).

    Normalised by the sum of the weights actually used, so early periods are not biased towards zero; NaN at t = 0.
    """
    lam = 0.5 ** (1.0 / halflife)
    padded = np.concatenate([counts.astype(np.float64), np.zeros((1,) + counts.shape[1:])], axis=0)
    # out[t] = lam * out[t-1] + (1 - lam) * counts[t-1]: the filter is causal and lags by one period.
    out = lfilter([0.0, 1.0 - lam], [1.0, -lam], padded, axis=0)
    t = np.arange(out.shape[0], dtype=np.float64).reshape((-1,) + (1,) * (counts.ndim - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = out / (1.0 - lam**t)  # the weights of periods 0..t-1 sum to 1 - lam**t
    return out.astype(np.float32)


def periods_since_last(counts: np.ndarray) -> np.ndarray:
    """Periods since the last period with an incident, before t (1 = last period); NaN if none yet."""
    n = counts.shape[0]
    idx = np.arange(n).reshape((-1,) + (1,) * (counts.ndim - 1))
    last = np.maximum.accumulate(np.where(counts > 0, idx, -1), axis=0)
    last_before = np.concatenate([np.full((1,) + counts.shape[1:], -1), last], axis=0)
    t = np.arange(n + 1).reshape((-1,) + (1,) * (counts.ndim - 1))
    out = (t - last_before).astype(np.float32)
    out[last_before < 0] = np.nan
    return out
