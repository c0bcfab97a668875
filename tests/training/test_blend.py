"""`auto` with combine = "blend" / "average" (training/selection.py) and shared fits (training/shared.py): the weights
come only from weeks before the forecast week, the blend is the weighted sum it records, and sharing fits between
models changes no forecast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hotspot.models import EWMCounts, HistoryCounts, RecentCounts
from hotspot.training.backtest import run_backtest
from hotspot.training.selection import (
    AutoSelect,
    average_weights,
    blend_weights,
    describe_selection,
    selection_rows,
)
from hotspot.training.shared import FitStore, SharedFit
from tests.training.test_selection import WEEKS, _changed_from, moving_hotspot, panel_of


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return panel_of(tmp_path_factory.mktemp("planted_blend"), moving_hotspot())


def blended(combine: str = "blend") -> AutoSelect:
    return AutoSelect(candidates=[HistoryCounts(), RecentCounts(weeks=4), EWMCounts(halflife=8)],
                      validation_weeks=6, refit_every=3, combine=combine)


def test_blend_weights_recover_the_mixture_and_drop_a_useless_forecast():
    rng = np.random.default_rng(0)
    a, b, noise = rng.gamma(2.0, 1.0, 20000), rng.gamma(2.0, 1.0, 20000), rng.gamma(2.0, 1.0, 20000)
    observed = rng.poisson(0.7 * a + 0.3 * b)
    w = blend_weights(np.stack([a, b, noise]), observed)
    np.testing.assert_allclose(w[:2], [0.7, 0.3], atol=0.05)
    assert w[2] < 0.03
    # average: equal shares, each forecast brought to the observed total
    avg = average_weights(np.stack([a, 2 * a]), observed)
    np.testing.assert_allclose(avg * [a.sum(), 2 * a.sum()], [observed.sum() / 2] * 2)


@pytest.mark.parametrize("combine", ["blend", "average"])
def test_the_blend_never_sees_the_week_it_forecasts(planted, tmp_path, combine):
    _, panel = planted
    t = WEEKS - 6
    _, other = panel_of(tmp_path / "changed", _changed_from(moving_hotspot(), panel.period_starts[t]))
    np.testing.assert_array_equal(other.target[:t], panel.target[:t])
    a, b = blended(combine).fit(panel.until(t)), blended(combine).fit(other.until(t))
    assert a.chosen_ == "blend" and a.weights_ == b.weights_
    np.testing.assert_array_equal(a.predict(panel.until(t)), b.predict(other.until(t)))
    # the control: once week t is known, the changed counts change the blend's forecast
    later_a, later_b = blended(combine).fit(panel.until(t + 1)), blended(combine).fit(other.until(t + 1))
    assert not np.array_equal(later_a.predict(panel.until(t + 1)), later_b.predict(other.until(t + 1)))


def test_the_blend_forecasts_the_weighted_sum_it_records(planted):
    _, panel = planted
    t = WEEKS - 10
    model = blended().fit(panel.until(t))
    # the weights are fitted on the candidates' out-of-sample forecasts of the 6 weeks before t
    assert list(model.validation_weeks_) == list(panel.period_starts[t - 6:t])
    assert sum(w > 0 for w in model.weights_.values()) >= 1
    expected = sum(w * c.fit(panel.until(t)).predict(panel.until(t))
                   for c, w in zip(model.candidates, model.weights_.values(), strict=True))
    np.testing.assert_allclose(model.predict(panel.until(t)), expected)


def test_a_backtest_of_the_blend_records_its_weights_and_says_so(planted):
    _, panel = planted
    periods = np.arange(WEEKS - 12, WEEKS)
    result = run_backtest(panel, [blended(), HistoryCounts()], periods, 3, [0.01])
    refits = result.metrics["models"]["auto"]["refits"]
    assert len(refits) == 4 and all(r["chosen"] == "blend" and r["combine"] == "blend" for r in refits)
    table = selection_rows(result.metrics)
    assert {"weight_history", "weight_naive_4w", "weight_ewm_hl8"} <= set(table.columns)
    sentence = describe_selection(result.metrics, "history")["sentences"][0]
    assert "blended its candidates at each of its 4 refits" in sentence and "Poisson deviance" in sentence
    assert "Against the best baseline" in sentence


def test_shared_fits_change_no_forecast_and_save_the_second_fit(planted):
    _, panel = planted
    periods = np.arange(WEEKS - 12, WEEKS)

    def models(store):
        wrap = (lambda m: SharedFit(m, store)) if store else (lambda m: m)
        auto = AutoSelect(candidates=[wrap(HistoryCounts()), wrap(RecentCounts(weeks=4))], validation_weeks=8,
                          refit_every=4)
        return [wrap(HistoryCounts()), wrap(RecentCounts(weeks=4)), auto]

    store = FitStore()
    plain, shared = (run_backtest(panel, models(s), periods, 4, [0.01]) for s in (None, store))
    pd.testing.assert_frame_equal(plain.predictions, shared.predictions)
    assert plain.metrics["models"]["auto"]["refits"] == shared.metrics["models"]["auto"]["refits"]
    # each candidate fitted once per refit week (3) plus auto's first two validation blocks before the backtest
    assert store.fitted == 2 * (3 + 2) and store.reused > 0
