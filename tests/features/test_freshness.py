"""features.freshness on hand-made incident times whose answer is known: a complete week, an extract cut short, a
thin week, a lag the rules allow, too little history to judge the volume."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hotspot.features.config import FreshnessConfig
from hotspot.features.freshness import check

WEEK = pd.Timestamp("2024-03-04")  # a Monday: the week to forecast; the last observed week is 2024-02-26 .. 03-03
RULES = FreshnessConfig(max_silent_days=2, min_volume_share=0.5, lookback_weeks=52)


def times(days: pd.DatetimeIndex, per_day: int = 10, keep: float = 1.0, seed: int = 0) -> pd.Series:
    """`per_day` incidents at noon of each day, a `keep` share of them kept at random."""
    stamps = np.repeat(days.to_numpy(), per_day) + np.timedelta64(12, "h")
    rng = np.random.default_rng(seed)
    return pd.Series(stamps[rng.random(len(stamps)) < keep])


def history(weeks: int = 20) -> pd.DatetimeIndex:
    return pd.date_range(WEEK - pd.Timedelta(weeks=weeks), WEEK - pd.Timedelta(weeks=1, days=1), freq="D")


LAST_WEEK = pd.date_range(WEEK - pd.Timedelta(weeks=1), WEEK - pd.Timedelta(days=1), freq="D")


def test_a_complete_week_passes_with_its_figures():
    result = check(pd.concat([times(history()), times(LAST_WEEK)]), WEEK, 7, RULES)
    assert result.ok and result.problems == []
    f = result.figures
    assert (f["recorded"], f["expected"], f["days_expected"], f["silent_days"]) == (70, 70.0, 7, 0)
    assert f["reference_weeks"] == 19 and f["share_of_usual"] == 1.0


def test_an_extract_cut_short_is_stale():
    cut = LAST_WEEK[:3]  # Monday to Wednesday: 4 silent days
    result = check(pd.concat([times(history()), times(cut)]), WEEK, 7, RULES)
    assert not result.ok and result.problems[0].startswith("stale: the newest record is from 2024-02-28, 4 days")
    assert "max_silent_days" in result.problems[0]


def test_a_thin_week_is_incomplete():
    thin = pd.concat([times(LAST_WEEK[:-1], keep=0.1, seed=3), times(LAST_WEEK[-1:], per_day=1)])  # up to Sunday
    result = check(pd.concat([times(history()), thin]), WEEK, 7, RULES)
    assert not result.ok and len(result.problems) == 1
    assert result.problems[0].startswith("incomplete: the week of 2024-02-26 recorded ")
    assert result.figures["share_of_usual"] < 0.2


def test_a_lag_within_the_allowance_is_not_counted_as_missing_volume():
    # Monday to Friday recorded, the weekend not yet (2 silent days, allowed): 50 of the 50 expected for those days
    result = check(pd.concat([times(history()), times(LAST_WEEK[:5])]), WEEK, 7, RULES)
    assert result.ok and result.figures["days_expected"] == 5 and result.figures["expected"] == 50.0
    # the same week at 40% of those days is thin, whatever the lag
    thin = check(pd.concat([times(history()), times(LAST_WEEK[:5], keep=0.4, seed=1)]), WEEK, 7, RULES)
    assert not thin.ok and thin.problems[0].startswith("incomplete")


def test_too_little_history_leaves_the_volume_unjudged_and_no_records_is_refused():
    short = check(pd.concat([times(history(weeks=5)), times(LAST_WEEK, keep=0.1)]), WEEK, 7, RULES)
    assert short.ok and "expected" not in short.figures and short.figures["reference_weeks"] == 4
    none = check(pd.Series(pd.to_datetime([])), WEEK, 7, RULES)
    assert not none.ok and none.problems == ["no incident is recorded before 2024-03-04"]
