"""The live record (training/monitoring/live.py) from hand-made scores: the rows per week, the best baseline chosen
on the same weeks, means and paired differences recomputed by hand, the window, re-scored weeks, and an empty
record that says nothing is scored yet."""

from __future__ import annotations

import json
import math

import pytest

from hotspot.training.monitoring.live import PUBLISHED, live_record, rescored_weeks


def score(week: str, model: str, hit1: float, pai1: float, observed: int = 100, scored_at: str | None = None,
          **extra) -> dict:
    metrics = {"hit_rate@1%": hit1, "pai@1%": pai1, "pei@1%": 0.5, "hit_rate@5%": min(1.0, 2 * hit1),
               "pai@5%": pai1 / 2, "pei@5%": 0.6, "poisson_deviance": 1.0}
    return {"week": week, "model": model, "observed_total": observed, "metrics": metrics, "scored_at": scored_at,
            **extra}


WEEKS = ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"]
PUBLISHED_HITS = [0.20, 0.30, 0.25, 0.37]
NAIVE_HITS = [0.10, 0.20, 0.15, 0.20]  # worse every week
HISTORY_HITS = [0.18, 0.28, 0.30, 0.32]  # the better baseline on the weeks both are scored


def scores() -> list[dict]:
    rows = []
    for week, pub, naive, hist in zip(WEEKS, PUBLISHED_HITS, NAIVE_HITS, HISTORY_HITS):
        rows += [score(week, PUBLISHED, pub, 10 * pub, observed=80), score(week, "naive_4w", naive, 10 * naive),
                 score(week, "history", hist, 10 * hist)]
    # ewm has the highest PAI, but only in a week with no published score: it cannot be compared, so never "best"
    rows.append(score("2023-12-25", "ewm_hl26", 0.9, 9.0))
    return rows


def test_best_baseline_and_summary_are_computed_on_the_same_weeks():
    record = live_record(scores())
    assert record["n_weeks"] == 4
    assert [w["week"] for w in record["weeks"]] == ["2023-12-25", *WEEKS]
    best = record["best_baseline"]
    assert best["model"] == "history" and best["weeks"] == 4 and "hindsight" in best["chosen"]
    assert best["mean_pai@1%"] == pytest.approx(10 * sum(HISTORY_HITS) / 4)
    hit = record["summary"]["hit_rate@1%"]
    assert hit["published"] == pytest.approx(sum(PUBLISHED_HITS) / 4)
    assert hit["best_baseline"] == pytest.approx(sum(HISTORY_HITS) / 4)
    assert hit["difference"] == pytest.approx((sum(PUBLISHED_HITS) - sum(HISTORY_HITS)) / 4)
    lo, hi = hit["ci95"]
    assert lo <= hit["difference"] <= hi
    assert hit["weeks_better"] == 3 and hit["weeks"] == 4  # history wins 2024-01-15
    assert set(record["summary"]) == {"hit_rate@1%", "pai@1%", "pei@1%", "hit_rate@5%", "pai@5%", "pei@5%"}
    row = record["weeks"][1]
    assert row["observed_total"] == 80 and row["published"]["hit_rate@1%"] == 0.20
    assert row["baselines"] == {"history": pytest.approx(1.8), "naive_4w": pytest.approx(1.0)}
    assert row["best_baseline"]["hit_rate@1%"] == 0.18
    assert record["weeks"][0]["published"] is None  # the baseline-only week is listed, but not compared
    sentence = record["sentence"]
    assert sentence.startswith("Over the 4 weeks scored, the published forecasts caught 28% of recorded incidents in "
                               "the top 1% of cells (PAI 2.8), against 27% (PAI 2.7) for the best baseline (history)")
    assert "chosen in hindsight" in sentence
    assert "policing data, not ground truth" in record["note"]
    json.dumps(record, allow_nan=False)  # JSON-able, no NaN


def test_a_clearly_better_forecast_is_said_to_be_better_and_a_worse_one_worse():
    better = [s for s in scores() if s["model"] in (PUBLISHED, "naive_4w")]
    assert "the published forecasts caught more" in live_record(better)["sentence"]
    swapped = [{**s, "model": {"naive_4w": PUBLISHED, PUBLISHED: "naive_4w"}[s["model"]]} for s in better]
    assert "the best baseline caught more" in live_record(swapped)["sentence"]


def test_window_keeps_the_last_weeks():
    record = live_record(scores(), window=2)
    assert [w["week"] for w in record["weeks"]] == WEEKS[-2:]
    assert record["n_weeks"] == 2
    assert record["summary"]["hit_rate@1%"]["published"] == pytest.approx(sum(PUBLISHED_HITS[-2:]) / 2)
    with pytest.raises(ValueError, match="at least 1"):
        live_record(scores(), window=0)


def test_newest_score_of_a_week_counts_and_missing_metrics_are_none():
    rows = [score(WEEKS[0], PUBLISHED, 0.1, 1.0, scored_at="2024-01-09T00:00:00+00:00"),
            score(WEEKS[0], PUBLISHED, 0.4, 4.0, scored_at="2024-01-20T00:00:00+00:00"),
            score(WEEKS[1], PUBLISHED, 0.2, 2.0)]
    rows[2]["metrics"]["pei@1%"] = float("nan")  # a week where it is undefined
    record = live_record(list(reversed(rows)))
    assert record["summary"]["hit_rate@1%"]["published"] == pytest.approx(0.3)
    assert record["best_baseline"] is None and "nothing to compare them with" in record["sentence"]
    assert record["weeks"][1]["published"]["pei@1%"] is None
    assert record["summary"]["pei@1%"]["weeks"] == 1
    json.dumps(record, allow_nan=False)


def test_rescored_weeks_show_how_late_records_moved_the_figures():
    history = [score(WEEKS[0], PUBLISHED, 0.2, 2.0, observed=80, scored_at="2024-01-09T06:00:00+00:00"),
               score(WEEKS[0], "naive_4w", 0.1, 1.0, observed=80, scored_at="2024-01-09T06:00:00+00:00"),
               score(WEEKS[0], PUBLISHED, 0.25, 2.5, observed=95, scored_at="2024-01-16T06:00:00+00:00"),
               score(WEEKS[1], PUBLISHED, 0.3, 3.0, observed=70, scored_at="2024-01-16T06:00:00+00:00"),
               score(WEEKS[1], PUBLISHED, 0.3, 3.0, observed=70, scored_at="2024-01-23T06:00:00+00:00")]
    moved = rescored_weeks(history)
    assert len(moved) == 1  # WEEKS[1] was scored twice with the same figures: nothing moved
    row = moved[0]
    assert row["week"] == WEEKS[0] and row["model"] == PUBLISHED and row["times_scored"] == 2
    assert (row["first_observed_total"], row["observed_total"], row["observed_change"]) == (80, 95, 15)
    assert row["first_pai@1%"] == 2.0 and row["pai@1%"] == 2.5 and row["pai_change"] == pytest.approx(0.5)
    assert row["first_scored_at"].startswith("2024-01-09")
    current = [history[1], history[2], history[4]]
    record = live_record(current, history=history)
    assert [r["week"] for r in record["rescored"]] == [WEEKS[0]]
    assert live_record(current, window=1, history=history)["rescored"] == []  # outside the window


def test_two_versions_of_a_week_are_not_taken_for_a_rescore():
    history = [score(WEEKS[0], PUBLISHED, 0.2, 2.0, publication_id=1, scored_at="2024-01-09"),
               score(WEEKS[0], PUBLISHED, 0.3, 3.0, publication_id=2, scored_at="2024-01-09")]
    assert rescored_weeks(history) == []


def test_nothing_scored_yet():
    for empty in ([], [score(WEEKS[0], "naive_4w", 0.1, 1.0)]):
        record = live_record(empty)
        assert record["n_weeks"] == 0 and record["summary"] == {} and record["best_baseline"] is None
        assert record["sentence"].startswith("Nothing is scored yet")
        assert not any(isinstance(v, float) and math.isnan(v) for v in record.values())


def test_two_weeks_are_too_few_to_tell_and_the_interval_is_the_t_interval():
    record = live_record([s for s in scores() if s["week"] in WEEKS[:2]])
    hit = record["summary"]["hit_rate@1%"]
    d = [p - h for p, h in zip(PUBLISHED_HITS[:2], HISTORY_HITS[:2])]  # +0.02 both weeks: no spread
    assert hit["weeks"] == 2 and hit["ci95"] == pytest.approx([0.02, 0.02])
    assert hit["difference"] == pytest.approx(sum(d) / 2)
    assert "too few weeks to tell them apart (it takes at least 4)" in record["sentence"]
    three = live_record([s for s in scores() if s["week"] in WEEKS[1:]])["summary"]["hit_rate@1%"]
    diffs = [p - h for p, h in zip(PUBLISHED_HITS[1:], HISTORY_HITS[1:])]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    half = 4.302653 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert three["ci95"] == pytest.approx([mean - half, mean + half], rel=1e-5)
