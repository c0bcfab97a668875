"""The accuracy report's verdict in words: which models are distinguishable, the best baseline, and the headroom.

A model "beats" another when the 95% bootstrap interval of their mean paired weekly difference lies above 0, "is
beaten by" it when the interval lies below 0, and is "not distinguishable from" it otherwise (stats.py,
paired_comparison). The best baseline is the best model on these weeks that is neither a LightGBM variant nor
`auto`. The share of the headroom closed is (model - best baseline) / (limit - best baseline), the limit being the
clairvoyant reference (limit.py); where the limit is missing or not above the best baseline, the share is not shown and
a sentence says why.
"""

from __future__ import annotations

import math

import pandas as pd

from hotspot.training.evaluation.limit import LIMIT_NAME
from hotspot.training.evaluation.stats import paired_comparison

BEATS, BEATEN, SAME, UNKNOWN = "beats", "is beaten by", "not distinguishable from", "cannot be compared with"


def is_lightgbm(name: str) -> bool:
    """Whether a model is LightGBM (the reference, tuned or ablated), as opposed to a baseline."""
    return name.startswith("lightgbm")


SELECTORS = ("auto",)  # models that choose among LightGBM and the baselines (training/selection.py): not baselines


def is_baseline(name: str) -> bool:
    """Whether a model is a baseline: neither LightGBM nor a model that chooses among the others (`auto`)."""
    return not is_lightgbm(name) and name not in SELECTORS


def best_baseline(means: dict[str, float]) -> str | None:
    """The baseline (not LightGBM, not `auto`) with the highest mean on these weeks; None when there is none."""
    baselines = {n: v for n, v in means.items() if is_baseline(n) and math.isfinite(v)}
    return max(baselines, key=baselines.get) if baselines else None


def relation(pair: dict) -> str:
    """How model a stands to model b from their paired comparison (a - b), in words."""
    lo, hi = pair["ci95"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return UNKNOWN
    return BEATS if lo > 0 else BEATEN if hi < 0 else SAME


def _listed(names: list[str], conjunction: str) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def _label(metric: str) -> str:
    return metric.upper().replace("POISSON_DEVIANCE", "Poisson deviance")


def verdict(weekly: dict[str, pd.Series], reference: str | None, metric: str = "pai@1%", reps: int = 2000) -> dict:
    """Sentences and structured pairs: the reference model (default: the best) against every other model."""
    means = {name: float(pd.Series(values, dtype=float).mean()) for name, values in weekly.items()}
    n_weeks = max((len(v) for v in weekly.values()), default=0)
    if reference in weekly:
        subject = f"On these {n_weeks} weeks ({_label(metric)}), {reference}"
    else:  # no reference model: the best one against the others
        finite = {n: v for n, v in means.items() if math.isfinite(v)} or means
        reference = max(finite, key=finite.get) if finite else None
        subject = f"{reference} has the highest {_label(metric)} on these {n_weeks} weeks; it"
    best = best_baseline(means)
    out: dict = {"metric": metric, "reference": reference, "best_baseline": best, "pairs": [], "sentences": []}
    if reference is None:
        out["sentences"].append("No model was backtested.")
        return out
    for other in weekly:
        if other == reference:
            continue
        pair = paired_comparison(weekly[reference], weekly[other], reps)
        out["pairs"].append({"model": reference, "other": other, "relation": relation(pair), **pair})
    groups = {rel: [p["other"] for p in out["pairs"] if p["relation"] == rel] for rel in (SAME, BEATS, BEATEN, UNKNOWN)}
    clauses = [f"{'is ' if rel == SAME else ''}{rel} {_listed(names, 'or' if rel in (SAME, UNKNOWN) else 'and')}"
               for rel, names in groups.items() if names]
    if clauses:
        out["sentences"].append(f"{subject} {clauses[0]}" + "".join(f"; it {c}" for c in clauses[1:]) + ".")
    else:
        out["sentences"].append(f"Only {reference} was backtested: there is nothing to compare it with.")
    if best is None:
        out["sentences"].append("No baseline was backtested, so there is no best baseline to measure against.")
    elif best == reference:
        out["sentences"].append(f"The best baseline is {best} ({_label(metric)} {means[best]:.2f}).")
    else:
        pair = next(p for p in out["pairs"] if p["other"] == best)
        lo, hi = pair["ci95"]
        out["sentences"].append(
            f"The best baseline is {best} ({_label(metric)} {means[best]:.2f}); {reference} minus {best}: "
            f"{pair['difference']:+.2f} [95% interval {lo:+.2f}, {hi:+.2f}], {reference} better in "
            f"{pair['weeks_better']} of {pair['weeks']} weeks.")
    return out


def headroom(means: dict[str, float], best: str | None, limit_value: float | None, limit_note: str = "",
             metric: str = "pai@1%", limit_vs_best: dict | None = None) -> dict:
    """Each model's share of the headroom closed, (model - best) / (limit - best), or a sentence why there is none.

    limit_vs_best: the paired comparison of the limit's weekly figures with the best baseline's; when its interval
    holds 0 the headroom is within the weeks' noise and shares of it (-120% for a model 0.13 below a baseline that
    is 0.11 below the limit) would mislead, so a sentence says so instead."""
    out: dict = {"metric": metric, "best_baseline": best, "limit": limit_value, "headroom": None,
                 "share": dict.fromkeys(means), "sentence": "", "limit_vs_best": limit_vs_best}
    label = _label(metric)
    if limit_value is None or not math.isfinite(limit_value):
        out["sentence"] = limit_note or f"The {LIMIT_NAME} is not available for these weeks."
        return out
    if best is None:
        out["sentence"] = (f"The {LIMIT_NAME} reaches {label} {limit_value:.2f}; with no baseline in this backtest "
                           f"there is no headroom to share out.")
        return out
    room = limit_value - means[best]
    out["headroom"] = room
    if not room > 0:
        out["sentence"] = (f"{best} is at or above the {LIMIT_NAME} ({label} {limit_value:.2f}, a reference that uses "
                           f"future data) on these weeks, so no share of headroom is shown: a forecaster passes the "
                           f"limit by catching departures from the long-run rate, and on few weeks also by chance.")
        return out
    if limit_vs_best is not None and not limit_vs_best["ci95"][0] > 0:
        lo, hi = limit_vs_best["ci95"]
        out["sentence"] = (f"The {LIMIT_NAME} (a reference that uses future data, not a forecast) reaches {label} "
                           f"{limit_value:.2f}, only {room:.2f} above the best baseline {best}, and the weeks cannot "
                           f"tell them apart (limit minus {best}: {limit_vs_best['difference']:+.2f} [95% interval "
                           f"{lo:+.2f}, {hi:+.2f}]): there is no measurable headroom left for a forecaster of the "
                           f"long-run rate, so no shares of it are shown.")
        return out
    out["share"] = {name: (v - means[best]) / room if math.isfinite(v) else None for name, v in means.items()}
    out["sentence"] = (f"The {LIMIT_NAME} (a reference that uses future data, not a forecast) reaches {label} "
                       f"{limit_value:.2f}, {room:.2f} above the best baseline {best}")
    parts = []
    for name in (n for n in means if not is_baseline(n) and out["share"][n] is not None):
        share = out["share"][name]
        parts.append(f"{name} closes {share:.0%} of that headroom" if share >= 0 else
                     f"{name} is below the best baseline ({share:.0%} of that headroom)")
    out["sentence"] += "".join(f"; {p}" for p in parts) + "."
    return out
