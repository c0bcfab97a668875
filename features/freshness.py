"""Is the incident history complete enough to forecast a week? The checks `hotspot cycle` runs before it publishes.

Two ways an agency's weekly extract goes wrong: it stops early (records end days before the week they should
cover) and it is thin (an export that lost most rows). The first is stale data, the second incomplete data; the
cycle refuses either (exit code 3) unless told to go ahead. Thresholds come from the config's
[cycle.freshness], never from code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from hotspot.features.config import FreshnessConfig

MIN_REFERENCE_WEEKS = 8  # fewer earlier weeks than this give no usable expectation: the volume is not judged


@dataclass(frozen=True)
class Freshness:
    ok: bool
    problems: list[str] = field(default_factory=list)  # one sentence each, empty when ok
    figures: dict = field(default_factory=dict)  # what was measured (JSON-able)


def check(occurred_at: pd.Series, week: pd.Timestamp, period_days: int, rules: FreshnessConfig) -> Freshness:
    """Judge the records before `week` (the week to forecast): do they reach the end of the last week
    (`max_silent_days`), and did the last week record at least `min_volume_share` of what its weekdays usually
    record on the days the extract reaches, or stay within the 99% Poisson interval of it? `occurred_at`: every
    stored incident's time."""
    week = pd.Timestamp(week).normalize()
    times = pd.to_datetime(occurred_at)
    times = times[times < week]
    last_start = week - pd.Timedelta(days=period_days)
    last_day = week - pd.Timedelta(days=1)
    figures: dict = {"week": str(week.date()), "last_week": str(last_start.date()), "last_day": str(last_day.date())}
    problems = []
    if not len(times):
        return Freshness(False, [f"no incident is recorded before {week.date()}"], figures)
    latest = times.max()
    silent = int((last_day - latest.normalize()) / pd.Timedelta(days=1))
    figures.update({"latest_record": str(latest), "silent_days": silent, "max_silent_days": rules.max_silent_days})
    if silent > rules.max_silent_days:
        problems.append(f"stale: the newest record is from {latest.date()}, {silent} days before the last day of the "
                        f"week of {last_start.date()} ({last_day.date()}); more than the {rules.max_silent_days} "
                        "allowed (cycle.freshness.max_silent_days): the extract looks cut short")
    # volume: the last week against the same weekdays over the lookback weeks before it
    days = times.dt.normalize()
    in_week = days >= last_start
    observed = int(in_week.sum())
    history = days[(days < last_start) & (days >= last_start - pd.Timedelta(weeks=rules.lookback_weeks))]
    weeks_seen = int(np.ceil((last_start - history.min()) / pd.Timedelta(weeks=1))) if len(history) else 0
    figures.update({"recorded": observed, "reference_weeks": weeks_seen})
    if weeks_seen >= MIN_REFERENCE_WEEKS:
        per_weekday = history.dt.day_of_week.value_counts().reindex(range(7), fill_value=0) / weeks_seen
        # the days the extract reaches: a lag within max_silent_days is allowed, so its days are not expected yet
        reached = min(last_day, latest.normalize()) if silent <= rules.max_silent_days else last_day
        covered = pd.date_range(last_start, reached, freq="D").day_of_week
        expected = float(per_weekday.iloc[covered].sum())
        lower = float(stats.poisson.ppf(0.005, expected)) if expected > 0 else 0.0
        share = observed / expected if expected > 0 else 1.0
        figures.update({"days_expected": len(covered), "expected": round(expected, 1),
                        "share_of_usual": round(share, 3), "lower_99": lower,
                        "min_volume_share": rules.min_volume_share})
        if share < rules.min_volume_share and observed < lower:
            problems.append(f"incomplete: the week of {last_start.date()} recorded {observed:,} incidents, "
                            f"{share:.0%} of the {expected:,.0f} its weekdays usually record (the last "
                            f"{weeks_seen} weeks; 99% interval from {lower:,.0f}); below the "
                            f"{rules.min_volume_share:.0%} allowed (cycle.freshness.min_volume_share)")
    return Freshness(not problems, problems, figures)
