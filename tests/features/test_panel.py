"""The cell x period panel: exact counts and features on a hand-made set, period assignment, and no leakage."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

from hotspot.features.area import StudyArea
from hotspot.features.config import FeaturesConfig, PeriodConfig, load_config
from hotspot.features.grid import Grid
from hotspot.features.panel import build_panel, period_starts_for
from tests.conftest import synthetic_incidents, write_config

PROPS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAN = np.nan
MON = pd.Timestamp("2024-01-01")  # a Monday: week 0 of the hand-made set
WEEK = pd.Timedelta(days=7)

# a 3 x 3 grid of 100 m cells, all inside the area; compact index = cell_id = row * 3 + col, row 0 in the south
#   6 7 8
#   3 4 5
#   0 1 2
GRID = Grid.from_area(StudyArea(CRS.from_epsg(32617), shapely.box(600_000, 4_800_000, 600_300, 4_800_300), "test"),
                      100.0, 1000)
NEIGHBOURS = {c: [r * 3 + k for r in range(3) for k in range(3)
                  if (r, k) != divmod(c, 3) and abs(r - c // 3) <= 1 and abs(k - c % 3) <= 1] for c in range(9)}


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory):
    return load_config(write_config(tmp_path_factory.mktemp("panel"), synthetic_incidents(n=20, weeks=2)))


def configure(base, *, freq="W-MON", data_end=date(2024, 2, 14), earliest=None, windows=(1, 4),
              group_windows=(4,), halflives=(1.0,), rings=1, targets=None):
    return base.model_copy(update={
        "period": PeriodConfig(freq=freq, data_end=data_end),
        "incidents": base.incidents.model_copy(update={"earliest_date": earliest}),
        "features": FeaturesConfig(families=["temporal", "spatial", "calendar", "offense_groups"],
                                   windows=list(windows), group_windows=list(group_windows),
                                   ewm_halflives=list(halflives), rings=[rings], ring_windows=list(windows),
                                   kernel_windows=[max(windows)], kernel_bandwidths_m=[100.0],
                                   idw_window=max(windows)),
        "model": base.model.model_copy(update={"target_offenses": targets}),
    })


def incidents(rows, groups=("A", "B")) -> pd.DataFrame:
    """Accepted-incident rows as ingest hands them to build_panel: (time, cell, offence group)."""
    return pd.DataFrame({
        "occurred_at": pd.to_datetime([r[0] for r in rows]).astype("datetime64[ns]"),
        "offense": pd.Categorical([r[2] for r in rows], categories=list(groups)),
        "cell": np.array([r[1] for r in rows], dtype=np.int32),
    })


# Weeks W0 = Jan 1-7, W1 = Jan 8-14, ..., W5 = Feb 5-11 are complete when the data ends Wed Feb 14; W6 is not.
HAND = [
    ("2024-01-01 00:00:00", 4, "A"),  # W0, first second of the week
    ("2024-01-07 23:59:00", 4, "B"),  # W0: Sunday night still belongs to the week that began Monday Jan 1
    ("2024-01-08 00:00:00", 0, "A"),  # W1
    ("2024-01-24 10:00:00", 4, "A"),  # W3
    ("2024-01-25 22:00:00", 4, "A"),  # W3
    ("2024-01-28 23:59:59", 8, "B"),  # W3, last second
    ("2024-01-29 12:00:00", 1, "A"),  # W4
    ("2024-02-05 08:00:00", 4, "B"),  # W5
    ("2024-02-13 09:00:00", 4, "A"),  # W6: incomplete, excluded
    ("2024-02-20 09:00:00", 4, "A"),  # after the data end, excluded
]


@pytest.fixture(scope="module")
def hand(base_cfg):
    return build_panel(configure(base_cfg), incidents(HAND), GRID)


def feature(panel, name: str) -> np.ndarray:
    return panel.X[:, :, panel.feature_names.index(name)]


# --- counts and label -----------------------------------------------------------------------------------------------


def test_hand_set_periods_and_counts(hand):
    assert hand.n_periods == 6
    assert list(hand.period_starts) == list(pd.date_range("2024-01-01", periods=7, freq="7D"))
    assert hand.next_period_start == pd.Timestamp("2024-02-12")
    assert hand.groups == ("A", "B")
    assert hand.counts.shape == (6, 9, 2) and hand.counts.dtype == np.int32
    expected = np.zeros((6, 9, 2), dtype=np.int32)
    expected[0, 4] = [1, 1]
    expected[1, 0, 0] = 1
    expected[3, 4, 0] = 2
    expected[3, 8, 1] = 1
    expected[4, 1, 0] = 1
    expected[5, 4, 1] = 1
    np.testing.assert_array_equal(hand.counts, expected)
    assert hand.counts.sum() == 8  # the incomplete week's and the later incident are not counted anywhere


def test_label_is_the_period_count_of_the_target_offences(base_cfg, hand):
    assert hand.target.shape == (6, 9) and hand.target.dtype == np.float32
    np.testing.assert_array_equal(hand.target[:, 4], [2, 0, 0, 2, 0, 1])
    np.testing.assert_array_equal(hand.target, hand.counts.sum(axis=2))
    only_a = build_panel(configure(base_cfg, targets=["A"]), incidents(HAND), GRID)
    np.testing.assert_array_equal(only_a.target[:, 4], [1, 0, 0, 2, 0, 0])
    np.testing.assert_array_equal(only_a.target[:, 8], [0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(only_a.counts, hand.counts)  # every group is still counted for features


def test_feature_names(hand):
    assert hand.feature_names == (
        "count_w1", "count_w4", "rate_all", "ewm_hl1", "trend_4v52", "same_period_last_year", "periods_since_last",
        "ring1_count_w1", "ring1_count_w4", "kde100m_w4", "idw3_count_w4", "week_of_year", "month",
        "count_w4_a", "count_w4_b")
    assert hand.X.shape == (7, 9, 15) and hand.X.dtype == np.float32
    assert hand.min_history == 4  # the longest window; same_period_last_year is missing until a year has passed
    assert set(hand.feature_families.values()) == {"temporal", "spatial", "calendar", "offense_groups"}
    assert hand.feature_families["kde100m_w4"] == "spatial" and hand.feature_units["ewm_hl1"] == "incidents per period"
    assert set(hand.feature_descriptions) == set(hand.feature_names)


# --- exact feature values (row t uses periods < t; row 6 is the forecast week) ----------------------------------------


def test_window_counts(hand):
    np.testing.assert_array_equal(feature(hand, "count_w1")[:, 4], [NAN, 2, 0, 0, 2, 0, 1])
    np.testing.assert_array_equal(feature(hand, "count_w4")[:, 4], [NAN, NAN, NAN, NAN, 4, 2, 3])
    np.testing.assert_array_equal(feature(hand, "count_w1")[:, 0], [NAN, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(feature(hand, "count_w4")[:, 0], [NAN, NAN, NAN, NAN, 1, 1, 0])


def test_group_window_counts(hand):
    np.testing.assert_array_equal(feature(hand, "count_w4_a")[:, 4], [NAN, NAN, NAN, NAN, 3, 2, 2])
    np.testing.assert_array_equal(feature(hand, "count_w4_b")[:, 4], [NAN, NAN, NAN, NAN, 1, 0, 1])
    np.testing.assert_array_equal(feature(hand, "count_w4_b")[:, 8], [NAN, NAN, NAN, NAN, 1, 1, 1])


def test_ring1_neighbour_sums(hand):
    ring_w1, ring_w4 = feature(hand, "ring1_count_w1"), feature(hand, "ring1_count_w4")
    # centre cell 4: neighbours had 1 (cell 0) in W1, 1 (cell 8) in W3, 1 (cell 1) in W4; its own counts excluded
    np.testing.assert_array_equal(ring_w1[:, 4], [NAN, 0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(ring_w4[:, 4], [NAN, NAN, NAN, NAN, 2, 3, 2])
    # corner 0 (neighbours 1, 3, 4): cell 4's 2 in W0 and W3, cell 1's 1 in W4, cell 4's 1 in W5
    np.testing.assert_array_equal(ring_w1[:, 0], [NAN, 2, 0, 0, 2, 1, 1])
    # corner 8 (neighbours 4, 5, 7): its own incident in W3 is not its neighbours'
    np.testing.assert_array_equal(ring_w1[:, 8], [NAN, 2, 0, 0, 2, 0, 1])
    # corner 6 (neighbours 3, 4, 7): cell 0's W1 incident is two rows away, so not counted (no wrap-around)
    np.testing.assert_array_equal(ring_w1[:, 6], [NAN, 2, 0, 0, 2, 0, 1])
    # cell 2 (neighbours 1, 4, 5): cell 1 in W4
    np.testing.assert_array_equal(ring_w1[:, 2], [NAN, 2, 0, 0, 2, 1, 1])


def test_periods_since_last(hand):
    since = feature(hand, "periods_since_last")
    np.testing.assert_array_equal(since[:, 4], [NAN, 1, 2, 3, 1, 2, 1])
    np.testing.assert_array_equal(since[:, 0], [NAN, NAN, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(since[:, 1], [NAN, NAN, NAN, NAN, NAN, 1, 2])
    assert np.all(np.isnan(since[:, 7]))


def test_ewm_and_rate(hand):
    # half-life 1: raw[t] = 0.5 * raw[t-1] + 0.5 * count[t-1], raw[0] = 0, divided by the weights used, 1 - 0.5**t
    # (a weighted mean, undefined before any period); counts of cell 4 are 2, 0, 0, 2, 0, 1
    norm = 1 - 0.5 ** np.arange(7)
    raw4 = np.array([0, 1, 0.5, 0.25, 1.125, 0.5625, 0.78125])
    raw0 = np.array([0, 0, 0.5, 0.25, 0.125, 0.0625, 0.03125])
    np.testing.assert_allclose(feature(hand, "ewm_hl1")[1:, 4], raw4[1:] / norm[1:], rtol=1e-6)
    np.testing.assert_allclose(feature(hand, "ewm_hl1")[1:, 0], raw0[1:] / norm[1:], rtol=1e-6)
    assert feature(hand, "ewm_hl1")[1, 4] == 2  # after one period the mean is that period's count
    assert np.isnan(feature(hand, "ewm_hl1")[0]).all()
    assert np.all(feature(hand, "ewm_hl1")[1:, 7] == 0)
    np.testing.assert_allclose(feature(hand, "rate_all")[:, 4], [NAN, 2, 1, 2 / 3, 1, 0.8, 5 / 6], rtol=1e-6)


def test_ewm_half_life_halves_the_weight(base_cfg):
    # a single incident in W0: with half-life 2 its weight falls by half every 2 periods
    panel = build_panel(configure(base_cfg, halflives=(2.0,)), incidents([("2024-01-02", 4, "A")]), GRID)
    lam = 0.5 ** 0.5
    ewm = feature(panel, "ewm_hl2")[:, 4] * (1 - lam ** np.arange(7))  # undo the normalisation: the raw weights
    np.testing.assert_allclose(ewm[1:], [(1 - lam) * lam**k for k in range(6)], rtol=1e-6)
    assert ewm[3] == pytest.approx(ewm[1] / 2, rel=1e-6) and ewm[5] == pytest.approx(ewm[3] / 2, rel=1e-6)


def test_week_of_year(hand):
    np.testing.assert_array_equal(feature(hand, "week_of_year")[:, 0], [1, 2, 3, 4, 5, 6, 7])
    assert np.all(feature(hand, "week_of_year") == feature(hand, "week_of_year")[:, :1])


def test_to_frame_long_table(hand):
    frame = hand.to_frame()
    assert len(frame) == 7 * 9
    last = frame[frame["period_start"] == pd.Timestamp("2024-02-12")]
    assert last["y"].isna().all() and last["count_w1"].tolist()[4] == 1
    row = frame[(frame["period_start"] == pd.Timestamp("2024-01-22")) & (frame["cell_id"] == GRID.cell_id[4])].iloc[0]
    assert row["y"] == 2 and row["count_w1"] == 0 and row["periods_since_last"] == 3


# --- periods ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_end, n_complete", [
    (date(2024, 2, 10), 5),  # Saturday: W5 lacks its Sunday
    (date(2024, 2, 11), 6),  # Sunday: W5 complete
    (date(2024, 2, 12), 6),  # Monday: W6 has one day
    (date(2024, 2, 18), 7),  # Sunday: W6 complete, its Feb 13 incident counted
])
def test_incomplete_last_period_is_excluded(base_cfg, data_end, n_complete):
    panel = build_panel(configure(base_cfg, data_end=data_end), incidents(HAND), GRID)
    assert panel.n_periods == n_complete
    assert panel.next_period_start == MON + n_complete * WEEK
    assert panel.counts.sum() == {5: 7, 6: 8, 7: 9}[n_complete]


def test_data_end_defaults_to_the_last_incident(base_cfg):
    # the last incident is on Tuesday Feb 20 (W7), so W7 is incomplete and W6 (with the Feb 13 incident) is the last
    panel = build_panel(configure(base_cfg, data_end=None), incidents(HAND), GRID)
    assert panel.n_periods == 7 and panel.counts.sum() == 9
    assert panel.next_period_start == pd.Timestamp("2024-02-19")


def test_periods_start_at_the_earliest_date_when_configured(base_cfg):
    panel = build_panel(configure(base_cfg, earliest=date(2023, 12, 20)), incidents(HAND), GRID)
    assert panel.period_starts[0] == pd.Timestamp("2023-12-18")  # the Monday on or before Dec 20
    assert panel.n_periods == 8 and panel.counts[:2].sum() == 0
    np.testing.assert_array_equal(panel.target[2:, 4], [2, 0, 0, 2, 0, 1])


def test_sunday_night_belongs_to_the_week_of_the_previous_monday(base_cfg):
    rows = [("2024-01-01 00:00", 0, "A"), ("2024-01-14 23:59", 1, "A"), ("2024-01-15 00:00", 2, "A")]
    panel = build_panel(configure(base_cfg, data_end=date(2024, 1, 28)), incidents(rows), GRID)
    assert panel.n_periods == 4
    assert panel.target[1, 1] == 1 and panel.target[2, 1] == 0  # Sun Jan 14 23:59 -> week of Mon Jan 8
    assert panel.target[2, 2] == 1 and panel.target[1, 2] == 0  # Mon Jan 15 00:00 -> its own week


def test_weeks_starting_sunday(base_cfg):
    rows = [("2024-01-01 00:00", 0, "A"), ("2024-01-07 23:59", 1, "A"), ("2024-01-13 23:59", 2, "A")]
    panel = build_panel(configure(base_cfg, freq="W-SUN", data_end=date(2024, 1, 19)), incidents(rows), GRID)
    assert list(panel.period_starts) == list(pd.to_datetime(["2023-12-31", "2024-01-07", "2024-01-14"]))
    assert panel.n_periods == 2
    assert panel.target[0, 0] == 1 and panel.target[1, 1] == 1 and panel.target[1, 2] == 1


def test_daily_periods(base_cfg):
    panel = build_panel(configure(base_cfg, freq="D", data_end=date(2024, 1, 10), windows=(1, 2), group_windows=(1,)),
                        incidents(HAND), GRID)
    assert panel.n_periods == 10
    assert list(panel.period_starts) == list(pd.date_range("2024-01-01", "2024-01-11", freq="D"))
    assert panel.target[0, 4] == 1 and panel.target[6, 4] == 1 and panel.target[7, 0] == 1  # Jan 1, Jan 7, Jan 8
    assert panel.target.sum() == 3
    np.testing.assert_array_equal(feature(panel, "count_w2")[:, 4], [NAN, NAN, 1, 0, 0, 0, 0, 1, 1, 0, 0])


def test_month_start_periods(base_cfg):
    cfg = configure(base_cfg, freq="MS", data_end=date(2024, 2, 29), windows=(1,), group_windows=(1,))
    panel = build_panel(cfg, incidents(HAND), GRID)
    assert list(panel.period_starts) == list(pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]))
    assert panel.n_periods == 2
    assert panel.target[0].sum() == 7 and panel.target[1].sum() == 3  # Jan 29 is January; Feb 5, 13, 20 February
    np.testing.assert_array_equal(panel.target[:, 4], [4, 3])
    with pytest.raises(ValueError, match="1 complete period"):  # February is not complete on the 28th
        build_panel(configure(base_cfg, freq="MS", data_end=date(2024, 2, 28)), incidents(HAND), GRID)


@pytest.mark.parametrize("first, data_end, freq, starts, n", [
    ("2024-01-03 10:00", "2024-01-21", "W-MON", ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"], 3),
    ("2024-01-03 10:00", "2024-01-20", "W-MON", ["2024-01-01", "2024-01-08", "2024-01-15"], 2),
    ("2024-01-01 00:00", "2024-01-21 23:00", "W-MON", ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"], 3),
    ("2024-01-15", "2024-03-31", "MS", ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"], 3),
    ("2024-01-15", "2024-03-30", "MS", ["2024-01-01", "2024-02-01", "2024-03-01"], 2),
    ("2024-01-01 15:00", "2024-01-03 18:00", "D", ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"], 3),
])
def test_period_starts_for(first, data_end, freq, starts, n):
    got, n_complete = period_starts_for(pd.Timestamp(first), pd.Timestamp(data_end), freq)
    assert list(got) == list(pd.to_datetime(starts)) and n_complete == n


def test_fewer_than_two_periods_is_refused(base_cfg):
    with pytest.raises(ValueError, match="at least 2"):
        build_panel(configure(base_cfg, data_end=date(2024, 1, 13)), incidents(HAND), GRID)


# --- until(t) ---------------------------------------------------------------------------------------------------------


def test_until_hides_period_t(hand):
    for t in range(hand.n_periods + 1):
        past = hand.until(t)
        assert past.n_periods == t and past.target.shape == (t, 9) and past.counts.shape == (t, 9, 2)
        assert past.X.shape == (t + 1, 9, 15) and len(past.period_starts) == t + 1
        assert past.next_period_start == hand.period_starts[t]
        np.testing.assert_array_equal(past.X_next, hand.X[t])
        np.testing.assert_array_equal(past.target, hand.target[:t])
    with pytest.raises(IndexError):
        hand.until(hand.n_periods + 1)


def test_period_index(hand):
    assert hand.period_index("2024-01-22") == 3
    with pytest.raises(ValueError, match="not a period start"):
        hand.period_index("2024-01-23")


# --- leakage and order (property tests) -----------------------------------------------------------------------------

T_LEAK = 10  # weeks Jan 1 .. Mar 10 2024 complete
LEAK_END = date(2024, 3, 10)
SECONDS = 7 * 86400


def rows_between(lo: int, hi: int, max_size: int = 25):
    """Incidents with times in [lo, hi) seconds after Jan 1, edges made likely."""
    when = st.one_of(st.integers(lo, hi - 1), st.sampled_from([lo, hi - 1]))
    return st.lists(st.tuples(when, st.integers(0, 8), st.sampled_from(["A", "B"])), max_size=max_size)


def frame_of(rows) -> pd.DataFrame:
    return incidents([(MON + pd.Timedelta(seconds=s), c, g) for s, c, g in rows])


def build_leak(base_cfg, rows):
    cfg = configure(base_cfg, data_end=LEAK_END, earliest=date(2024, 1, 1), windows=(1, 2, 4), halflives=(2.0,))
    return build_panel(cfg, frame_of(rows), GRID)


def assert_same_past(a, b, t):
    assert a.feature_names == b.feature_names
    np.testing.assert_array_equal(a.X[: t + 1], b.X[: t + 1])  # NaN == NaN here
    np.testing.assert_array_equal(a.counts[:t], b.counts[:t])
    np.testing.assert_array_equal(a.target[:t], b.target[:t])
    pa, pb = a.until(t), b.until(t)
    np.testing.assert_array_equal(pa.X, pb.X)
    np.testing.assert_array_equal(pa.target, pb.target)
    assert list(pa.period_starts) == list(pb.period_starts)


@PROPS
@given(st.data())
def test_data_at_or_after_period_t_never_changes_features_up_to_t(base_cfg, data):
    t = data.draw(st.integers(1, T_LEAK), label="t")
    cut = t * SECONDS
    before = data.draw(rows_between(0, cut), label="before")
    # two different futures: changed, added, removed rows at or after period t (some beyond the data end)
    after_a = data.draw(rows_between(cut, (T_LEAK + 2) * SECONDS), label="after_a")
    after_b = data.draw(rows_between(cut, (T_LEAK + 2) * SECONDS), label="after_b")
    a, b = build_leak(base_cfg, before + after_a), build_leak(base_cfg, before + after_b)
    assert a.n_periods == b.n_periods == T_LEAK
    assert_same_past(a, b, t)


def test_a_change_in_period_t_shows_from_period_t_plus_1(base_cfg):
    """The leakage test above can fail: the same change one period earlier does show up in X[t]."""
    t = 4
    a = build_leak(base_cfg, [(0, 4, "A")])
    b = build_leak(base_cfg, [(0, 4, "A"), (t * SECONDS, 4, "A")])  # first second of period t
    assert_same_past(a, b, t)
    assert feature(a, "count_w1")[t + 1, 4] == 0 and feature(b, "count_w1")[t + 1, 4] == 1
    assert b.target[t, 4] == 1


@PROPS
@given(rows_between(0, (T_LEAK + 1) * SECONDS, max_size=40), st.randoms(use_true_random=False))
def test_shuffling_input_rows_changes_nothing(base_cfg, rows, rnd):
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    a, b = build_leak(base_cfg, rows), build_leak(base_cfg, shuffled)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.target, b.target)
    np.testing.assert_array_equal(a.X, b.X)


@PROPS
@given(rows_between(0, (T_LEAK + 1) * SECONDS, max_size=40))
def test_features_match_a_brute_force_reference(base_cfg, rows):
    panel = build_leak(base_cfg, rows)
    T = T_LEAK
    y = np.zeros((T, 9))
    for s, c, _ in rows:
        if s // SECONDS < T:
            y[s // SECONDS, c] += 1
    np.testing.assert_array_equal(panel.target, y)
    lam = 0.5 ** 0.5
    for c in range(9):
        for t in range(T + 1):
            for w in (1, 2, 4):
                own = y[t - w:t, c].sum() if t >= w else NAN
                ring = sum(y[t - w:t, n].sum() for n in NEIGHBOURS[c]) if t >= w else NAN
                np.testing.assert_array_equal(feature(panel, f"count_w{w}")[t, c], own)
                np.testing.assert_array_equal(feature(panel, f"ring1_count_w{w}")[t, c], ring)
            past = [k for k in range(t) if y[k, c] > 0]
            np.testing.assert_array_equal(feature(panel, "periods_since_last")[t, c], t - past[-1] if past else NAN)
            np.testing.assert_allclose(feature(panel, "rate_all")[t, c], y[:t, c].mean() if t else NAN, rtol=1e-6)
            ewm = sum((1 - lam) * lam ** (t - 1 - k) * y[k, c] for k in range(t)) / (1 - lam**t) if t else NAN
            np.testing.assert_allclose(feature(panel, "ewm_hl2")[t, c], ewm, rtol=1e-5, atol=1e-6)


def test_truncated_data_gives_the_same_features_as_until(base_cfg):
    """A panel built from the data known at the start of period t matches the full panel's view of period t."""
    rows = [(k * 86400 * 3 + 3600 * (k % 7), k % 9, "AB"[k % 2]) for k in range(23)]
    full = build_leak(base_cfg, rows)
    t = 6
    cfg = configure(base_cfg, data_end=(MON + t * WEEK - pd.Timedelta(days=1)).date(), earliest=date(2024, 1, 1),
                    windows=(1, 2, 4), halflives=(2.0,))
    known = build_panel(cfg, frame_of([r for r in rows if r[0] < t * SECONDS]), GRID)
    assert known.n_periods == t
    past = full.until(t)
    np.testing.assert_array_equal(known.X, past.X)
    np.testing.assert_array_equal(known.target, past.target)
    assert known.feature_names == past.feature_names
