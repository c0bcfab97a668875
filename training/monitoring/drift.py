"""Drift and decay checks for the weekly cycle: pure functions from counts and arrays to JSON-able verdicts.

Each check returns a plain dict (floats, ints, str, bools, lists; None where a number is undefined, never NaN) with
`kind`, a `flag` and a one-sentence `sentence` that says what was measured, against what, and the interval or
threshold used, so the cycle can log it, publish it and put it in the briefing unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

MIN_HISTORY_WEEKS = 8  # fewer lookback weeks than this give no usable estimate of the usual volume or its spread
MIN_MIX_INCIDENTS = 20  # below this a chi-square test of the offence mix has almost no power
MIN_EXPECTED = 5.0  # the chi-square approximation needs every expected count at least this large
MIN_OUTSIDE = 3  # one or two incidents in new cells are ordinary; a flag needs a few
PSI_EPSILON = 1e-4  # share given to an empty bin, so the log-ratio stays finite


def _num(value, digits: int | None = None) -> float | None:
    """A plain float (rounded when asked), or None for a missing or non-finite value."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def _week_label(week) -> str | None:
    """YYYY-MM-DD of a week given as a Timestamp, date or string; None stays None."""
    return None if week is None else pd.Timestamp(week).strftime("%Y-%m-%d")


def _week_phrase(label: str | None) -> str:
    return f"Week of {label}" if label else "This week"


def _lookback(frame, week: pd.Timestamp, lookback_weeks: int):
    """The rows of `frame` (Series or DataFrame indexed by period start) in the lookback_weeks before `week`."""
    index = pd.DatetimeIndex(pd.to_datetime(frame.index))
    start = week - pd.Timedelta(weeks=lookback_weeks)
    return frame[(index >= start) & (index < week)]


def _at_week(frame, week: pd.Timestamp):
    """The row of `frame` for `week`, or None when the week is absent."""
    index = pd.DatetimeIndex(pd.to_datetime(frame.index))
    hit = index == week
    return frame[hit].iloc[0] if hit.any() else None


def _count_interval(history: np.ndarray, level: float) -> tuple[float, float, str]:
    """Central `level` interval of one week's count, from the lookback weeks' mean and (when wider) their variance."""
    mean, var = float(history.mean()), float(history.var(ddof=1))
    if mean <= 0:
        return 0.0, 0.0, "Poisson"
    if var > mean:  # overdispersed: a negative binomial with the same mean and the lookback weeks' variance
        lo, hi = stats.nbinom.interval(level, mean * mean / (var - mean), mean / var)
        return float(lo), float(hi), "negative binomial"
    lo, hi = stats.poisson.interval(level, mean)
    return float(lo), float(hi), "Poisson"


def volume_check(weekly_counts: pd.Series, week: pd.Timestamp, lookback_weeks: int = 52,
                 level: float = 0.99) -> dict:
    """Is the week's incident count outside the usual range of the lookback weeks (a partial or doubled extract)?

    A week absent from `weekly_counts` counts as zero incidents; weeks after `week` are ignored.
    """
    week = pd.Timestamp(week)
    label = _week_label(week)
    counts = pd.to_numeric(weekly_counts, errors="coerce")
    history = _lookback(counts, week, lookback_weeks).dropna().to_numpy(float)
    current = _at_week(counts, week)
    observed = 0.0 if current is None or pd.isna(current) else float(current)
    result = {"kind": "volume", "week": label, "observed": _num(observed), "expected": None, "lo": None, "hi": None,
              "ratio": None, "direction": None, "flag": False}
    if len(history) < MIN_HISTORY_WEEKS:
        result["sentence"] = (f"{_week_phrase(label)}: {observed:,.0f} incidents recorded, but only {len(history)} of "
                              f"the previous {lookback_weeks} weeks have counts (at least {MIN_HISTORY_WEEKS} needed), "
                              "too little history to judge the volume.")
        return result
    expected = float(history.mean())
    lo, hi, family = _count_interval(history, level)
    direction = "low" if observed < lo else "high" if observed > hi else None
    result.update(expected=_num(expected, 2), lo=int(lo), hi=int(hi),
                  ratio=_num(observed / expected, 3) if expected > 0 else None, direction=direction,
                  flag=direction is not None)
    verdict = {"low": "unusually low, which may mean a partial extract",
               "high": "unusually high, which may mean duplicated records or a changed extract",
               None: "within the usual range"}[direction]
    result["sentence"] = (f"{_week_phrase(label)}: {observed:,.0f} incidents recorded against {expected:,.1f} expected "
                          f"from the mean of the previous {len(history)} weeks ({level:.0%} {family} range "
                          f"{lo:,.0f} to {hi:,.0f}), {verdict}.")
    return result


def _merge_small(observed: pd.Series, expected: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected counts with every offence expected fewer than MIN_EXPECTED times merged into 'other';
    an 'other' still too small is merged into the smallest remaining offence."""
    names = np.where(expected.to_numpy() < MIN_EXPECTED, "other", expected.index.to_numpy(str))
    merged = pd.DataFrame({"obs": observed.to_numpy(float), "exp": expected.to_numpy(float)}, index=names)
    merged = merged.groupby(level=0).sum().sort_values("exp")
    if len(merged) > 2 and "other" in merged.index and merged.loc["other", "exp"] < MIN_EXPECTED:
        smallest = merged.drop(index="other").index[0]
        merged.loc[smallest] += merged.loc["other"]
        merged = merged.drop(index="other")
    return merged["obs"].to_numpy(), merged["exp"].to_numpy()


def mix_check(offense_counts: pd.DataFrame, week: pd.Timestamp, lookback_weeks: int = 52,
              alpha: float = 0.001) -> dict:
    """Does the week's mix of offences differ from the shares of the lookback weeks (a changed coding or source)?"""
    week = pd.Timestamp(week)
    label = _week_label(week)
    counts = offense_counts.apply(pd.to_numeric, errors="coerce").fillna(0.0)
    counts.columns = [str(c) for c in counts.columns]
    current = _at_week(counts, week)
    week_counts = pd.Series(0.0, index=counts.columns) if current is None else current.astype(float)
    usual_counts = _lookback(counts, week, lookback_weeks).sum()
    total, usual_total = float(week_counts.sum()), float(usual_counts.sum())
    shares_week = week_counts / total if total > 0 else None
    shares_usual = usual_counts / usual_total if usual_total > 0 else None
    result = {"kind": "mix", "week": label, "p_value": None,
              "shares_week": {} if shares_week is None else {k: round(float(v), 4) for k, v in shares_week.items()},
              "shares_usual": {} if shares_usual is None else {k: round(float(v), 4) for k, v in shares_usual.items()},
              "movers": [], "flag": False}
    phrase = _week_phrase(label)
    if total < MIN_MIX_INCIDENTS:
        result["sentence"] = (f"{phrase}: only {total:,.0f} incidents recorded, too few to test the offence mix "
                              f"(at least {MIN_MIX_INCIDENTS} needed).")
        return result
    if shares_usual is None:
        result["sentence"] = (f"{phrase}: no incidents in the previous {lookback_weeks} weeks to compare the offence "
                              "mix with.")
        return result
    change = (shares_week - shares_usual).abs()
    top = change[change > 0].sort_values(ascending=False, kind="stable").index[:3]
    result["movers"] = [{"offense": k, "week_share": round(float(shares_week[k]), 4),
                         "usual_share": round(float(shares_usual[k]), 4)} for k in top]
    f_obs, f_exp = _merge_small(week_counts, shares_usual * total)
    if len(f_obs) < 2:
        result["sentence"] = (f"{phrase}: the offence mix cannot be tested, as the usual mix of the previous "
                              f"{lookback_weeks} weeks leaves fewer than two offence groups large enough to compare.")
        return result
    p_value = float(stats.chisquare(f_obs, f_exp).pvalue)
    result.update(p_value=_num(p_value), flag=bool(p_value < alpha))
    movers = "; ".join(f"{m['offense']} {m['week_share']:.0%} against usually {m['usual_share']:.0%}"
                       for m in result["movers"])
    p_text = "p < 0.0001" if p_value < 1e-4 else f"p = {p_value:.4f}"
    verdict = "differs from" if result["flag"] else "is consistent with"
    result["sentence"] = (f"{phrase}: the mix of {total:,.0f} incidents by offence {verdict} the shares of the "
                          f"previous {lookback_weeks} weeks (chi-square {p_text}, flagged below {alpha:g})"
                          + (f"; largest changes: {movers}." if result["flag"] and movers else "."))
    return result


def outside_share(week_cells: np.ndarray, seen_cells: np.ndarray, threshold: float = 0.05,
                  week: str | None = None, usual: tuple[int, int] | None = None, alpha: float = 0.001) -> dict:
    """Share of the week's incidents in cells that never had one before (a geocoding or boundary change).

    usual: (outside, incidents) summed over the lookback weeks, each week counted against the cells seen before it.
    With it, the share must also be significantly above that usual share (one-sided binomial test at `alpha`,
    scipy): a rare offence lands in new cells every week, and that is not drift.
    """
    week_cells, seen_cells = np.asarray(week_cells).ravel(), np.asarray(seen_cells).ravel()
    label = _week_label(week)
    incidents = len(week_cells)
    outside = int((~np.isin(week_cells, seen_cells)).sum())
    share = outside / incidents if incidents else None
    usual_share = usual[0] / usual[1] if usual and usual[1] else None
    p_value = (float(stats.binomtest(outside, incidents, usual_share, alternative="greater").pvalue)
               if usual_share is not None and incidents and 0 < usual_share < 1 else None)
    unusual = p_value is None or p_value < alpha
    flag = share is not None and share > threshold and outside >= MIN_OUTSIDE and unusual
    phrase = _week_phrase(label)
    if share is None:
        sentence = f"{phrase}: no incidents recorded, so there is no share in cells without earlier incidents."
    else:
        against = f"a threshold of {threshold:.1%}"
        if usual_share is not None:
            against += f" and a usual share of {usual_share:.1%} over the lookback weeks"
        verdict = ("above both, which may mean a change in geocoding or in the area's boundary" if flag
                   else "within the threshold" if share <= threshold
                   else f"above the threshold but fewer than {MIN_OUTSIDE} incidents, so not flagged"
                   if outside < MIN_OUTSIDE
                   else f"above the threshold but not above the usual share (binomial p = {p_value:.2g}), so not "
                        "flagged")
        sentence = (f"{phrase}: {outside:,} of {incidents:,} incidents ({share:.1%}) fell in cells with no earlier "
                    f"recorded incident, against {against}; {verdict}.")
    return {"kind": "outside", "week": label, "incidents": incidents, "outside": outside, "share": _num(share, 4),
            "threshold": float(threshold), "usual_share": _num(usual_share, 4), "p_value": _num(p_value, 6),
            "flag": bool(flag), "sentence": sentence}


def _bin_shares(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Shares of the reference and the week in bins cut at the reference's quantiles (unique edges).

    Bins are [edge_i, edge_i+1) with the reference's maximum as the last edge, so a reference piled on one value
    still splits at its next value (99% zeros: zero against above zero), and a reference of one value compares
    the share equal to it against the rest.
    """
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        ref_bins, cur_bins = (ref != edges[0]).astype(int), (cur != edges[0]).astype(int)
    else:
        ref_bins = np.searchsorted(edges[1:], ref, side="right")
        cur_bins = np.searchsorted(edges[1:], cur, side="right")
    n = max(len(edges), 2)
    return np.bincount(ref_bins, minlength=n) / len(ref), np.bincount(cur_bins, minlength=n) / len(cur)


def _psi(ref: np.ndarray, cur: np.ndarray, bins: int) -> float | None:
    """Population stability index of one feature, NaN rows left out; None when either side has no values."""
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return None
    p_ref, p_cur = (np.clip(p, PSI_EPSILON, None) for p in _bin_shares(ref, cur, bins))
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def feature_psi(X_week: np.ndarray, X_ref: np.ndarray, names: list[str], threshold: float = 0.25, bins: int = 10,
                week: str | None = None) -> dict:
    """Population stability index of each feature between the week's cells and the reference cell-weeks."""
    X_week, X_ref = np.asarray(X_week, dtype=float), np.asarray(X_ref, dtype=float)
    if X_week.ndim != 2 or X_ref.ndim != 2 or X_week.shape[1] != X_ref.shape[1] or X_week.shape[1] != len(names):
        raise ValueError(f"feature_psi expects two 2-D arrays with one column per name ({len(names)}); got "
                         f"{X_week.shape} and {X_ref.shape}")
    if bins < 2:
        raise ValueError(f"feature_psi needs at least 2 bins; got {bins}")
    label = _week_label(week)
    # a feature with one value over all the week's cells (calendar: month, holidays, week of year) describes the
    # week, not where incidents are; its "shift" against a year of weeks is the season, so it is not scored
    same = [str(name) for j, name in enumerate(names)
            if len(X_week) and np.nanmin(X_week[:, j]) == np.nanmax(X_week[:, j])]
    psi = {str(name): None if str(name) in same else _num(_psi(X_ref[:, j], X_week[:, j], bins), 4)
           for j, name in enumerate(names)}
    moved = sorted((n for n, v in psi.items() if v is not None and v > threshold), key=lambda n: -psi[n])
    phrase = _week_phrase(label)
    against = (f"against {len(X_ref):,} reference cell-weeks (population stability index, threshold "
               f"{threshold:g})")
    if moved:
        named = ", ".join(f"{n} ({psi[n]:.2f})" for n in moved[:3]) + (f" and {len(moved) - 3} more"
                                                                       if len(moved) > 3 else "")
        sentence = (f"{phrase}: {len(moved)} of {len(psi) - len(same)} features of {len(X_week):,} cells moved "
                    f"away from their usual distribution {against}: {named}.")
    else:
        scored = {n: v for n, v in psi.items() if v is not None}
        largest = (f"; the largest shift is {max(scored, key=scored.get)} ({max(scored.values()):.2f})"
                   if scored else "")
        sentence = (f"{phrase}: none of the {len(psi) - len(same)} features of {len(X_week):,} cells moved away "
                    f"from their usual distribution {against}{largest}.")
    if same:
        sentence += (f" Not scored: {len(same)} feature{'s' * (len(same) != 1)} with one value over every cell this "
                     "week (calendar and other week-wide features).")
    return {"kind": "features", "week": label, "psi": psi, "moved": moved, "threshold": float(threshold),
            "flag": bool(moved), "week_wide": same, "sentence": sentence}


def decay_check(weeks: list[str], published: list[float], baseline: list[float], baseline_name: str,
                window: int = 8, min_weeks: int = 4, metric: str = "pai@1%", compared: int = 1,
                alpha: float = 0.05) -> dict:
    """Are the published forecasts, scored live, significantly worse than the best baseline over the last weeks?

    A one-sided paired t-test on the weekly differences (scipy), at `alpha` divided by `compared`, the number of
    baselines the best was picked from in hindsight (Bonferroni): picking the best of several after the fact and
    testing against it would otherwise flag noise. With the 4 to 8 weeks of a window, a bootstrap interval is too
    narrow (it resamples so few values that it misses most of their spread), so the t-distribution's is used.
    Weeks where either score is missing (None or NaN) are left out before the window is taken.
    """
    if not len(weeks) == len(published) == len(baseline):
        raise ValueError(f"decay_check expects one score per week; got {len(weeks)} weeks, {len(published)} "
                         f"published and {len(baseline)} baseline scores")
    if compared < 1 or not 0 < alpha < 1:
        raise ValueError(f"decay_check needs compared >= 1 and 0 < alpha < 1; got {compared} and {alpha}")
    pub = np.asarray([np.nan if v is None else v for v in published], dtype=float)
    base = np.asarray([np.nan if v is None else v for v in baseline], dtype=float)
    scored = np.flatnonzero(np.isfinite(pub) & np.isfinite(base))[-window:]
    window_weeks = [_week_label(weeks[i]) for i in scored]
    pub, base = pub[scored], base[scored]
    level = alpha / compared
    result = {"kind": "decay", "weeks": window_weeks, "metric": metric,
              "published_mean": _num(pub.mean(), 4) if len(pub) else None,
              "baseline_mean": _num(base.mean(), 4) if len(base) else None, "baseline_name": baseline_name,
              "difference": None, "lo": None, "hi": None, "interval_level": _num(1 - 2 * level, 4), "p_value": None,
              "threshold": _num(level, 6), "compared": int(compared), "flag": False}
    if len(scored) < min_weeks:
        result["sentence"] = (f"Too few weeks to judge decay: {len(scored)} week{'s' * (len(scored) != 1)} of "
                              f"published forecasts scored by {metric} beside {baseline_name}, and the check needs "
                              f"at least {min_weeks}.")
        return result
    d = pub - base
    n, difference, spread = len(d), float(d.mean()), float(d.std(ddof=1))
    if spread == 0:  # every week the same difference: no spread to test against
        lo = hi = difference
        p = 0.0 if difference < 0 else 1.0
    else:
        p = float(stats.ttest_1samp(d, 0.0, alternative="less").pvalue)
        half = float(stats.t.ppf(1 - level, n - 1)) * spread / np.sqrt(n)
        lo, hi = difference - half, difference + half
    flag = difference < 0 and p < level
    result.update(difference=_num(difference, 4), lo=_num(lo, 4), hi=_num(hi, 4), p_value=_num(p, 6),
                  flag=bool(flag))
    verdict = ("significantly worse than the baseline" if flag
               else "significantly better than the baseline" if lo > 0
               else "not significantly different from the baseline")
    picked = (f"; {baseline_name} is the best of {compared} baselines in hindsight, so the test is at "
              f"{alpha:g}/{compared}" if compared > 1 else "")
    result["sentence"] = (f"Over the {n} scored weeks {window_weeks[0]} to {window_weeks[-1]}, the published "
                          f"forecasts averaged {metric} {pub.mean():.2f} against {base.mean():.2f} for {baseline_name} "
                          f"on the same weeks (difference {difference:+.2f}, {100 * (1 - 2 * level):.4g}% interval "
                          f"{lo:+.2f} to {hi:+.2f}; one-sided paired t-test p = {p:.3g}{picked}): {verdict}.")
    return result


def flag_words(check: dict) -> str:
    """A few words naming one flagged check, for the summary line."""
    kind = check.get("kind")
    if kind == "volume":
        return (f"volume {check.get('direction') or 'unusual'} ({check.get('observed') or 0:,.0f} incidents against "
                f"{check.get('expected') or 0:,.0f} expected)")
    if kind == "mix":
        return "offence mix changed"
    if kind == "outside":
        return f"{check.get('share') or 0:.1%} of incidents in cells without earlier incidents"
    if kind == "features":
        return "features moved (" + ", ".join(check.get("moved", [])[:3]) + ")"
    if kind == "decay":
        return (f"forecasts worse than {check.get('baseline_name')} "
                f"({check.get('metric')} {check.get('difference') or 0:+.2f})")
    return str(kind)


def summarise(checks: list[dict]) -> dict:
    """The flagged checks and a one-line summary of them."""
    flags = [c for c in checks if c.get("flag")]
    if not flags:
        sentence = "No drift or decay flagged."
    else:
        sentence = f"{len(flags)} flag{'s' * (len(flags) != 1)}: " + "; ".join(flag_words(c) for c in flags) + "."
    return {"flags": flags, "n_flags": len(flags), "sentence": sentence}
