"""Drift and decay checks on synthetic weeks whose answer is known: a lost extract, a changed offence mix, incidents
in new places, shifted features and a forecast that stopped beating its baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hotspot.training.monitoring.drift import (
    decay_check,
    feature_psi,
    mix_check,
    outside_share,
    summarise,
    volume_check,
)

WEEKS = pd.date_range("2023-01-02", periods=60, freq="W-MON")
WEEK = WEEKS[55]  # 55 weeks of history before it, 4 weeks after it
OFFENSES = ["assault", "theft", "break_and_enter", "robbery", "auto_theft", "arson", "homicide"]
USUAL_MIX = np.array([0.30, 0.30, 0.20, 0.10, 0.08, 0.015, 0.005])


def poisson_counts(mean: float = 200.0, seed: int = 0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).poisson(mean, len(WEEKS)), index=WEEKS)


def overdispersed_counts(mean: float = 200.0, size: float = 10.0, seed: int = 0) -> pd.Series:
    counts = np.random.default_rng(seed).negative_binomial(size, size / (size + mean), len(WEEKS))
    return pd.Series(counts, index=WEEKS)


def offence_table(week_mix=USUAL_MIX, per_week: int = 300, week_total: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.multinomial(per_week, USUAL_MIX, len(WEEKS)), index=WEEKS, columns=OFFENSES)
    table.loc[WEEK] = rng.multinomial(week_total, week_mix)
    return table


def assert_jsonable(result: dict) -> None:
    json.dumps(result, allow_nan=False)
    assert isinstance(result["flag"], bool)
    assert isinstance(result["sentence"], str) and result["sentence"].endswith(".")


# volume


def test_a_tenth_of_the_usual_volume_is_flagged_low():
    counts = poisson_counts()
    counts[WEEK] = round(counts[WEEKS[3:55]].mean() * 0.1)
    result = volume_check(counts, WEEK)
    assert result["flag"] and result["direction"] == "low"
    assert result["ratio"] == pytest.approx(0.1, abs=0.01)
    assert result["observed"] < result["lo"] <= result["expected"] <= result["hi"]
    assert result["week"] == "2024-01-22" and "2024-01-22" in result["sentence"]
    assert "52 weeks" in result["sentence"] and "99%" in result["sentence"]
    assert_jsonable(result)


def test_a_usual_week_is_not_flagged_and_later_weeks_are_ignored():
    counts = poisson_counts()
    result = volume_check(counts, WEEK)
    assert not result["flag"] and result["direction"] is None
    counts[WEEKS[57]] = 10_000  # after the week: must not move what is expected
    assert volume_check(counts, WEEK)["expected"] == result["expected"]
    assert volume_check(counts, WEEK)["expected"] == pytest.approx(counts[WEEKS[3:55]].mean(), abs=0.01)


def test_a_doubled_week_is_flagged_high():
    counts = poisson_counts()
    counts[WEEK] = 2 * counts[WEEK]
    result = volume_check(counts, WEEK)
    assert result["flag"] and result["direction"] == "high"


def test_overdispersed_history_widens_the_interval():
    calm, erratic = volume_check(poisson_counts(), WEEK), volume_check(overdispersed_counts(), WEEK)
    assert erratic["expected"] == pytest.approx(calm["expected"], rel=0.15)
    assert erratic["hi"] - erratic["lo"] > 2 * (calm["hi"] - calm["lo"])
    assert "negative binomial" in erratic["sentence"] and "Poisson" in calm["sentence"]
    # a week 30% above the usual: out of range for a steady history, ordinary for an erratic one
    steady, wobbly = poisson_counts(), overdispersed_counts()
    steady[WEEK], wobbly[WEEK] = round(1.3 * calm["expected"]), round(1.3 * erratic["expected"])
    assert volume_check(steady, WEEK)["flag"] and not volume_check(wobbly, WEEK)["flag"]


def test_too_little_history_is_not_flagged():
    counts = poisson_counts()
    counts[WEEKS[6]] = 0  # would be flagged low with enough history
    result = volume_check(counts, WEEKS[6])
    assert not result["flag"] and result["expected"] is None
    assert "too little history" in result["sentence"]
    assert_jsonable(result)


def test_a_missing_week_counts_as_none_recorded():
    counts = poisson_counts().drop(WEEK)
    result = volume_check(counts, WEEK)
    assert result["observed"] == 0 and result["flag"] and result["direction"] == "low"


# offence mix


def test_a_shifted_offence_mix_is_flagged_and_names_the_movers():
    shifted = np.array([0.10, 0.30, 0.40, 0.10, 0.08, 0.015, 0.005])
    result = mix_check(offence_table(shifted), WEEK)
    assert result["flag"] and result["p_value"] < 0.001
    assert {m["offense"] for m in result["movers"][:2]} == {"assault", "break_and_enter"}
    assert len(result["movers"]) <= 3
    assert result["shares_usual"]["assault"] == pytest.approx(0.30, abs=0.02)
    assert sum(result["shares_week"].values()) == pytest.approx(1.0, abs=1e-3)
    assert "break_and_enter" in result["sentence"]
    assert_jsonable(result)


def test_an_unchanged_offence_mix_is_not_flagged():
    result = mix_check(offence_table(), WEEK)
    assert not result["flag"] and result["p_value"] > 0.001
    assert_jsonable(result)


def test_rare_offences_are_merged_so_one_stray_case_is_not_a_flag():
    table = offence_table()
    # usually 1.5 a week: tested alone, 8 would give p < 0.0001 from an approximation that is invalid below 5
    # expected; merged with the other rare offences into "other", it is not enough to flag the whole mix
    table.loc[WEEK, "homicide"] = 8
    assert not mix_check(table, WEEK)["flag"]


def test_a_week_with_few_incidents_is_too_few_to_test():
    result = mix_check(offence_table(week_total=12), WEEK)
    assert not result["flag"] and result["p_value"] is None
    assert "too few" in result["sentence"]
    assert_jsonable(result)


# incidents outside the cells seen before


def test_outside_share_flags_many_incidents_in_new_cells():
    seen = np.arange(100)
    week = np.concatenate([np.arange(90), np.arange(500, 510)])
    result = outside_share(week, seen, week="2024-01-22")
    assert (result["incidents"], result["outside"], result["share"]) == (100, 10, 0.1)
    assert result["flag"] and "10 of 100" in result["sentence"] and "5.0%" in result["sentence"]
    assert_jsonable(result)


def test_outside_share_needs_a_share_above_threshold_and_three_incidents():
    seen = np.arange(100)
    assert not outside_share(np.concatenate([np.arange(97), [500, 501, 502]]), seen)["flag"]  # 3%
    few = outside_share(np.array([1, 2, 3, 4, 5, 6, 7, 8, 500, 501]), seen)  # 20%, but only 2 incidents
    assert few["share"] == 0.2 and not few["flag"]
    empty = outside_share(np.array([], dtype=int), seen)
    assert empty["share"] is None and not empty["flag"]
    assert_jsonable(empty)


def test_outside_share_of_a_rare_offence_is_judged_against_its_usual_share():
    seen = np.arange(100)
    week = np.concatenate([np.arange(89), np.arange(500, 511)])  # 11% in new cells
    rare = outside_share(week, seen, week="2021-12-20", usual=(520, 5200))  # robbery: 10% every week
    assert rare["usual_share"] == 0.1 and rare["p_value"] > 0.1 and not rare["flag"]
    assert "not above the usual share" in rare["sentence"] and "10.0% over the lookback weeks" in rare["sentence"]
    common = outside_share(week, seen, week="2021-12-20", usual=(52, 5200))  # all offences: 1% usually
    assert common["flag"] and common["p_value"] < 0.001 and "above both" in common["sentence"]
    assert_jsonable(rare)


def test_usual_outside_counts_each_week_against_the_cells_seen_before_it():
    from hotspot.steps.cycle import usual_outside

    target = np.array([[1, 0, 0, 0],   # week 0: cell 0 (nothing seen before: not counted, the lookback starts at 1)
                       [1, 2, 0, 0],   # week 1: cell 1 new (2 of 3)
                       [0, 1, 0, 1],   # week 2: cell 3 new (1 of 2)
                       [1, 1, 0, 0]])  # week 3: nothing new (0 of 2)
    assert usual_outside(target, 52) == (3, 7)
    assert usual_outside(target, 2) == (1, 4)


# features


def reference_and_week(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = np.column_stack([rng.normal(size=5000), rng.poisson(2.0, 5000), rng.random(5000) < 0.02])
    week = np.column_stack([rng.normal(size=500), rng.poisson(2.0, 500), rng.random(500) < 0.02])
    return ref.astype(float), week.astype(float)


def test_psi_flags_a_shifted_feature_and_not_an_unchanged_one():
    ref, week = reference_and_week()
    week[:, 1] += 3  # the lagged count jumps
    result = feature_psi(week, ref, ["noise", "lag_1", "rare_flag"], week="2024-01-22")
    assert result["moved"] == ["lag_1"] and result["flag"]
    assert result["psi"]["noise"] < 0.1 and result["psi"]["rare_flag"] < 0.1
    assert "lag_1" in result["sentence"] and "0.25" in result["sentence"]
    assert_jsonable(result)
    unchanged = feature_psi(reference_and_week(seed=1)[1], ref, ["noise", "lag_1", "rare_flag"])
    assert not unchanged["flag"] and unchanged["moved"] == []
    assert_jsonable(unchanged)


def test_psi_sees_a_rare_value_become_common():
    ref, week = reference_and_week()
    week[:, 2] = np.random.default_rng(2).random(500) < 0.3  # 2% of cells usually, 30% this week
    assert feature_psi(week, ref, ["noise", "lag_1", "rare_flag"])["moved"] == ["rare_flag"]


def test_psi_handles_a_constant_feature():
    ref, week = np.zeros((1000, 1)), np.zeros((200, 1))
    same = feature_psi(week, ref, ["const"])
    assert same["psi"]["const"] is None and same["week_wide"] == ["const"] and not same["flag"]
    week[:60] = 1.0  # 30% of cells leave the only value the reference had
    result = feature_psi(week, ref, ["const"])
    assert result["moved"] == ["const"] and result["psi"]["const"] > 1
    assert_jsonable(result)


def test_psi_ignores_nan_rows_and_reports_none_for_an_empty_feature():
    ref, week = reference_and_week()
    ref[::7, 0] = np.nan
    week[::3, 0] = np.nan  # a third missing: the rest are drawn as usual
    week[:, 1] = np.nan
    result = feature_psi(week, ref, ["noise", "lag_1", "rare_flag"])
    assert result["psi"]["noise"] < 0.1 and result["psi"]["lag_1"] is None and not result["flag"]
    assert_jsonable(result)


def test_psi_refuses_mismatched_names():
    ref, week = reference_and_week()
    with pytest.raises(ValueError, match="one column per name"):
        feature_psi(week, ref, ["noise"])


# decay of the live record


def live_weeks(n: int) -> list[str]:
    return [str(w.date()) for w in WEEKS[:n]]


def test_decay_flags_a_flat_forecast_beside_a_strong_baseline():
    rng = np.random.default_rng(0)
    published, baseline = 1.0 + rng.normal(0, 0.1, 10), 8.0 + rng.normal(0, 1.0, 10)
    result = decay_check(live_weeks(10), published.tolist(), baseline.tolist(), "ewma")
    assert result["flag"] and result["weeks"] == live_weeks(10)[-8:]
    assert result["difference"] == pytest.approx(-7, abs=1) and result["lo"] <= result["difference"] <= result["hi"] < 0
    assert "ewma" in result["sentence"] and "90% interval" in result["sentence"] and "worse" in result["sentence"]
    assert result["p_value"] < 0.05 and "t-test" in result["sentence"]
    assert_jsonable(result)


def test_decay_does_not_flag_an_equal_forecast():
    baseline = 8.0 + np.random.default_rng(1).normal(0, 1.0, 8)
    published = baseline + np.array([-0.5, 0.4, -0.3, 0.2, -0.6, 0.5, 0.1, -0.2])  # a little behind, within noise
    result = decay_check(live_weeks(8), published.tolist(), baseline.tolist(), "ewma")
    assert result["difference"] == pytest.approx(-0.05)
    assert not result["flag"] and result["lo"] < 0 < result["hi"]
    assert "not significantly different" in result["sentence"]
    assert_jsonable(result)


def test_decay_allows_for_picking_the_best_baseline_in_hindsight():
    rng = np.random.default_rng(3)
    baseline = 10.0 + rng.normal(0, 1.0, 8)
    published = baseline - 0.6 + rng.normal(0, 0.6, 8)  # somewhat behind: enough against one, not the best of 6
    alone = decay_check(live_weeks(8), published.tolist(), baseline.tolist(), "ewma")
    picked = decay_check(live_weeks(8), published.tolist(), baseline.tolist(), "ewma", compared=6)
    assert alone["p_value"] == picked["p_value"] < 0.05
    assert alone["flag"] and not picked["flag"] and picked["threshold"] == pytest.approx(0.05 / 6, rel=1e-3)
    assert "best of 6 baselines in hindsight" in picked["sentence"]


def test_decay_says_too_few_weeks_below_the_minimum():
    result = decay_check(live_weeks(5), [1.0, 1.0, None, 1.0, float("nan")], [8.0] * 5, "ewma")
    assert not result["flag"] and result["difference"] is None and len(result["weeks"]) == 3
    assert "too few weeks" in result["sentence"].lower() and "3 weeks" in result["sentence"]
    assert "at least 4" in result["sentence"]
    assert_jsonable(result)


# summary


def test_summary_counts_the_flags_in_one_line():
    low = poisson_counts()
    low[WEEK] = 5
    checks = [volume_check(low, WEEK), mix_check(offence_table(), WEEK),
              outside_share(np.arange(100), np.arange(100))]
    summary = summarise(checks)
    assert summary["n_flags"] == 1 and summary["flags"][0]["kind"] == "volume"
    assert summary["sentence"].startswith("1 flag: volume low")
    assert summarise(checks[1:]) == {"flags": [], "n_flags": 0, "sentence": "No drift or decay flagged."}
    json.dumps(summary, allow_nan=False)


def test_psi_leaves_out_week_wide_features_like_the_calendar():
    rng = np.random.default_rng(5)
    ref = np.column_stack([rng.poisson(2, 5000), np.repeat(np.arange(1, 11), 500)])  # month 1..10 over the year
    week = np.column_stack([rng.poisson(2, 500), np.full(500, 12)])  # December: one value over every cell
    result = feature_psi(week, ref, ["lag_1", "month"], week="2019-12-02")
    assert result["psi"]["month"] is None and result["week_wide"] == ["month"]
    assert not result["flag"] and "none of the 1 features" in result["sentence"]
    assert "Not scored: 1 feature with one value" in result["sentence"]
