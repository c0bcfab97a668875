"""Audit figures on hand-made forecasts whose right answers are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hotspot.training.audit.fairness import CellDemography, CellGroups
from hotspot.training.audit.flags import Forecasts, forecasts_from_predictions, top_k
from hotspot.training.audit.parity import parity_allocation, parity_rerank, tradeoff_curve
from hotspot.training.audit.report import clean
from hotspot.training.audit.run import audit_forecasts
from hotspot.training.audit.sensitivity import reporting_sensitivity
from hotspot.training.evaluation.metrics import flag_weights, hits_at

C, W = 100, 8  # cells 0-49 in group A, 50-99 in group B, 10 residents each
LABEL = np.repeat([0, 1], 50).astype(np.int32)


def groups(reference: str = "B") -> CellGroups:
    pop = np.zeros((C, 2))
    pop[np.arange(C), LABEL] = 10.0
    return CellGroups("ab", "majority", ("A", "B"), reference, pop, LABEL, {"A": "group A", "B": "group B"})


def demography(reference: str = "B") -> CellDemography:
    g = groups(reference)
    return CellDemography(g.population.sum(1), [g], {"share_a": g.population[:, 0]}, source=None,
                          population_column="pop", areas_population=1000.0, covered=np.ones(C))


def only_a_forecasts() -> Forecasts:
    """A model that flags 10 cells of group A every week; a flat baseline; incidents in 10 A and 10 B cells."""
    risk_a = np.zeros((W, C))
    risk_a[:, :10] = 5.0
    observed = np.zeros((W, C))
    observed[:, :10] = 1.0
    observed[:, 60:70] = 1.0
    return Forecasts(["only_a", "flat"], [f"2020-01-{d:02d}" for d in range(6, 6 + W)],
                     np.stack([risk_a, np.ones((W, C))]), observed)


def test_a_model_that_flags_only_one_group():
    audit = audit_forecasts(only_a_forecasts(), demography("B"), coverage=0.1, reps=200)
    figs = audit["definitions"]["ab"]["models"]["only_a"]["groups"]
    a, b = figs["A"], figs["B"]
    assert audit["flagged_cells_per_week"] == 10
    assert a["flag_share"] == {"value": 1.0, "ci95": [1.0, 1.0]} and b["flag_share"]["value"] == 0.0
    assert a["flagged_population_share"]["value"] == 1.0
    assert a["flag_rate"]["value"] == pytest.approx(10 / 50) and b["flag_rate"]["value"] == 0.0
    # the reference is never flagged: the ratio divides by half a flagged cell-week (8 weeks x 50 cells), not zero
    assert a["disparate_impact"]["value"] == pytest.approx(0.2 / (0.5 / (W * 50)))
    assert a["disparate_impact"]["status"] == "no flags in the reference group"
    assert b["disparate_impact"]["status"] == "reference"
    assert a["incident_share"]["value"] == 0.5
    assert a["hit_rate"]["value"] == 1.0 and b["hit_rate"]["value"] == 0.0
    assert a["pai"]["value"] == pytest.approx(1.0 / 0.2)
    assert a["persistence"]["cells_ever_flagged"] == 10 and a["persistence"]["mean_weeks_flagged"] == W
    assert a["persistence"]["cells_by_weeks_flagged"][-1] == 10 and b["persistence"]["cells_ever_flagged"] == 0
    assert a["weekly"]["flag_share"] == [1.0] * W and a["weekly"]["flag_rate"] == pytest.approx([0.2] * W)
    only_a = audit["definitions"]["ab"]["models"]["only_a"]
    assert only_a["largest_flag_rate_ratio"] == pytest.approx(160.0) and only_a["largest_flag_rate_ratio_floored"]
    assert any("no flags in the reference group 'B' for only_a" in w for w in audit["warnings"])
    residents = audit["residents"]["only_a"]["share_a"]
    assert residents["population_share"] == 0.5 and residents["flagged_population_share"]["value"] == 1.0

    # with A as the reference, B's ratio is exactly 0
    audit = audit_forecasts(only_a_forecasts(), demography("A"), coverage=0.1, reps=200)
    b = audit["definitions"]["ab"]["models"]["only_a"]["groups"]["B"]["disparate_impact"]
    assert b["value"] == 0.0 and b["status"] == "never flagged (below band)"


def test_a_flat_forecast_flags_every_group_at_the_same_rate():
    audit = audit_forecasts(only_a_forecasts(), demography(), coverage=0.1, reps=200)
    figs = audit["definitions"]["ab"]["models"]["flat"]
    assert figs["groups"]["A"]["flag_share"]["value"] == pytest.approx(0.5)
    assert figs["groups"]["A"]["disparate_impact"]["value"] == pytest.approx(1.0)
    assert figs["groups"]["A"]["disparate_impact"]["status"] == "within band"
    assert figs["largest_flag_rate_ratio"] == pytest.approx(1.0)
    assert audit["accuracy"]["flat"]["pai"]["value"] == pytest.approx(1.0)  # chance


def test_flag_weights_share_ties_like_the_metrics():
    rng = np.random.default_rng(1)
    risk = rng.integers(0, 4, size=(5, 60)).astype(float)  # many ties
    observed = rng.poisson(1.0, size=(5, 60)).astype(float)
    f = flag_weights(risk, 7)
    np.testing.assert_allclose(f.sum(1), 7)
    for r, o, w in zip(risk, observed, f):
        assert (w * o).sum() == pytest.approx(hits_at(r, o, 7))
    assert top_k(risk, 7).sum(1).tolist() == [7] * 5


def test_small_groups_are_warned_about_not_hidden():
    g = groups()
    small = CellGroups("ab", "majority", ("A", "B"), "B", g.population, np.where(np.arange(C) < 3, 0, 1), {})
    demo = CellDemography(g.population.sum(1), [small], {}, None, "pop", 1000.0, np.ones(C))
    audit = audit_forecasts(only_a_forecasts(), demo, coverage=0.1, reps=100, small_cells=30)
    assert any("ab: a group ('A') is small (under 30 cells" in w for w in audit["warnings"])
    assert "A" in audit["definitions"]["ab"]["models"]["only_a"]["groups"]


def test_calibration_within_groups():
    fc = only_a_forecasts()
    doubled = Forecasts(["double"], fc.weeks, (fc.observed * 2 + 0.0)[None], fc.observed)
    audit = audit_forecasts(doubled, demography(), coverage=0.1, reps=100)
    figs = audit["definitions"]["ab"]["models"]["double"]["groups"]
    assert figs["A"]["calibration"]["value"] == pytest.approx(0.5)  # recorded / forecast
    assert figs["B"]["calibration_by_decile"][-1]["forecast"] == pytest.approx(2.0)


def test_reporting_rate_sensitivity():
    fc = only_a_forecasts()
    risk = np.ones((W, C))
    risk[:, 50:60] = 1.5  # B's top ten cells flagged
    fc = Forecasts(["m"], fc.weeks, risk[None], fc.observed)
    out = reporting_sensitivity(fc, groups(), 10, {}, [0.5])
    assert out["scenarios"]["equal rates"]["models"]["m"]["cells_moved_per_week"] == 0.0
    # A recorded at half the rate: its cells' risk doubles to 2 > 1.5, so all ten flags move to A
    moved = out["scenarios"]["A recorded at 0.5x the others"]["models"]["m"]
    assert moved["cells_moved_per_week"] == pytest.approx(10.0)
    assert moved["net_cells_per_week"] == pytest.approx({"A": 10.0, "B": -10.0})
    assert moved["flag_share_after"]["A"] == pytest.approx(1.0)
    assert out["scenarios"]["B recorded at 0.5x the others"]["models"]["m"]["cells_moved_per_week"] == 0.0
    # equal rates given explicitly move nothing either, whatever the rate
    assert reporting_sensitivity(fc, groups(), 10, {"A": 0.3, "B": 0.3}, [])["scenarios"][
        "configured rates"]["models"]["m"]["cells_moved_per_week"] == 0.0


def test_parity_reranking_and_tradeoff():
    assert parity_allocation(np.array([10, 0]), np.array([50, 50]), 10, 1.0).tolist() == [5, 5]
    assert parity_allocation(np.array([10, 0]), np.array([50, 50]), 10, 0.0).tolist() == [10, 0]
    assert parity_allocation(np.array([7, 3, 0]), np.array([10, 10, 10]), 10, 1.0).sum() == 10
    assert parity_allocation(np.array([7, 2, 0]), np.array([10, 10, 10]), 9, 0.5).tolist() == [5, 3, 1]
    risk = np.linspace(2, 1, C)  # A's cells rank first
    assert (parity_rerank(risk, LABEL, 2, 10, 0.0) == top_k(risk, 10)).all()
    mask = parity_rerank(risk, LABEL, 2, 10, 1.0)
    assert mask[:5].all() and mask[50:55].all() and mask.sum() == 10
    curve = tradeoff_curve(only_a_forecasts(), groups(), 10, 5)["models"]["only_a"]
    ratios = [p["smallest_to_largest_flag_rate"] for p in curve]
    assert ratios[0] == 0.0 and ratios[-1] == pytest.approx(1.0) and ratios == sorted(ratios)
    assert curve[0]["pai"] == pytest.approx(5.0) and curve[-1]["pai"] == pytest.approx(2.5)


def test_predictions_table_round_trip_and_json(tmp_path):
    fc = only_a_forecasts()
    cell_id = np.arange(C) * 7 + 3
    rows = [pd.DataFrame({"period_start": w, "cell_id": cell_id[::-1], "risk": fc.risk[m, i, ::-1],
                          "observed": fc.observed[i, ::-1], "model": name})
            for m, name in enumerate(fc.models) for i, w in enumerate(fc.weeks)]
    back = forecasts_from_predictions(pd.concat(rows), cell_id)
    np.testing.assert_array_equal(back.risk, fc.risk)
    audit = audit_forecasts(back, demography(), coverage=0.1, reps=100)
    text = json.dumps(clean(audit), allow_nan=False)
    di = json.loads(text)["definitions"]["ab"]["models"]["only_a"]["groups"]["A"]["disparate_impact"]
    assert di["value"] == pytest.approx(160.0) and di["status"] == "no flags in the reference group"
    assert "Infinity" not in text and "NaN" not in text


def test_one_week_audit_has_degenerate_intervals():
    # scipy's bootstrap needs two weeks; one week resamples only to itself: zero-width intervals, NaN where undefined
    f = only_a_forecasts()
    one = Forecasts(f.models, f.weeks[:1], f.risk[:, :1], f.observed[:1])
    audit = audit_forecasts(one, demography(), coverage=0.1, reps=100)
    figs = audit["definitions"]["ab"]["models"]["only_a"]["groups"]
    assert figs["A"]["flag_rate"] == {"value": 0.2, "ci95": [0.2, 0.2]}
    assert figs["A"]["disparate_impact"] == {"value": 20.0, "ci95": [20.0, 20.0],
                                             "status": "no flags in the reference group"}
    assert audit["accuracy"]["only_a"]["pai"] == {"value": 5.0, "ci95": [5.0, 5.0]}
