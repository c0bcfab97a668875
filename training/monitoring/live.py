"""The live record: how the published forecasts did, week by week, against what was recorded after they were made,
beside the simple baselines forecasting the same weeks.

Pure functions over plain score dicts ({week, model, observed_total, metrics, scored_at}; the weekly cycle stores
them in the publication store's `live_scores`), so training never imports serving. Every result is JSON-able: None
where a number is undefined, never NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from hotspot.training.monitoring import PUBLISHED

METRICS = ("hit_rate@1%", "pai@1%", "pei@1%", "hit_rate@5%", "pai@5%", "pei@5%")
RANK_BY = "pai@1%"  # the best baseline is the one with the highest mean of this
NOTE = ("Recorded incidents are policing data, not ground truth: they show where crime was reported and recorded, "
        "which depends on where officers were and on who reports. A forecast that matches them well can repeat that "
        "pattern.")
HINDSIGHT = ("the baseline with the highest mean PAI at 1% over the weeks scored, chosen in hindsight, which favours "
             "the baselines")


def _num(value: Any) -> float | None:
    """A plain float, or None for a missing or non-finite value."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _metric(score: dict | None, name: str) -> float | None:
    return None if score is None else _num((score.get("metrics") or {}).get(name))


def _current(scores: list[dict]) -> dict[str, dict[str, dict]]:
    """{week: {model: score}}, the newest score of each (week, model) (later in the list wins a tie)."""
    by_week: dict[str, dict[str, dict]] = {}
    ordered = sorted(enumerate(scores), key=lambda pair: (str(pair[1].get("scored_at") or ""), pair[0]))
    for _, score in ordered:
        by_week.setdefault(str(score["week"]), {})[str(score["model"])] = score
    return by_week


MIN_WEEKS = 4  # fewer scored weeks than this: too few to tell the published forecasts from the baseline


def paired_t(published: list[float], other: list[float]) -> dict:
    """Mean weekly difference published - other with its 95% t-interval (a bootstrap of a few live weeks is too
    narrow: it resamples so few values that it misses most of their spread), and the weeks the published won."""
    d = np.asarray(published, float) - np.asarray(other, float)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        lo = hi = float("nan")
    else:
        half = float(stats.t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    return {"difference": mean, "ci95": [lo, hi], "weeks_better": int((d > 0).sum()), "weeks": n}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pairs(by_week: dict[str, dict[str, dict]], baseline: str, metric: str) -> tuple[list[float], list[float]]:
    """The published and `baseline` values of `metric` on the weeks where both are scored."""
    published, other = [], []
    for models in by_week.values():
        a, b = _metric(models.get(PUBLISHED), metric), _metric(models.get(baseline), metric)
        if a is not None and b is not None:
            published.append(a)
            other.append(b)
    return published, other


def _best_baseline(by_week: dict[str, dict[str, dict]]) -> dict | None:
    """The baseline with the highest mean pai@1% over the weeks where it and the published forecast are scored."""
    names = sorted({m for models in by_week.values() for m in models} - {PUBLISHED})
    best = None
    for name in names:
        published, other = _pairs(by_week, name, RANK_BY)
        if other and (best is None or _mean(other) > best["mean_pai@1%"]):
            best = {"model": name, "mean_pai@1%": _mean(other), "weeks": len(other), "chosen": HINDSIGHT}
    return best


def _summary(by_week: dict[str, dict[str, dict]], baseline: str | None) -> dict[str, dict]:
    """Per metric: the published mean and, on the same weeks, the best baseline's, with the paired difference."""
    summary = {}
    for metric in METRICS:
        if baseline is None:
            alone = [v for models in by_week.values() if (v := _metric(models.get(PUBLISHED), metric)) is not None]
            summary[metric] = {"published": _mean(alone), "best_baseline": None, "difference": None,
                               "ci95": [None, None], "weeks_better": None, "weeks": len(alone)}
            continue
        published, other = _pairs(by_week, baseline, metric)
        if not published:
            summary[metric] = {"published": None, "best_baseline": None, "difference": None, "ci95": [None, None],
                               "weeks_better": None, "weeks": 0}
            continue
        paired = paired_t(published, other)
        summary[metric] = {"published": _mean(published), "best_baseline": _mean(other),
                           "difference": _num(paired["difference"]), "ci95": [_num(v) for v in paired["ci95"]],
                           "weeks_better": paired["weeks_better"], "weeks": paired["weeks"]}
    return summary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _sentence(n_weeks: int, best: dict | None, summary: dict[str, dict]) -> str:
    hit, pai = summary["hit_rate@1%"], summary["pai@1%"]
    if best is None:
        return (f"Over the {n_weeks} week{'s' if n_weeks != 1 else ''} scored, the published forecasts caught "
                f"{_pct(hit['published'])} of recorded incidents in the top 1% of cells (PAI "
                f"{_fmt(pai['published'])}); no baseline was scored on the same weeks, so there is nothing to "
                f"compare them with yet.")
    lo, hi = hit["ci95"]
    if hit["weeks"] < MIN_WEEKS:
        verdict = f"too few weeks to tell them apart (it takes at least {MIN_WEEKS})"
    elif lo is not None and lo > 0:
        verdict = "the published forecasts caught more"
    elif hi is not None and hi < 0:
        verdict = "the best baseline caught more"
    else:
        verdict = "the difference is within what chance gives over these weeks"
    interval = ("" if lo is None or hi is None else
                f", 95% interval {100 * lo:+.1f} to {100 * hi:+.1f} points")
    return (f"Over the {hit['weeks']} week{'s' if hit['weeks'] != 1 else ''} scored, the published forecasts caught "
            f"{_pct(hit['published'])} of recorded incidents in the top 1% of cells (PAI {_fmt(pai['published'])}), "
            f"against {_pct(hit['best_baseline'])} (PAI {_fmt(pai['best_baseline'])}) for the best baseline "
            f"({best['model']}) on the same weeks: {verdict} (difference {_points(hit['difference'])}{interval}; "
            f"better in {hit['weeks_better']} of {hit['weeks']} weeks). The best baseline is chosen in hindsight, "
            f"which favours it.")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} points"


def _week_row(week: str, models: dict[str, dict], best: str | None) -> dict:
    published = models.get(PUBLISHED)
    anyone = published or next(iter(models.values()))
    return {"week": week, "observed_total": int(anyone["observed_total"]),
            "published": None if published is None else {m: _metric(published, m) for m in (*METRICS,
                                                                                              "poisson_deviance")},
            "best_baseline": None if best is None or best not in models else
            {m: _metric(models[best], m) for m in METRICS},
            "baselines": {name: _metric(s, RANK_BY) for name, s in sorted(models.items()) if name != PUBLISHED}}


def live_record(scores: list[dict], window: int | None = None, *, history: list[dict] | None = None) -> dict:
    """The live record of a product's publications from their current scores (one per week and model, the newest
    taken where there are more): a row per week, the best baseline, the mean of each metric beside it on the same
    weeks with the paired difference and its 95% bootstrap interval, and a sentence saying so.

    window: keep only the last N weeks scored. history: every score ever made (re-scored weeks included), for
    `rescored`, the weeks whose figures moved after late records.
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be at least 1 week, not {window}")
    by_week = dict(sorted(_current(scores).items()))
    if window is not None:
        by_week = dict(list(by_week.items())[-window:])
    rescored = [r for r in rescored_weeks(history or []) if r["week"] in by_week]
    scored = [w for w, models in by_week.items() if PUBLISHED in models]
    if not scored:
        return {"n_weeks": 0, "window": window, "weeks": [], "best_baseline": None, "summary": {},
                "sentence": "Nothing is scored yet: no published forecast has had its week recorded and scored.",
                "rescored": rescored, "note": NOTE}
    best = _best_baseline(by_week)
    summary = _summary(by_week, best["model"] if best else None)
    return {"n_weeks": len(scored), "window": window,
            "weeks": [_week_row(w, models, best["model"] if best else None) for w, models in by_week.items()],
            "best_baseline": best, "summary": summary, "sentence": _sentence(len(scored), best, summary),
            "rescored": rescored, "note": NOTE}


def rescored_weeks(all_scores: list[dict]) -> list[dict]:
    """The weeks whose published score moved when they were scored again after late records: the first and current
    recorded total and PAI at 1%, and the change, oldest week first. A score dict may carry `publication_id`, so two
    versions of one week are kept apart."""
    runs: dict[tuple, list[dict]] = {}
    ordered = sorted(enumerate(all_scores), key=lambda pair: (str(pair[1].get("scored_at") or ""), pair[0]))
    for _, score in ordered:
        if score["model"] == PUBLISHED:
            runs.setdefault((str(score["week"]), score.get("publication_id")), []).append(score)
    rows = []
    for (week, _), run in sorted(runs.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        first, current = run[0], run[-1]
        pai_first, pai_now = _metric(first, RANK_BY), _metric(current, RANK_BY)
        if len(run) < 2 or (first["observed_total"] == current["observed_total"] and pai_first == pai_now):
            continue
        rows.append({"week": week, "model": PUBLISHED, "times_scored": len(run),
                     "first_scored_at": _iso(first.get("scored_at")), "scored_at": _iso(current.get("scored_at")),
                     "first_observed_total": int(first["observed_total"]),
                     "observed_total": int(current["observed_total"]),
                     "observed_change": int(current["observed_total"]) - int(first["observed_total"]),
                     "first_pai@1%": pai_first, "pai@1%": pai_now,
                     "pai_change": None if pai_first is None or pai_now is None else pai_now - pai_first})
    return rows


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
