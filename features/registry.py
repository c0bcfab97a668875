"""The feature registry: each family is a small vectorised function with a declared name, inputs and look-back.

A family receives the `BuildContext` (counts, grid, periods, accepted incidents, config) and yields `Feature`s whose
row t uses only periods before t (the leakage tests in tests/features check every registered family). The config
selects families (`[features] families`, `exclude`); `hotspot features --list` prints this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from hotspot.features.config import StudyConfig
    from hotspot.features.grid import Grid


@dataclass(frozen=True)
class Feature:
    name: str
    values: np.ndarray  # (T + 1, C) per period, or (C,) for a static feature
    description: str
    unit: str = "incidents"
    # A sentence a shift commander reads when this feature raises a cell's risk, with placeholders for the value:
    # {count} (a whole number), {rate} (two decimals), {pct} (a share in percent), {dist} (metres), {value}.
    reason: str = ""


@dataclass
class BuildContext:
    cfg: StudyConfig
    grid: Grid
    period_starts: pd.DatetimeIndex  # T + 1
    groups: tuple[str, ...]
    counts: np.ndarray  # (T, C, G)
    target: np.ndarray  # (T, C)
    incidents: pd.DataFrame  # accepted incidents in complete periods, with `period` and `cell`
    warnings: list[str] = field(default_factory=list)

    @property
    def n_periods(self) -> int:
        return self.target.shape[0]

    @cached_property
    def target_sums(self) -> np.ndarray:
        from hotspot.features.lags import history_sums

        return history_sums(self.target)

    @cached_property
    def period_word(self) -> str:
        """What one period is called in sentences: week, month, day, or period."""
        return {52: "week", 53: "week", 12: "month", 365: "day", 366: "day"}.get(self.periods_per_year, "period")

    def last(self, w: int) -> str:
        """'the last week' or 'the last 4 weeks'."""
        return f"the last {self.period_word}" if w == 1 else f"the last {w} {self.period_word}s"

    @cached_property
    def target_noun(self) -> str:
        """'incidents', or the target offences by name when the label counts only some of them."""
        targets = self.cfg.model.target_offenses
        if not targets or set(targets) >= set(self.groups):
            return "incidents"
        return " or ".join(targets) + " incidents"

    @cached_property
    def periods_per_year(self) -> int:
        step = (self.period_starts[1:] - self.period_starts[:-1]).median() / pd.Timedelta(days=1)
        return max(1, int(round(365.25 / step)))


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    inputs: str
    lookback: Callable[[StudyConfig, int], int]  # (config, periods per year) -> periods of history needed
    build: Callable[[BuildContext], Iterator[Feature]]
    unavailable: Callable[[BuildContext], str | None] = lambda ctx: None

    def lookback_text(self, cfg: StudyConfig, periods_per_year: int = 52) -> str:
        n = self.lookback(cfg, periods_per_year)
        return "none (static)" if n == 0 else f"{n} periods"


def family(name: str, description: str, inputs: str, lookback: Callable[[StudyConfig, int], int],
           unavailable: Callable[[BuildContext], str | None] | None = None):
    """Make a builder into a `Family` named `name` (features.families lists them all in one table)."""

    def make(build: Callable[[BuildContext], Iterator[Feature]]) -> Family:
        return Family(name, description, inputs, lookback, build, unavailable or (lambda ctx: None))

    return make
