"""Evaluation definitions on hand-made forecasts, and the accuracy report written by a backtest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hotspot.training.evaluation.report import accuracy_report, write_report
from hotspot.training.evaluation.stats import (
    bootstrap_interval,
    bootstrap_mean,
    calibration,
    hit_rate_curve,
    paired_comparison,
    pei_star_at,
    rank_stability,
)


def weeks_from(risks, observed):
    cells = np.arange(len(risks[0]))
    return [(f"2020-01-{i + 6:02d}", cells, np.asarray(r, float), np.asarray(o, float))
            for i, (r, o) in enumerate(zip(risks, observed))]


def test_pei_star_penalises_flagging_more_cells_than_hold_incidents():
    risk = np.arange(100, 0, -1, dtype=float)  # cell 0 ranked first
    observed = np.zeros(100)
    observed[0] = 3  # one cell holds every incident
    # 5% = 5 cells: the best choice catches all 3 incidents but only 1 cell was needed
    assert pei_star_at(risk, observed, 0.05) == pytest.approx(1 / 5)
    assert pei_star_at(risk, observed, 0.01) == pytest.approx(1.0)
    assert np.isnan(pei_star_at(risk, np.zeros(100), 0.01))


def test_hit_rate_curve_is_monotone_and_reaches_one():
    rng = np.random.default_rng(0)
    weeks = weeks_from([rng.random(200) for _ in range(3)], [rng.poisson(0.3, 200) for _ in range(3)])
    curve = hit_rate_curve(weeks, coverages=np.array([0.01, 0.1, 0.5, 1.0]))
    assert np.all(np.diff(curve["hit_rate"]) >= 0) and curve["hit_rate"].iloc[-1] == pytest.approx(1.0)


def test_calibration_by_decile():
    risk = np.repeat(np.arange(1, 11, dtype=float), 10)  # deciles hold risks 1..10
    weeks = weeks_from([risk], [risk * 2])
    cal = calibration(weeks)
    assert list(cal["decile"]) == list(range(1, 11))
    np.testing.assert_allclose(cal["forecast"], np.arange(1, 11))
    np.testing.assert_allclose(cal["observed"], 2 * np.arange(1, 11))


def test_rank_stability():
    same = [np.arange(100, dtype=float)] * 3
    assert rank_stability(weeks_from(same, [np.ones(100)] * 3), 0.05) == 1.0
    flipped = [np.arange(100, dtype=float), np.arange(100, dtype=float)[::-1]]
    assert rank_stability(weeks_from(flipped, [np.ones(100)] * 2), 0.05) == 0.0


def test_bootstrap_and_paired_comparison():
    mean, lo, hi = bootstrap_mean([1, 2, 3, 4, 5], reps=4000)
    assert mean == 3 and 1.5 < lo < 3 < hi < 4.5
    assert bootstrap_mean([2, 2, 2])[1:] == (2.0, 2.0)
    cmp = paired_comparison([3, 4, 5, 6], [1, 1, 1, 1])
    assert cmp["difference"] == 3.5 and cmp["weeks_better"] == 4 and cmp["ci95"][0] > 0


def test_bootstrap_degenerate_cases():
    # equal values: the zero-width interval exactly (scipy's resampled means would differ in the last bits)
    mean, lo, hi = bootstrap_mean([0.1, 0.1, 0.1])
    assert lo == hi == mean == pytest.approx(0.1)
    # one value (scipy refuses fewer than two): the degenerate interval, as the resampling always gave
    assert bootstrap_mean([7.0, float("nan")]) == (7.0, 7.0, 7.0)
    assert all(np.isnan(bootstrap_mean([float("nan"), float("inf")])))
    assert all(np.isnan(bootstrap_mean([])))
    one = paired_comparison([2.0], [1.0])
    assert one["ci95"] == [1.0, 1.0] and one["weeks"] == 1


def test_bootstrap_matches_resampling_weeks_and_skips_undefined_resamples():
    values = np.array([0.5, 1.0, 3.0, 2.0, 0.0, 4.5, 1.5, 2.5])
    # the percentile interval of seeded resamples of weeks, the same resamples as drawing the indices by hand
    idx = np.random.default_rng(3).integers(0, len(values), size=(999, len(values)))
    assert bootstrap_mean(values, reps=999, seed=3)[1:] == pytest.approx(
        tuple(np.percentile(values[idx].mean(axis=1), [2.5, 97.5])), abs=1e-12)
    # a ratio of sums that some resamples leave undefined (0/0): its interval is that of the defined resamples
    hits, incidents = np.array([1.0, 0, 0, 2]), np.array([2.0, 0, 0, 4])
    lo, hi = bootstrap_interval((hits, incidents), lambda h, n, axis: h.sum(axis) / n.sum(axis), reps=500)
    assert lo == hi == 0.5


def test_report_from_a_predictions_table(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for w in range(12):
        observed = rng.poisson(np.linspace(0.01, 2, 300))
        for model, risk in (("lightgbm", np.linspace(0.01, 2, 300)), ("flat", np.ones(300))):
            rows.append(pd.DataFrame({"period_start": f"2020-{w // 4 + 1:02d}-{(w % 4) * 7 + 1:02d}",
                                      "cell_id": np.arange(300), "x": np.arange(300) % 20 * 250.0,
                                      "y": np.arange(300) // 20 * 250.0, "lon": 0.0, "lat": 0.0, "risk": risk,
                                      "observed": observed, "model": model}))
    predictions = pd.concat(rows, ignore_index=True)
    report = accuracy_report(predictions, [0.01, 0.05], reference="lightgbm", reps=500)
    flat = report["models"]["flat"]["summary"]
    assert flat["pai@1%"]["mean"] == pytest.approx(1.0)  # ties shared: a flat forecast scores chance
    assert report["models"]["lightgbm"]["summary"]["pai@1%"]["mean"] > 2
    assert report["paired"]["flat"]["pai@1%"]["difference"] > 0
    assert report["paired"]["flat"]["pai@1%"]["weeks_better"] == 12
    assert report["warnings"] == []
    paths = write_report(report, predictions, tmp_path, "test report")
    page = paths["accuracy_html"].read_text()
    assert "policing data, not ground truth" in page and "report_calibration.png" in page
    assert json.loads(paths["accuracy_json"].read_text())["reference"] == "lightgbm"
    assert all(paths[k].stat().st_size > 5000 for k in ("plot_curve", "plot_pai", "plot_calibration", "plot_map"))
