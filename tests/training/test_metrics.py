"""Accuracy metrics: hit rate, PAI, PEI (ties shared by expectation) and Poisson deviance, on hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotspot.training.evaluation.metrics import (
    best_hits_at,
    coverage_label,
    flag_weights,
    hit_rate_at,
    hits_at,
    n_flagged,
    pai_at,
    pei_at,
    poisson_deviance,
    week_metrics,
)

PROPS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
COVERAGES = [0.005, 0.01, 0.02, 0.05, 0.10, 0.25, 0.5, 1.0]

# five cells; cells 1 and 2 tie at 0.5
RISK = np.array([0.9, 0.5, 0.5, 0.1, 0.0])
OBS = np.array([3, 1, 0, 2, 4])  # 10 incidents; the best cells are 4 (4), 0 (3), 3 (2)

counts = st.lists(st.integers(0, 6), min_size=1, max_size=60).map(np.array)


@pytest.mark.parametrize("coverage, hits, hit_rate, pai, pei", [
    (0.2, 3.0, 0.3, 1.5, 3 / 4),  # k = 1: cell 0
    (0.4, 3.5, 0.35, 0.875, 3.5 / 7),  # k = 2: cell 0 and half of the tied pair's 1 incident
    (0.6, 4.0, 0.4, 0.4 / 0.6, 4 / 9),  # k = 3: cells 0, 1, 2
    (0.8, 6.0, 0.6, 0.75, 6 / 10),  # k = 4: all but cell 4
    (1.0, 10.0, 1.0, 1.0, 1.0),
])
def test_hand_computed_example(coverage, hits, hit_rate, pai, pei):
    k = n_flagged(5, coverage)
    assert hits_at(RISK, OBS, k) == pytest.approx(hits, rel=1e-12)
    assert hit_rate_at(RISK, OBS, coverage) == pytest.approx(hit_rate, rel=1e-12)
    assert pai_at(RISK, OBS, coverage) == pytest.approx(pai, rel=1e-12)
    assert pei_at(RISK, OBS, coverage) == pytest.approx(pei, rel=1e-12)


def test_best_hits():
    assert [best_hits_at(OBS, k) for k in range(1, 7)] == [4, 7, 9, 10, 10, 10]


def test_a_three_way_tie_is_shared_by_expectation():
    risk = np.array([2.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    obs = np.array([0, 3, 0, 6, 5, 0])
    # k = 2: cell 0, then one of the three tied cells at random: expected 9 / 3 = 3 incidents
    assert hits_at(risk, obs, 2) == pytest.approx(3.0)
    assert hits_at(risk, obs, 3) == pytest.approx(6.0)
    assert hits_at(risk, obs, 4) == pytest.approx(9.0)
    # k = 5: cells 0-3 and one of the two zero-risk cells: 9 + 5 / 2
    assert hits_at(risk, obs, 5) == pytest.approx(11.5)
    assert hit_rate_at(risk, obs, 2 / 6) == pytest.approx(3 / 14)
    assert pei_at(risk, obs, 2 / 6) == pytest.approx(3 / 11)  # best two cells: 6 + 5


@pytest.mark.parametrize("n, coverage, k", [
    (1000, 0.005, 5), (1000, 0.01, 10), (1000, 0.10, 100), (250, 0.02, 5), (115, 0.05, 6), (115, 0.10, 12),
    (137, 0.01, 1), (100, 0.004, 1), (10, 0.01, 1), (5, 0.0001, 1), (40, 1.0, 40), (7, 0.3, 2),
])
def test_flagged_cells_are_the_rounded_share_and_at_least_one(n, coverage, k):
    assert n_flagged(n, coverage) == k


@PROPS
@given(st.integers(1, 5000), st.sampled_from(COVERAGES))
def test_flagged_cells_property(n, coverage):
    k = n_flagged(n, coverage)
    assert k >= 1 and k <= n
    assert k == 1 or abs(k - coverage * n) <= 0.5


@PROPS
@given(counts.filter(lambda o: o.sum() > 0), st.sampled_from([0.0, 1.0, 0.37]))
def test_a_flat_forecast_scores_exactly_chance(observed, level):
    risk = np.full(len(observed), level)
    for c in COVERAGES:
        k = n_flagged(len(observed), c)
        assert pai_at(risk, observed, c) == pytest.approx(1.0, rel=1e-12, abs=0)
        assert hit_rate_at(risk, observed, c) == pytest.approx(k / len(observed), rel=1e-12, abs=0)


@PROPS
@given(counts.filter(lambda o: o.sum() > 0), st.sampled_from(["exact", "scaled", "noisy"]))
def test_a_perfect_forecast_has_pei_one(observed, how):
    risk = {"exact": observed.astype(float), "scaled": 0.1 * observed + 3.0,
            "noisy": observed + np.linspace(0, 0.5, len(observed))}[how]
    for c in COVERAGES:
        assert pei_at(risk, observed, c) == pytest.approx(1.0, rel=1e-12)


def test_an_inverted_forecast_has_pei_zero_when_the_flagged_cells_are_empty():
    observed = np.array([0, 0, 0, 1, 5])
    assert pei_at(-observed.astype(float), observed, 0.4) == 0.0
    assert hit_rate_at(-observed.astype(float), observed, 0.4) == 0.0


def expected_hits_by_brute_force(risk, observed, k):
    """Mean over every order of the cells of the incidents in the first k cells after a stable sort by risk."""
    total, n_orders = 0.0, 0
    for order in itertools.permutations(range(len(risk))):
        ranked = sorted(order, key=lambda i: -risk[i])  # stable: ties keep the random order
        total += sum(observed[i] for i in ranked[:k])
        n_orders += 1
    return total / n_orders


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=6), st.data())
def test_ties_are_resolved_by_their_expectation_under_a_random_order(cells, data):
    risk = np.array([r for r, _ in cells], dtype=float)
    observed = np.array([o for _, o in cells], dtype=float)
    k = data.draw(st.integers(1, len(cells)), label="k")
    assert hits_at(risk, observed, k) == pytest.approx(expected_hits_by_brute_force(risk, observed, k), rel=1e-9)


@PROPS
@given(st.integers(1, 40).flatmap(lambda c: st.tuples(
    st.lists(st.lists(st.integers(0, 3), min_size=c, max_size=c), min_size=1, max_size=4),  # few levels: many ties
    st.lists(st.integers(0, 6), min_size=c, max_size=c), st.integers(1, c + 1))))
def test_flag_weights_and_hits_at_are_two_views_of_one_rule(case):
    levels, counts_, k = case
    risk, observed = np.array(levels, dtype=float) / 2, np.array(counts_, dtype=float)
    f = flag_weights(risk, k)
    assert f.shape == risk.shape and ((f >= 0) & (f <= 1)).all()
    np.testing.assert_allclose(f.sum(-1), min(k, risk.shape[-1]), rtol=1e-12)
    for r, w in zip(risk, f):
        np.testing.assert_array_equal(w, flag_weights(r, k))  # a row of a batch is the row alone
        assert hits_at(r, observed, k) == pytest.approx(float(w @ observed), rel=1e-12, abs=1e-12)


@PROPS
@given(counts.filter(lambda o: o.sum() > 0), st.integers(0, 2**32 - 1))
def test_metric_ranges_and_monotone_hits(observed, seed):
    risk = np.random.default_rng(seed).gamma(1.0, size=len(observed)).round(1)  # rounding makes ties
    hits = [hits_at(risk, observed, k) for k in range(1, len(observed) + 1)]
    assert all(b >= a - 1e-9 for a, b in zip(hits, hits[1:]))
    assert hits[-1] == observed.sum()
    for c in COVERAGES:
        assert 0 <= hit_rate_at(risk, observed, c) <= 1 + 1e-12
        assert 0 <= pei_at(risk, observed, c) <= 1 + 1e-12
        k = n_flagged(len(observed), c)
        assert pai_at(risk, observed, c) == pytest.approx(hit_rate_at(risk, observed, c) * len(observed) / k)


def test_no_incidents_gives_nan():
    risk, observed = np.array([0.3, 0.2, 0.1]), np.zeros(3)
    for c in (0.01, 0.5, 1.0):
        assert math.isnan(hit_rate_at(risk, observed, c))
        assert math.isnan(pai_at(risk, observed, c))
        assert math.isnan(pei_at(risk, observed, c))
    # deviance is still defined: with y = 0 it is 2 * mean(mu)
    assert poisson_deviance(risk, observed) == pytest.approx(2 * 0.2)


def test_poisson_deviance_hand_computed():
    # y = 2, mu = 1: 2 (2 ln 2 - 1); y = 0, mu = 0.5: 2 * 0.5; mean of the two
    assert poisson_deviance(np.array([1.0, 0.5]), np.array([2, 0])) == pytest.approx(
        (2 * (2 * math.log(2) - 1) + 1.0) / 2, rel=1e-12)
    assert poisson_deviance(np.array([3.0]), np.array([3])) == 0.0


@PROPS
@given(counts, st.floats(0.05, 3.0), st.floats(0.05, 20).filter(lambda f: abs(f - 1) > 0.05))
def test_poisson_deviance_is_zero_for_a_perfect_forecast_and_larger_for_a_worse_one(observed, delta, factor):
    perfect = poisson_deviance(observed.astype(float), observed)
    assert perfect == pytest.approx(0.0, abs=1e-8)  # zero cells contribute only the 1e-9 floor
    assert poisson_deviance(observed + delta, observed) > perfect + 1e-6
    if observed.sum() > 0:
        assert poisson_deviance(observed * factor, observed) > perfect + 1e-6


def test_poisson_deviance_stays_finite_for_a_zero_forecast_of_an_incident():
    d = poisson_deviance(np.array([0.0, 1.0]), np.array([1, 1]))
    assert math.isfinite(d) and d == pytest.approx((2 * (math.log(1e9) - 1)) / 2, rel=1e-9)


def test_week_metrics_names_and_values():
    out = week_metrics(RISK, OBS, [0.2, 0.4])
    assert set(out) == {"incidents", "poisson_deviance", "hit_rate@20%", "pai@20%", "pei@20%", "hit_rate@40%",
                        "pai@40%", "pei@40%"}
    assert out["incidents"] == 10
    assert out["pai@20%"] == pytest.approx(1.5) and out["pei@40%"] == pytest.approx(0.5)
    assert out["poisson_deviance"] == pytest.approx(poisson_deviance(RISK, OBS))
    assert coverage_label(0.005) == "0.5%" and coverage_label(0.1) == "10%"
