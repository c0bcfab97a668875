"""Trend tables on synthetic panels whose counts are known: totals, area units, rates, change and the public view."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from hotspot.analysis.trends import ALL_GROUPS, WHOLE_AREA, compute_trends, rate_ratio
from hotspot.features.config import load_config
from hotspot.steps import prepare
from tests.conftest import ORIGIN_LAT, ORIGIN_LON, synthetic_incidents, write_config


def halves_file(folder) -> str:
    """Two area units, west and east halves of the synthetic square, with residents."""
    mid = ORIGIN_LON + 0.03
    west = shapely.box(ORIGIN_LON - 0.05, ORIGIN_LAT - 0.05, mid, ORIGIN_LAT + 0.1)
    east = shapely.box(mid, ORIGIN_LAT - 0.05, ORIGIN_LON + 0.11, ORIGIN_LAT + 0.1)
    path = folder / "halves.geojson"
    gpd.GeoDataFrame({"hood": ["West", "East"], "pop": [20_000, 40_000]}, geometry=[west, east],
                     crs="EPSG:4326").to_file(path)
    return path.name


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trends")
    incidents = synthetic_incidents(n=3000, weeks=120, seed=3)
    (folder / "a").mkdir()
    name = halves_file(folder / "a")
    cfg = load_config(write_config(folder / "a", incidents, extra=f"""
[trends]
areas = "{name}"
name_column = "hood"
population = "pop"

[privacy]
min_count_k = 5
public_cell_size_m = 1000
"""))
    return cfg, prepare(cfg, quiet=True).panel


def test_counts_add_up_to_the_panel(area):
    cfg, panel = area
    trends = compute_trends(cfg, panel, public=False)
    weekly = trends.weekly
    assert set(weekly["area"]) == {WHOLE_AREA, "West", "East"}
    whole = weekly[(weekly["area"] == WHOLE_AREA) & (weekly["group"] == ALL_GROUPS)]
    assert whole["count"].sum() == panel.counts.sum()
    assert np.array_equal(whole["count"].to_numpy(), panel.counts.sum(axis=(1, 2)))
    units = weekly[(weekly["area"] != WHOLE_AREA) & (weekly["group"] == ALL_GROUPS)]
    assert units["count"].sum() <= panel.counts.sum()  # cells outside both halves count only in the whole area
    yearly = trends.yearly.groupby(["area", "group"])["count"].sum()
    assert yearly[(WHOLE_AREA, ALL_GROUPS)] == panel.counts.sum()
    # rates per 1,000 residents use each unit's population
    row = trends.yearly[(trends.yearly["area"] == "East") & (trends.yearly["group"] == ALL_GROUPS)].iloc[0]
    assert row["rate_per_1000"] == pytest.approx(row["count"] / 40.0, rel=1e-3)
    # the cells layer holds every cell once and the same totals
    assert len(trends.cells) == panel.grid.n_cells
    years = [c for c in trends.cells.columns if c.startswith("count_")]
    assert trends.cells[years].to_numpy().sum() == panel.counts.sum()
    assert trends.areas is not None and set(trends.areas["area"]) == {"West", "East"}


def test_year_over_year_change_and_interval():
    pct, lo, hi = rate_ratio(120, 100)
    assert pct == pytest.approx(20.0)
    assert lo < 20 < hi and lo < 0 < hi  # 120 vs 100 is not a significant rise
    pct, lo, hi = rate_ratio(2000, 1000)
    assert lo > 80 and hi < 120
    assert np.isnan(rate_ratio(5, 0)[0])
    # zero counts: a fall to nothing is -100% without an interval; nothing before, no figure at all
    fall = rate_ratio(0, 5)
    assert fall[0] == -100.0 and np.isnan(fall[1]) and np.isnan(fall[2])
    assert all(np.isnan(rate_ratio(0, 0)))
    # the published formula, exp(log(a/b) +- 1.96 sqrt(1/a + 1/b))
    pct, lo, hi = rate_ratio(3, 7)
    half = 1.959963984540054 * np.sqrt(1 / 3 + 1 / 7)
    assert (lo, hi) == pytest.approx((100 * (3 / 7 * np.exp(-half) - 1), 100 * (3 / 7 * np.exp(half) - 1)))


def test_planted_rise_is_detected(tmp_path):
    """Incidents double in the last 52 weeks: the change is near +100% and its interval excludes 0."""
    rng = np.random.default_rng(5)
    base = synthetic_incidents(n=2000, weeks=106, seed=5)  # 106 complete weeks from Monday 2020-01-06
    extra = base[pd.to_datetime(base["when"]) >= pd.Timestamp("2020-01-06") + pd.Timedelta(weeks=54)].copy()
    extra["case_ref"] = rng.integers(10**6, 10**7, len(extra))
    cfg = load_config(write_config(tmp_path / "a", pd.concat([base, extra]), extra="[period]\ndata_end = 2022-01-16"))
    panel = prepare(cfg, quiet=True).panel
    change = compute_trends(cfg, panel, public=False).change
    row = change[(change["area"] == WHOLE_AREA) & (change["group"] == ALL_GROUPS)].iloc[0]
    assert 80 < row["change_pct"] < 120 and row["change_ci95_lo"] > 0


def test_public_view_suppresses_small_counts_and_coarsens_cells(area):
    cfg, panel = area
    full = compute_trends(cfg, panel, public=False)
    public = compute_trends(cfg, panel, public=True)
    assert public.meta["view"] == "public" and public.meta["cell_size_m"] == 1000
    assert "cell_id" not in public.cells.columns
    assert len(public.cells) < len(full.cells)
    block = public.cells.to_crs(panel.grid.crs).geometry.iloc[0]
    assert block.bounds[2] - block.bounds[0] == pytest.approx(1000, abs=1)  # WGS84 rounding to 6 decimals
    tables = [public.weekly, public.yearly, public.change, public.cells, public.areas]
    seen_suppressed = False
    for table in tables:
        for col in table.columns:
            if (col == "count" or col.startswith(("count_", "last_", "previous_", "same_"))) and "rate" not in col:
                for v in table[col]:
                    if isinstance(v, str):
                        assert v == "< 5"
                        seen_suppressed = True
                    else:
                        assert v is None or pd.isna(v) or v >= 5, (col, v)
    assert seen_suppressed
    # a rate built on a suppressed count is withheld
    small = public.weekly[public.weekly["count"] == "< 5"]
    assert small["rate_per_1000"].isna().all()
    # ...while a change whose own counts are published stays, whatever else in its row is suppressed
    shown = public.change[public.change["last_13w"].map(lambda v: isinstance(v, int))
                          & public.change["same_13w_year_before"].map(lambda v: isinstance(v, int))]
    assert len(shown) and shown["recent_change_pct"].notna().all()
    assert (public.change.loc[public.change["last_13w"] == "< 5", "recent_change_pct"].isna()).all()
    json.dumps(public.to_dict())  # the API's payload is plain JSON


def test_missing_areas_column_is_a_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    name = halves_file(tmp_path / "a")
    cfg = load_config(write_config(tmp_path / "a", extra=f'[trends]\nareas = "{name}"\nname_column = "nope"'))
    panel = prepare(cfg, quiet=True).panel
    with pytest.raises(Exception, match="no column 'nope'"):
        compute_trends(cfg, panel)


def test_no_hidden_count_can_be_worked_out_from_a_total(area):
    """Complementary suppression: in every published sum (groups -> all offences, units -> whole area, weeks ->
    year) either nothing is hidden or at least two members are, so no hidden count is a difference of shown ones."""
    cfg, panel = area
    public = compute_trends(cfg, panel, public=True)
    assert public.meta["complementary_suppressions"] > 0  # primary suppression alone would have leaked here
    weekly = public.weekly.assign(hidden=public.weekly["count"] == "< 5",
                                  year=pd.to_datetime(public.weekly["period_start"]).dt.year)
    yearly = public.yearly.assign(hidden=public.yearly["count"] == "< 5")
    by_groups = weekly.groupby(["period_start", "area"])["hidden"].sum()
    by_areas = weekly.groupby(["period_start", "group"])["hidden"].sum()
    assert (by_groups != 1).all() and (by_areas != 1).all()
    assert (yearly.groupby(["year", "area"])["hidden"].sum() != 1).all()
    weeks = weekly.groupby(["area", "group", "year"])["hidden"].sum()
    years = yearly.set_index(["area", "group", "year"])["hidden"]
    assert ((weeks + years.reindex(weeks.index).astype(int)) != 1).all()
    # every value shown is the true count; every suppressed one was hidden for a reason
    full = compute_trends(cfg, panel, public=False)
    shown = public.weekly["count"] != "< 5"
    assert (public.weekly.loc[shown, "count"].astype(int) == full.weekly.loc[shown, "count"]).all()
    assert (full.weekly.loc[~shown, "count"] >= 0).all()
    # a rate is never shown beside a hidden count (it would give the count away)
    assert public.weekly.loc[~shown, "rate_per_1000"].isna().all()


def test_complementary_suppression_hides_the_smallest_partner():
    from hotspot.analysis.disclosure import Relations, complementary_suppression, single_hidden_relations

    # two rows of three groups with their totals: [a, b, c, total]
    values = np.array([2, 9, 30, 41, 7, 8, 20, 35])
    relations = Relations()
    relations.add(np.array([[0, 1, 2, 3], [4, 5, 6, 7]]))
    primary = values < 5  # only the 2
    assert single_hidden_relations(primary, relations) == 1
    final = complementary_suppression(values, primary, relations)
    assert final.tolist() == [True, True, False, False, False, False, False, False]  # 9 goes with the 2
    assert single_hidden_relations(final, relations) == 0
    # a column relation across the rows makes the second row give way too
    relations.add(np.array([[0, 4], [1, 5]]))
    final = complementary_suppression(values, primary, relations)
    assert single_hidden_relations(final, relations) == 0
    assert final[[0, 1, 4, 5]].all() and not final[[2, 3, 6, 7]].any()
