"""Every registered feature family: no leakage, order-free, the features it declares, and hand-checked values."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

from hotspot.features.area import StudyArea
from hotspot.features.config import ConfigError, PeriodConfig, load_config
from hotspot.features.families import FAMILIES, selected_families
from hotspot.features.grid import Grid
from hotspot.features.panel import build_panel
from tests.conftest import synthetic_incidents, write_config

PROPS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAN = np.nan
START = pd.Timestamp("2024-01-01")  # a Monday: week 0
WEEK = 7 * 86400  # seconds
T = 60  # complete weeks: Jan 1 2024 .. Feb 23 2025, so a year and more of history for the yearly features
DATA_END = (START + pd.Timedelta(weeks=T) - pd.Timedelta(days=1)).date()
GROUPS = ("A", "B", "C")
PREMISES = ("Apartment", "House", "Outside", "Commercial / Retail")

# a 3 x 3 grid of 100 m cells, all inside the area; compact index = row * 3 + col, row 0 in the south
#   6 7 8
#   3 4 5
#   0 1 2
X0, Y0 = 600_000, 4_800_000
GRID = Grid.from_area(StudyArea(CRS.from_epsg(32617), shapely.box(X0, Y0, X0 + 300, Y0 + 300), "test"), 100.0, 1000)
NEIGHBOURS = {c: [r * 3 + k for r in range(3) for k in range(3)
                  if (r, k) != divmod(c, 3) and abs(r - c // 3) <= 1 and abs(k - c % 3) <= 1] for c in range(9)}

# how each family names its features (a new family must be added here, see test_every_family_is_covered)
PATTERNS = {
    "temporal": r"count_w\d+|rate_all|ewm_hl[\d.]+|trend_\d+v\d+|same_period_last_year|periods_since_last",
    "offense_groups": r"count_w\d+_(a|b|c)",
    "spatial": r"ring\d+_count_w\d+|kde[\d.]+m_w\d+|idw\d+_count_w\d+",
    "near_repeat": r"near_repeat_w\d+",
    "time_of_day": r"tod_(night|morning|afternoon|evening)",
    "premises": r"premises_(apartment|house|outside|commercial___retail)",
    "calendar": r"week_of_year|month|holidays_in_period",
    "context": r"ctx_stops_(count|dist_m|kde[\d.]+m)",
}

# added to write_config's [features] (windows [1, 2, 4, 8], group_windows [4], ring_windows [1, 4], kernel_windows
# [4], idw_window 4, mix_window 8)
FEATURES_TOML = """
holidays_country = "CA"
rings = [1, 2]
kernel_bandwidths_m = [100.0]
near_repeat_windows = [1, 2]
context_bandwidths_m = [150.0]
"""


def study_toml(folder: Path, *, premises: bool = True, context: bool = True, features: str = "") -> Path:
    """A study-area TOML with a premises column, Canadian holidays and a point context layer (stops)."""
    folder.mkdir(parents=True, exist_ok=True)
    stops = gpd.GeoDataFrame({"name": ["a", "b", "c"]}, crs=GRID.crs, geometry=[
        shapely.Point(X0 + 150, Y0 + 150), shapely.Point(X0 + 20, Y0 + 270), shapely.Point(X0 + 900, Y0 + 50)])
    stops.to_file(folder / "stops.geojson", driver="GeoJSON")
    extra = f"[period]\ndata_end = {DATA_END.isoformat()}\n"
    if context:
        extra += '\n[[context]]\nname = "stops"\npath = "stops.geojson"\n'
    path = write_config(folder, synthetic_incidents(n=50, weeks=3),
                        extra_incidents=f"earliest_date = {START.date().isoformat()}\n"
                        + ('premises = "premises"' if premises else ""),
                        extra=extra)
    text = path.read_text()
    path.write_text(text.replace("[features]\n", "[features]\n" + FEATURES_TOML + features + "\n", 1))
    return path


@pytest.fixture(scope="module")
def study_cfg(tmp_path_factory):
    """Every family asked for explicitly, so a family that cannot be built fails the test instead of hiding."""
    cfg = load_config(study_toml(tmp_path_factory.mktemp("families")))
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"families": list(FAMILIES)})})


def incidents(rows, *, premises: bool = True) -> pd.DataFrame:
    """Accepted incidents as ingest hands them to build_panel: rows of (seconds after START, cell, group, premises)."""
    when = START + pd.to_timedelta([r[0] for r in rows], unit="s")
    frame = pd.DataFrame({
        "occurred_at": np.asarray(when, dtype="datetime64[ns]"),
        "offense": pd.Categorical([r[2] for r in rows], categories=list(GROUPS)),
        "cell": np.array([r[1] for r in rows], dtype=np.int32),
        "hour": np.asarray(when.hour, dtype=np.int8),
    })
    if premises:
        frame["premises"] = pd.Categorical([r[3] for r in rows], categories=list(PREMISES))
    return frame


def at(week: int, day: int = 0, hour: float = 0.0) -> int:
    """Seconds after START of `hour` o'clock on `day` (0 = Monday) of `week`."""
    return int(week * WEEK + day * 86400 + hour * 3600)


def feature(panel, name: str) -> np.ndarray:
    return panel.X[:, :, panel.feature_names.index(name)]


def changed_features(a, b, t: int) -> list[str]:
    assert a.feature_names == b.feature_names
    return [name for f, name in enumerate(a.feature_names)
            if not np.array_equal(a.X[: t + 1, :, f], b.X[: t + 1, :, f], equal_nan=True)]


# --- leakage and order (property tests over every family) -------------------------------------------------------------


def rows_between(lo: int, hi: int, max_size: int = 30):
    """Incidents with times in [lo, hi) seconds after START (period edges made likely), any cell/group/premises."""
    when = st.one_of(st.integers(lo, hi - 1), st.sampled_from([lo, hi - 1]))
    return st.lists(st.tuples(when, st.integers(0, 8), st.sampled_from(GROUPS), st.sampled_from(PREMISES)),
                    max_size=max_size)


@st.composite
def moved(draw, rows, lo: int, hi: int):
    """The same incidents, each moved in time (within [lo, hi)), space, offence, hour or premises, or dropped."""
    out = []
    for s, c, g, p in rows:
        how = draw(st.sampled_from(["keep", "drop", "time", "hour", "cell", "group", "premises"]))
        if how == "drop":
            continue
        if how == "time":
            s = draw(st.integers(lo, hi - 1))
        elif how == "hour":  # the same day, another time of day (clipped to stay at or after the cut)
            s = max(lo, min(hi - 1, s - s % 86400 + draw(st.integers(0, 86399))))
        elif how == "cell":
            c = draw(st.integers(0, 8))
        elif how == "group":
            g = draw(st.sampled_from(GROUPS))
        elif how == "premises":
            p = draw(st.sampled_from(PREMISES))
        out.append((s, c, g, p))
    return out


@PROPS
@given(st.data())
def test_data_at_or_after_period_t_never_changes_any_feature_up_to_t(study_cfg, data):
    t = data.draw(st.one_of(st.integers(1, T), st.integers(53, T)), label="t")  # often late enough for the year
    cut, end = t * WEEK, (T + 2) * WEEK  # some rows beyond the data end too
    before = data.draw(rows_between(0, cut), label="before")
    after_a = data.draw(rows_between(cut, end), label="after_a")
    after_b = data.draw(moved(after_a, cut, end), label="after_b") + data.draw(rows_between(cut, end, 10),
                                                                               label="added")
    a, b = build_panel(study_cfg, incidents(before + after_a), GRID), build_panel(study_cfg, incidents(
        before + after_b), GRID)
    assert set(a.feature_families.values()) == set(FAMILIES) and a.n_periods == b.n_periods == T
    leaked = changed_features(a, b, t)
    assert not leaked, f"features up to period {t} changed when only data at or after period {t} changed: {leaked}"


def test_a_change_in_period_t_shows_in_every_history_family_from_t_plus_1(study_cfg):
    """The leakage test can fail: an incident in period t reaches each family that looks at history in row t + 1."""
    t = 55
    base = [(at(w, 2, 10), 4, "A", "House") for w in range(0, T, 3)]
    a = build_panel(study_cfg, incidents(base), GRID)
    b = build_panel(study_cfg, incidents(base + [(at(t, 0, 2), 4, "B", "Outside")]), GRID)
    assert changed_features(a, b, t) == []
    seen_next = {b.feature_families[name] for name in changed_features(a, b, t + 1)}
    assert seen_next == {"temporal", "offense_groups", "spatial", "near_repeat", "time_of_day", "premises"}


@PROPS
@given(rows_between(0, (T + 1) * WEEK, max_size=60), st.randoms(use_true_random=False))
def test_shuffling_input_rows_changes_nothing(study_cfg, rows, rnd):
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    a, b = build_panel(study_cfg, incidents(rows), GRID), build_panel(study_cfg, incidents(shuffled), GRID)
    assert a.feature_names == b.feature_names
    np.testing.assert_array_equal(a.counts, b.counts)
    different = [n for f, n in enumerate(a.feature_names) if not np.array_equal(a.X[:, :, f], b.X[:, :, f],
                                                                                 equal_nan=True)]
    assert different == []


# --- what each family declares ----------------------------------------------------------------------------------------

SOME_ROWS = [(at(w, w % 7, (5 * w) % 24), w % 9, GROUPS[w % 3], PREMISES[w % 4]) for w in range(T)]


@pytest.fixture(scope="module")
def full(study_cfg):
    return build_panel(study_cfg, incidents(SOME_ROWS), GRID)


def test_every_family_is_covered():
    assert set(PATTERNS) == set(FAMILIES)
    assert list(FAMILIES) == ["temporal", "offense_groups", "spatial", "near_repeat", "time_of_day", "premises",
                              "calendar", "context"]


def test_each_family_builds_the_features_it_declares(full):
    assert full.skipped_families == {}
    assert set(full.feature_families) == set(full.feature_names)
    assert set(full.feature_families.values()) == set(FAMILIES)
    for name in full.feature_names:
        fam = full.feature_families[name]
        assert re.fullmatch(PATTERNS[fam], name), f"{name} is not named like a {fam} feature"
        assert full.feature_descriptions[name].strip(), f"{name} has no description"
        assert full.feature_units[name].strip(), f"{name} has no unit"

    def of(fam):
        return [n for n in full.feature_names if full.feature_families[n] == fam]

    assert of("time_of_day") == ["tod_night", "tod_morning", "tod_afternoon", "tod_evening"]
    assert of("premises") == ["premises_apartment", "premises_house", "premises_outside",
                              "premises_commercial___retail"]
    assert of("offense_groups") == ["count_w4_a", "count_w4_b", "count_w4_c"]
    assert of("near_repeat") == ["near_repeat_w1", "near_repeat_w2"]
    assert of("calendar") == ["week_of_year", "month", "holidays_in_period"]
    assert of("context") == ["ctx_stops_count", "ctx_stops_dist_m", "ctx_stops_kde150m"]
    assert of("spatial") == ["ring1_count_w1", "ring1_count_w4", "ring2_count_w1", "ring2_count_w4", "kde100m_w4",
                             "idw3_count_w4"]
    assert {full.feature_units[n] for n in of("time_of_day") + of("premises")} == {"share"}
    assert full.feature_units["ctx_stops_dist_m"] == "m"
    assert full.X.shape == (T + 1, 9, len(full.feature_names))


def test_min_history_is_the_longest_family_lookback(study_cfg, full):
    expected = max(FAMILIES[f].lookback(study_cfg, 52) for f in FAMILIES)
    assert full.min_history == expected == 8


def test_static_families_are_constant_over_periods(full):
    for name in full.feature_names:
        if full.feature_families[name] == "context":
            values = feature(full, name)
            assert np.all(values == values[:1]), name


def _build_with(tmp_path, features: str, **kwargs):
    cfg = load_config(study_toml(tmp_path / "study", features=features, **kwargs))
    return cfg, build_panel(cfg, incidents(SOME_ROWS, premises=kwargs.get("premises", True)), GRID)


def test_families_selects(tmp_path):
    cfg, panel = _build_with(tmp_path, 'families = ["near_repeat", "calendar"]')
    assert selected_families(cfg) == ["near_repeat", "calendar"]
    assert panel.feature_names == ("near_repeat_w1", "near_repeat_w2", "week_of_year", "month", "holidays_in_period")
    assert set(panel.feature_families.values()) == {"near_repeat", "calendar"}


def test_exclude_removes(tmp_path):
    cfg, panel = _build_with(tmp_path, 'exclude = ["spatial", "context"]')
    assert set(panel.feature_families.values()) == set(FAMILIES) - {"spatial", "context"}
    assert not any(n.startswith(("ring", "kde", "idw", "ctx_")) for n in panel.feature_names)
    assert "near_repeat_w1" in panel.feature_names and "tod_night" in panel.feature_names


@pytest.mark.parametrize("line, name", [('families = ["temporal", "weather"]', "weather"),
                                        ('exclude = ["spatail"]', "spatail")])
def test_an_unknown_family_is_a_config_error_naming_it(tmp_path, line, name):
    with pytest.raises(ConfigError) as info:
        load_config(study_toml(tmp_path / "study", features=line))
    message = str(info.value)
    assert f"'{name}'" in message and "unknown feature family" in message and "features" in message
    assert "temporal" in message  # the known families are listed


def test_premises_asked_for_without_a_premises_column_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"'premises' was asked for .* incidents\.premises is not configured"):
        _build_with(tmp_path, 'families = ["temporal", "premises"]', premises=False)


def test_default_families_skip_premises_and_say_why(tmp_path):
    cfg, panel = _build_with(tmp_path, "", premises=False)
    assert cfg.features.families is None
    assert panel.skipped_families == {"premises": "incidents.premises is not configured"}
    assert not any(n.startswith("premises_") for n in panel.feature_names)
    assert set(panel.feature_families.values()) == set(FAMILIES) - {"premises"}


def test_default_families_skip_what_has_no_input(study_cfg):
    """One offence group, no context layer, hours unknown: those families are skipped with their reasons."""
    cfg = study_cfg.model_copy(update={
        "features": study_cfg.features.model_copy(update={"families": None}), "context": [],
        "incidents": study_cfg.incidents.model_copy(update={"hour_known": False})})
    panel = build_panel(cfg, incidents([(at(w), 4, "A", "House") for w in range(T)]).assign(
        offense=lambda f: pd.Categorical(["A"] * len(f), categories=["A"])), GRID)
    assert panel.skipped_families == {"offense_groups": "only one offence group",
                                      "time_of_day": "incidents.hour_known = false",
                                      "context": "no [[context]] layers configured"}


def test_premises_and_hours_through_ingest(tmp_path):
    """From a real file: the premises column and the hours of the timestamps feed their families."""
    data = synthetic_incidents(n=600, weeks=12, seed=3)
    data["premises"] = np.random.default_rng(3).choice(["House", "Outside", ""], size=len(data))
    path = write_config(tmp_path / "ingest", data, extra_incidents='premises = "premises"')
    cfg = load_config(path)
    from hotspot.features.ingest import validate

    result = validate(cfg)
    panel = build_panel(cfg, result.accepted, result.grid)
    assert panel.skipped_families == {"context": "no [[context]] layers configured"}
    assert [n for n in panel.feature_names if n.startswith("premises_")] == [
        "premises_house", "premises_outside", "premises_unknown"]  # the empty value is "unknown"
    t = panel.n_periods
    hot = int(np.argmax(panel.target[t - 8:].sum(axis=0)))
    shares = np.array([feature(panel, f"tod_{b}")[t, hot] for b in ("night", "morning", "afternoon", "evening")])
    recent = result.accepted[(result.accepted["cell"] == hot)
                             & (result.accepted["occurred_at"] >= panel.period_starts[t - 8])
                             & (result.accepted["occurred_at"] < panel.period_starts[t])]
    expected = np.bincount(recent["occurred_at"].dt.hour // 6, minlength=4) / len(recent)
    np.testing.assert_allclose(shares, expected, rtol=1e-6)


# --- hand-checked values ----------------------------------------------------------------------------------------------


def hand_cfg(base, *, families, freq="W-MON", data_end=DATA_END, targets=None, **features):
    return base.model_copy(update={
        "period": PeriodConfig(freq=freq, data_end=data_end),
        "features": base.features.model_copy(update={"families": families, **features}),
        "model": base.model.model_copy(update={"target_offenses": targets}),
    })


def test_time_of_day_shares(study_cfg):
    # cell 4, weeks 0..3 (mix window 4): night 1, morning 2, afternoon 3, evening 2, any offence; the bins are
    # [0, 6), [6, 12), [12, 18), [18, 24)
    rows = [(at(0, 0, 0), 4, "A", "House"),             # Mon 00:00 night
            (at(1, 1, 6), 4, "B", "House"),             # 06:00 morning
            (at(1, 2, 11 + 59 / 60), 4, "C", "House"),  # 11:59 morning
            (at(2, 3, 12), 4, "A", "House"),            # 12:00 afternoon
            (at(2, 3, 17 + 59 / 60), 4, "A", "House"),  # 17:59 afternoon
            (at(3, 6, 14.5), 4, "B", "House"),          # Sun 14:30 afternoon
            (at(3, 0, 18), 4, "A", "House"),            # 18:00 evening
            (at(3, 6, 23 + 59 / 60), 4, "A", "House"),  # Sun 23:59 evening
            (at(4, 0, 3), 4, "A", "House"),             # week 4: night
            (at(2, 0, 9), 0, "A", "House")]             # another cell
    panel = build_panel(hand_cfg(study_cfg, families=["time_of_day"], mix_window=4), incidents(rows), GRID)
    shares = np.stack([feature(panel, f"tod_{b}") for b in ("night", "morning", "afternoon", "evening")], axis=-1)
    assert np.isnan(shares[:4]).all()  # fewer than 4 periods of history
    np.testing.assert_allclose(shares[4, 4], [1 / 8, 2 / 8, 3 / 8, 2 / 8], rtol=1e-6)
    np.testing.assert_allclose(shares[5, 4], [1 / 8, 2 / 8, 3 / 8, 2 / 8], rtol=1e-6)  # W0's night out, W4's in
    np.testing.assert_allclose(shares[6, 4], [1 / 6, 0, 3 / 6, 2 / 6], rtol=1e-6)  # weeks 2..5
    np.testing.assert_allclose(shares[4, 0], [0, 1, 0, 0])
    assert np.isnan(shares[4, 1]).all()  # no incidents: the share is missing, not 0
    np.testing.assert_allclose(np.nansum(shares[4:], axis=-1)[~np.isnan(shares[4:, :, 0])], 1, rtol=1e-6)


def test_premises_shares(study_cfg):
    rows = [(at(0, 1, 10), 2, "A", "Apartment"), (at(1, 1, 10), 2, "B", "Apartment"),
            (at(1, 2, 10), 2, "C", "Outside"), (at(3, 6, 23.9), 2, "A", "Commercial / Retail"),
            (at(4, 0, 0), 2, "A", "House")]
    panel = build_panel(hand_cfg(study_cfg, families=["premises"], mix_window=4), incidents(rows), GRID)
    names = ["premises_apartment", "premises_house", "premises_outside", "premises_commercial___retail"]
    shares = np.stack([feature(panel, n) for n in names], axis=-1)
    np.testing.assert_allclose(shares[4, 2], [2 / 4, 0, 1 / 4, 1 / 4], rtol=1e-6)
    np.testing.assert_allclose(shares[5, 2], [1 / 4, 1 / 4, 1 / 4, 1 / 4], rtol=1e-6)
    np.testing.assert_allclose(shares[8, 2], [0, 1, 0, 0])
    assert np.isnan(shares[9, 2]).all()  # nothing in weeks 5..8
    assert np.isnan(shares[4, 4]).all()


def test_holidays_in_period_canada(study_cfg):
    panel = build_panel(hand_cfg(study_cfg, families=["calendar"]), incidents([(at(0), 4, "A", "House")]), GRID)
    holidays = feature(panel, "holidays_in_period")
    assert np.all(holidays == holidays[:, :1])
    week = {str(d.date()): holidays[i, 0] for i, d in enumerate(panel.period_starts)}
    assert week["2024-07-01"] == 1  # Canada Day, a Monday: the first day of its week
    assert week["2024-06-24"] == 0  # the week before ends on Sunday June 30
    assert week["2024-07-08"] == 0
    assert week["2024-01-01"] == 1 and week["2024-03-25"] == 1  # New Year's Day, Good Friday (Mar 29)
    assert week["2024-12-23"] == 1 and week["2024-12-30"] == 1  # Christmas (Wed), New Year 2025 (Wed)
    assert week["2024-09-02"] == 1  # Labour Day
    assert holidays[:, 0].sum() == 6  # 5 in 2024, New Year 2025; Good Friday 2025 is after the last week (Feb 24)
    assert feature(panel, "month")[26, 0] == 7 and feature(panel, "week_of_year")[26, 0] == 27
    no_country = build_panel(hand_cfg(study_cfg, families=["calendar"], holidays_country=None),
                             incidents([(at(0), 4, "A", "House")]), GRID)
    assert "holidays_in_period" not in no_country.feature_names


def test_holidays_in_monthly_periods_count_each_holiday_once(study_cfg):
    """Months differ in length: a June period must not reach into July 1 (Canada Day)."""
    panel = build_panel(hand_cfg(study_cfg, families=["calendar"], freq="MS", data_end=date(2024, 12, 31)),
                        incidents([(at(0), 4, "A", "House")]), GRID)
    assert panel.period_starts[0] == START and len(panel.period_starts) == 13
    np.testing.assert_array_equal(feature(panel, "holidays_in_period")[:, 0],
                                  [1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1])  # Jan..Dec 2024, Jan 2025


def test_near_repeat_counts_any_offence_in_the_cell_and_its_neighbours(study_cfg):
    # week 2: cells 0, 4, 4, 8 and 2; the label counts only A, near repeat counts every offence
    rows = [(at(2, 1), 0, "A", "House"), (at(2, 2), 4, "B", "House"), (at(2, 3), 4, "A", "House"),
            (at(2, 4), 8, "C", "House"), (at(2, 6, 23.9), 2, "B", "House"), (at(4, 0), 6, "A", "House")]
    panel = build_panel(hand_cfg(study_cfg, families=["temporal", "near_repeat"], targets=["A"]), incidents(rows),
                        GRID)
    near = feature(panel, "near_repeat_w1")
    assert np.isnan(near[0]).all()
    np.testing.assert_array_equal(near[1:3], 0)
    np.testing.assert_array_equal(near[3], [3, 4, 3, 3, 5, 4, 2, 3, 3])
    np.testing.assert_array_equal(near[4], 0)
    np.testing.assert_array_equal(near[5], [0, 0, 0, 1, 1, 0, 1, 1, 0])  # week 4: cell 6 (corner)
    np.testing.assert_array_equal(feature(panel, "near_repeat_w2")[4], [3, 4, 3, 3, 5, 4, 2, 3, 3])
    np.testing.assert_array_equal(feature(panel, "count_w1")[3], [1, 0, 0, 0, 1, 0, 0, 0, 0])  # only A
    # brute force on every row
    counts = np.zeros((T, 9))
    for s, c, _, _ in rows:
        counts[s // WEEK, c] += 1
    for t in range(1, T + 1):
        expected = [counts[t - 1, c] + sum(counts[t - 1, n] for n in NEIGHBOURS[c]) for c in range(9)]
        np.testing.assert_array_equal(near[t], expected)


YEAR_ROWS = [(at(w, 2, 9), 4, "A", "House") for w in (0, 1, 2)] + [
    (at(5, 1), 4, "A", "House"), (at(5, 4), 4, "B", "House"), (at(5, 4), 1, "A", "House"), (at(55, 3), 4, "A", "House")]


def test_same_period_last_year_and_trend_by_hand(study_cfg):
    panel = build_panel(hand_cfg(study_cfg, families=["temporal"]), incidents(YEAR_ROWS), GRID)
    last_year = feature(panel, "same_period_last_year")[:, 4]
    assert np.isnan(last_year[:53]).all()  # a year and a period of history needed
    # rows 53..60 sum weeks t-53 .. t-51: weeks {0,1,2} -> 3, {1,2,3} -> 2, {2,3,4} -> 1, {3,4,5} -> 2, ...
    np.testing.assert_array_equal(last_year[53:], [3, 2, 1, 2, 2, 2, 0, 0])
    trend = feature(panel, "trend_4v52")[:, 4]
    assert np.isnan(trend[:52]).all()
    assert trend[52] == pytest.approx(0 / 4 - 5 / 52)  # weeks 48..51 empty; weeks 0..51 hold 5
    assert trend[56] == pytest.approx(1 / 4 - 3 / 52)  # weeks 52..55 hold week 55's; weeks 4..55 hold 2 + 1


@PROPS
@given(rows_between(0, T * WEEK, max_size=80))
def test_yearly_features_match_a_brute_force_reference(study_cfg, rows):
    panel = build_panel(hand_cfg(study_cfg, families=["temporal"]), incidents(rows), GRID)
    y = np.zeros((T, 9))
    for s, c, _, _ in rows:
        y[s // WEEK, c] += 1
    last_year, trend = feature(panel, "same_period_last_year"), feature(panel, "trend_4v52")
    for t in range(T + 1):
        np.testing.assert_array_equal(last_year[t], y[t - 53:t - 50].sum(axis=0) if t >= 53 else NAN)
        np.testing.assert_allclose(trend[t], y[t - 4:t].sum(axis=0) / 4 - y[t - 52:t].sum(axis=0) / 52
                                   if t >= 52 else NAN, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weeks", [20, 27, 30, 40, 51, 52, 53])
def test_less_than_a_year_of_weeks_builds_with_last_year_missing(study_cfg, weeks):
    end = (START + pd.Timedelta(weeks=weeks) - pd.Timedelta(days=1)).date()
    panel = build_panel(hand_cfg(study_cfg, families=["temporal"], data_end=end), incidents(YEAR_ROWS[:6]), GRID)
    assert panel.n_periods == weeks
    assert np.isnan(feature(panel, "same_period_last_year")[: min(53, weeks + 1)]).all()
    if weeks == 53:
        np.testing.assert_array_equal(feature(panel, "same_period_last_year")[53], [0, 0, 0, 0, 3, 0, 0, 0, 0])
