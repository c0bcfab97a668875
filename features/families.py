"""Every feature family, and FAMILIES, the one table of them (in the order they are built and listed). Row t of
each feature uses only periods before t; static context is constant.

Families: temporal, offense_groups, spatial, near_repeat, time_of_day, premises, calendar, context. A new family is
a builder decorated with `@family(...)` here, added to FAMILIES and to features.config.FAMILY_NAMES (the names a
config may use; a test checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from hotspot.features.config import FAMILY_NAMES, StudyConfig
from hotspot.features.lags import ewm_rate, history_rate, history_sums, periods_since_last, window_counts
from hotspot.features.registry import BuildContext, Family, Feature, family
from hotspot.features.spatial import distance_weighted_sums, gaussian_smooth, neighbour_sums

HOUR_BINS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}


def slug(text: str) -> str:
    """A name reduced to lower-case letters, digits and underscores (for feature names)."""
    return "".join(ch if ch.isalnum() else "_" for ch in str(text).strip().lower()).strip("_")


# --- temporal -------------------------------------------------------------------------------------------------------


@family("temporal", "the cell's own past: window counts, weighted means, trend, same weeks last year, recency",
        inputs="target counts", lookback=lambda cfg, ppy: max(cfg.features.windows))
def temporal(ctx: BuildContext) -> Iterator[Feature]:
    fc, sums = ctx.cfg.features, ctx.target_sums
    for w in fc.windows:
        yield Feature(f"count_w{w}", window_counts(sums, w), f"target incidents in the cell over the last {w} periods",
                      reason=f"{{count}} {ctx.target_noun} in this cell in {ctx.last(w)}")
    yield Feature("rate_all", history_rate(sums), "mean target incidents per period over all history",
                  "incidents per period",
                  reason=f"{{rate}} {ctx.target_noun} per {ctx.period_word} here on average over all the records")
    for h in fc.ewm_halflives:
        yield Feature(f"ewm_hl{h:g}", ewm_rate(ctx.target, h),
                      f"exponentially weighted mean per period, half-life {h:g} periods", "incidents per period",
                      reason=f"{{rate}} {ctx.target_noun} per {ctx.period_word} here recently (an average that "
                             f"weighs the latest {ctx.period_word}s most)")
    ppy = ctx.periods_per_year
    short, long_ = min(4, ppy), ppy
    with np.errstate(invalid="ignore"):
        yield Feature(f"trend_{short}v{long_}", window_counts(sums, short) / short - window_counts(sums, long_) / long_,
                      f"mean per period over the last {short} minus over the last {long_} periods",
                      "incidents per period",
                      reason=f"a change of {{rate}} {ctx.target_noun} per {ctx.period_word} in {ctx.last(short)} "
                             f"against {ctx.last(long_)}")
    # the same period a year ago and its two neighbours: periods t-ppy-1 .. t-ppy+1, all before t. Missing (NaN,
    # which LightGBM handles) for the first year and a period; not counted in the family's look-back.
    last_year = np.full(sums.shape, np.nan, dtype=np.float32)
    lo, hi = ppy + 1, max(ppy - 2, 1)  # window [t - lo, t - hi)
    if sums.shape[0] > lo:  # fewer rows: missing throughout (the slices below would not line up)
        last_year[lo:] = sums[lo - hi:sums.shape[0] - hi] - sums[: sums.shape[0] - lo]
    yield Feature("same_period_last_year", last_year,
                  "target incidents in the cell in the same period a year earlier and the periods either side",
                  reason=f"{{count}} {ctx.target_noun} in this cell at this time last year "
                         f"(the same {ctx.period_word} and the {ctx.period_word}s either side)")
    yield Feature("periods_since_last", periods_since_last(ctx.target),
                  "periods since the last target incident in the cell", "periods",
                  reason=f"{ctx.target_noun} recorded in this cell as recently as {{count}} {ctx.period_word}(s) ago")


# --- offence groups ---------------------------------------------------------------------------------------------------


@family("offense_groups", "past counts of each offence group in the cell (cross-offence inputs)",
        inputs="counts per offence group", lookback=lambda cfg, ppy: max(cfg.features.group_windows),
        unavailable=lambda ctx: None if len(ctx.groups) > 1 else "only one offence group")
def offense_groups(ctx: BuildContext) -> Iterator[Feature]:
    for g, group in enumerate(ctx.groups):
        sums = history_sums(ctx.counts[:, :, g])
        for w in ctx.cfg.features.group_windows:
            yield Feature(f"count_w{w}_{slug(group)}", window_counts(sums, w),
                          f"{group} incidents in the cell over the last {w} periods",
                          reason=f"{{count}} {group} incidents in this cell in {ctx.last(w)}")


# --- spatial ----------------------------------------------------------------------------------------------------------


@family("spatial", "the surroundings: ring sums, Gaussian-smoothed counts, distance-weighted counts",
        inputs="target counts, grid",
        lookback=lambda cfg, ppy: max(cfg.features.ring_windows + cfg.features.kernel_windows
                                      + [cfg.features.idw_window]))
def spatial(ctx: BuildContext) -> Iterator[Feature]:
    fc, grid = ctx.cfg.features, ctx.grid
    for r in fc.rings:
        ring_sums = history_sums(neighbour_sums(grid, ctx.target, r))
        for w in fc.ring_windows:
            yield Feature(f"ring{r}_count_w{w}", window_counts(ring_sums, w),
                          f"target incidents in the cells within {r} ring(s) around (cell excluded), "
                          f"last {w} periods",
                          reason=f"{{count}} {ctx.target_noun} within {r * grid.cell_size_m:g} m of this cell "
                                 f"in {ctx.last(w)}")
    for w in fc.kernel_windows:
        own = window_counts(ctx.target_sums, w)
        filled = np.nan_to_num(own)
        for bw in fc.kernel_bandwidths_m:
            smooth = gaussian_smooth(grid, filled, bw).astype(np.float32)
            smooth[np.isnan(own[:, 0])] = np.nan
            yield Feature(f"kde{bw:g}m_w{w}", smooth,
                          f"Gaussian-smoothed target incidents (bandwidth {bw:g} m), last {w} periods",
                          reason=f"a concentration of {ctx.target_noun} within about {bw:g} m in {ctx.last(w)} "
                                 f"({{rate}} per cell, smoothed)")
    w = fc.idw_window
    dw = distance_weighted_sums(grid, np.nan_to_num(window_counts(ctx.target_sums, w)), 3).astype(np.float32)
    dw[:w] = np.nan
    yield Feature(f"idw3_count_w{w}", dw, f"target incidents within 3 cells weighted by 1/distance (in cells), last "
                  f"{w} periods",
                  reason=f"{ctx.target_noun} nearby in {ctx.last(w)}, within {3 * grid.cell_size_m:g} m "
                         f"(weighted by closeness: {{rate}})")


# --- near repeat ------------------------------------------------------------------------------------------------------


@family("near_repeat", "very recent incidents in the cell and its neighbours (near-repeat victimisation)",
        inputs="counts per offence group, grid", lookback=lambda cfg, ppy: max(cfg.features.near_repeat_windows))
def near_repeat(ctx: BuildContext) -> Iterator[Feature]:
    all_counts = ctx.counts.sum(axis=2).astype(np.float64)
    near = all_counts + neighbour_sums(ctx.grid, all_counts, 1)
    sums = history_sums(near)
    for w in ctx.cfg.features.near_repeat_windows:
        yield Feature(f"near_repeat_w{w}", window_counts(sums, w),
                      f"incidents of any offence in the cell and its 8 neighbours over the last {w} periods",
                      reason=f"{{count}} incidents of any kind in this cell or the cells touching it in "
                             f"{ctx.last(w)} (repeats follow recent incidents)")


# --- incident mix: time of day and premises ---------------------------------------------------------------------------


def _mix_shares(ctx: BuildContext, category: np.ndarray, labels: list[str], prefix: str,
                what: str, phrase: str) -> Iterator[Feature]:
    """Share of the cell's incidents (any offence) in each category over the last mix_window periods."""
    T, C, K = ctx.n_periods, ctx.grid.n_cells, len(labels)
    inc = ctx.incidents
    ok = category >= 0
    flat = (inc["period"].to_numpy()[ok] * C + inc["cell"].to_numpy()[ok]) * K + category[ok]
    counts = np.bincount(flat, minlength=T * C * K).reshape(T, C, K).astype(np.float64)
    w = ctx.cfg.features.mix_window
    sums = history_sums(counts)
    total = window_counts(sums.sum(axis=2), w)
    for k, label in enumerate(labels):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, window_counts(sums[:, :, k], w) / total, np.nan).astype(np.float32)
        yield Feature(f"{prefix}_{slug(label)}", share,
                      f"share of the cell's incidents {what} {label} over the last {w} periods", "share",
                      reason=f"{{pct}}% of this cell's incidents in {ctx.last(w)} were "
                             + phrase.format(label=label))


@family("time_of_day", "when past incidents in the cell happened (night, morning, afternoon, evening)",
        inputs="incident hours", lookback=lambda cfg, ppy: cfg.features.mix_window,
        unavailable=lambda ctx: ("incidents.hour_known = false" if not ctx.cfg.incidents.hour_known
                                 else None if "hour" in ctx.incidents else "the incidents carry no hour"))
def time_of_day(ctx: BuildContext) -> Iterator[Feature]:
    hours = ctx.incidents["hour"].to_numpy()
    category = np.full(len(hours), -1)
    for k, (lo, hi) in enumerate(HOUR_BINS.values()):
        category[(hours >= lo) & (hours < hi)] = k
    yield from _mix_shares(ctx, category, list(HOUR_BINS), "tod", "in the", "in the {label}")


@family("premises", "where past incidents in the cell happened (premises type mix)", inputs="incident premises",
        lookback=lambda cfg, ppy: cfg.features.mix_window,
        unavailable=lambda ctx: None if "premises" in ctx.incidents else "incidents.premises is not configured")
def premises(ctx: BuildContext) -> Iterator[Feature]:
    values = ctx.incidents["premises"]
    labels = list(values.cat.categories)
    yield from _mix_shares(ctx, values.cat.codes.to_numpy(), labels, "premises", "at premises",
                           "at {label} premises")


# --- calendar ---------------------------------------------------------------------------------------------------------


@family("calendar", "week of year, month and public holidays in the period (known in advance)",
        inputs="period dates, holidays library", lookback=lambda cfg, ppy: 0)
def calendar(ctx: BuildContext) -> Iterator[Feature]:
    starts = ctx.period_starts
    C = ctx.grid.n_cells

    def per_period(values) -> np.ndarray:
        return np.broadcast_to(np.asarray(values, dtype=np.float32)[:, None], (len(starts), C))

    yield Feature("week_of_year", per_period(starts.isocalendar().week), "ISO week of year of the period start",
                  "week", reason="the time of year (week {count}): a seasonal high for this kind of place")
    yield Feature("month", per_period(starts.month), "month of the period start", "month",
                  reason="the month (month {count}): a seasonal high for this kind of place")
    fc = ctx.cfg.features
    if fc.holidays_country:
        import holidays

        ends = starts + pd.tseries.frequencies.to_offset(ctx.cfg.period.freq)  # months differ in length
        days = holidays.country_holidays(fc.holidays_country, subdiv=fc.holidays_subdivision,
                                         years=range(starts[0].year, ends[-1].year + 1))
        dates = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in days))
        n = dates.searchsorted(ends, side="left") - dates.searchsorted(starts, side="left")
        region = fc.holidays_country + (f"-{fc.holidays_subdivision}" if fc.holidays_subdivision else "")
        yield Feature("holidays_in_period", per_period(n), f"public holidays ({region}) in the period", "days",
                      reason=f"{{count}} public holiday(s) ({region}) in the {ctx.period_word}")


# --- context layers ---------------------------------------------------------------------------------------------------


@family("context", "static context layers: counts, distance to nearest and kernel density of points; "
        "area-weighted polygon attributes", inputs="[[context]] layers", lookback=lambda cfg, ppy: 0,
        unavailable=lambda ctx: None if ctx.cfg.context else "no [[context]] layers configured")
def context(ctx: BuildContext) -> Iterator[Feature]:
    from shapely import get_coordinates

    from hotspot.features.context import point_features, polygon_features, read_layer

    for layer in ctx.cfg.context:
        gdf = read_layer(layer, ctx.grid)
        if layer.attributes:
            yield from polygon_features(layer.name, gdf, layer.attributes, ctx.grid)
        else:
            yield from point_features(layer.name, get_coordinates(gdf.geometry.values), ctx.grid,
                                      ctx.cfg.features.context_bandwidths_m, str(layer.path), layer.label)


FAMILIES: dict[str, Family] = {f.name: f for f in (temporal, offense_groups, spatial, near_repeat, time_of_day,
                                                    premises, calendar, context)}
if tuple(FAMILIES) != FAMILY_NAMES:  # a family added here and not there (or the other way) fails at once
    raise RuntimeError(f"features.families.FAMILIES {tuple(FAMILIES)} and features.config.FAMILY_NAMES "
                       f"{FAMILY_NAMES} must list the same families in the same order")


def selected_families(cfg: StudyConfig) -> list[str]:
    """The families the config asks for (`[features] families`, default all, less `exclude`), in table order."""
    names = cfg.features.families or list(FAMILIES)
    return [n for n in names if n not in set(cfg.features.exclude)]
