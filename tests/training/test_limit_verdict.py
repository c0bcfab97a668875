"""The accuracy report's verdict, the clairvoyant limit and the headroom, and PEI* (Joshi et al. 2021)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hotspot.training.backtest import PREDICTION_COLUMNS, available_models
from hotspot.training.evaluation.limit import LIMIT_NAME, clairvoyant_limit, limit_predictions, panel_limit
from hotspot.training.evaluation.metrics import pei_at
from hotspot.training.evaluation.report import accuracy_report, summary_rows, write_report
from hotspot.training.evaluation.stats import pei_star_at
from hotspot.training.evaluation.verdict import BEATEN, BEATS, SAME, headroom, verdict

# --- the clairvoyant limit ---------------------------------------------------------------------------------------

def test_limit_is_the_mean_of_the_weeks_around_each_week_and_ranks_a_steady_cell_first():
    rng = np.random.default_rng(0)
    target = rng.poisson(0.5, size=(130, 40)).astype(float)
    target[:, 7] = 3.0  # a steady hotspot: 3 a week, every week
    target[:, 8] = np.arange(130)  # a trend: the mean of t-k..t+k without t is t itself
    periods = np.arange(60, 72)
    limit = clairvoyant_limit(target, periods, weeks=52, min_after=26)
    assert limit.risk.shape == (12, 40) and limit.available
    np.testing.assert_allclose(limit.risk[:, 7], 3.0)
    np.testing.assert_allclose(limit.risk[:, 8], periods)
    assert (limit.risk[:, 7] > np.delete(limit.risk, [7, 8], axis=1).max(axis=1)).all()  # ranked first of the rest
    j = 3  # by hand, week 60 (the first): the 52 weeks before and the 52 after, week 60 left out
    assert limit.risk[0, j] == pytest.approx(np.r_[target[8:60, j], target[61:113, j]].mean())


def test_the_week_itself_never_changes_its_own_limit():
    rng = np.random.default_rng(1)
    target = rng.poisson(1.0, size=(100, 30)).astype(float)
    periods = np.arange(40, 50)
    before = clairvoyant_limit(target, periods, weeks=20, min_after=10).risk
    changed = target.copy()
    changed[45] += 50  # a week of many incidents
    after = clairvoyant_limit(changed, periods, weeks=20, min_after=10).risk
    np.testing.assert_array_equal(after[periods == 45], before[periods == 45])
    assert (after[periods == 44] > before[periods == 44]).all()  # its neighbours do see it


def test_limit_near_the_end_of_the_data_is_unavailable_and_says_why():
    target = np.ones((100, 5))
    limit = clairvoyant_limit(target, np.arange(90, 97), weeks=52, min_after=26)
    assert not limit.available and limit.weeks_after == 3
    assert ("needs at least 26 recorded weeks after each backtest week; these weeks end 3 weeks before the end of "
            "the data") in limit.note
    assert clairvoyant_limit(target, np.arange(60, 74), min_after=26).available  # 26 after the last: enough
    with pytest.raises(ValueError, match="must lie in 0..99"):
        clairvoyant_limit(target, np.arange(95, 101))


def test_limit_table_of_the_sample_has_the_predictions_columns_and_is_no_model(sample_prepared):
    cfg, _, panel = sample_prepared
    periods = np.arange(panel.n_periods - 40, panel.n_periods - 38)
    frame = limit_predictions(panel, panel_limit(panel, periods))
    assert list(frame.columns) == PREDICTION_COLUMNS and set(frame["model"]) == {LIMIT_NAME}
    assert len(frame) == 2 * panel.grid.n_cells
    np.testing.assert_array_equal(frame["observed"].to_numpy(), panel.target[periods].reshape(-1))
    assert LIMIT_NAME not in available_models(cfg)  # never a model anything could choose or promote


# --- the verdict and the headroom --------------------------------------------------------------------------------

def test_verdict_words_on_planted_models():
    rng = np.random.default_rng(2)
    base = pd.Series(10 + rng.normal(0, 1, 12))
    weekly = {"lightgbm": base + 2 + rng.normal(0, 0.1, 12), "ewm_hl26": base.copy(), "twin": base + 2,
              "kde_250m": base - 5 + rng.normal(0, 0.1, 12), "better": base + 6}
    weekly["twin"] = weekly["lightgbm"].copy()  # identical forecasts
    out = verdict(weekly, "lightgbm", reps=500)
    rel = {p["other"]: p["relation"] for p in out["pairs"]}
    assert rel == {"ewm_hl26": BEATS, "twin": SAME, "kde_250m": BEATS, "better": BEATEN}
    assert out["best_baseline"] == "better"  # the best model that is not LightGBM
    assert out["sentences"][0] == ("On these 12 weeks (PAI@1%), lightgbm is not distinguishable from twin; it beats "
                                   "ewm_hl26 and kde_250m; it is beaten by better.")
    assert out["sentences"][1].startswith("The best baseline is better (PAI@1% ")
    assert "better in 0 of 12 weeks" in out["sentences"][1]
    only = verdict({"lightgbm": base}, "lightgbm", reps=100)
    assert "nothing to compare" in only["sentences"][0] and only["best_baseline"] is None


def test_verdict_without_the_reference_model_compares_the_best_with_the_rest():
    base = pd.Series(np.linspace(5, 7, 10))
    out = verdict({"naive_52w": base, "ewm_hl26": base + 0.001 * np.arange(10)}, "lightgbm", reps=200)
    assert out["reference"] == "ewm_hl26" and out["best_baseline"] == "ewm_hl26"
    assert out["sentences"][0].startswith("ewm_hl26 has the highest PAI@1% on these 10 weeks; it ")


def test_headroom_share_and_its_guards():
    means = {"lightgbm": 11.0, "ewm_hl26": 10.0, "kde_250m": 8.0}
    out = headroom(means, "ewm_hl26", 12.0)
    assert out["share"] == {"lightgbm": 0.5, "ewm_hl26": 0.0, "kde_250m": -1.0} and out["headroom"] == 2.0
    assert "lightgbm closes 50% of that headroom" in out["sentence"]
    flat = headroom(means, "ewm_hl26", 9.5)  # the best baseline at or above the limit: no share, and words
    assert all(v is None for v in flat["share"].values()) and "at or above the clairvoyant limit" in flat["sentence"]
    assert headroom(means, "ewm_hl26", 10.0)["share"]["lightgbm"] is None  # zero headroom, not inf
    gone = headroom(means, "ewm_hl26", None, "the limit needs 26 weeks after")
    assert gone["sentence"] == "the limit needs 26 weeks after" and gone["share"]["lightgbm"] is None
    assert "no baseline" in headroom({"lightgbm": 11.0}, None, 12.0)["sentence"]
    # a headroom within the weeks' noise: no shares (a model 0.13 below would read as -120%), words instead
    noisy = headroom({"lightgbm": 9.87, "ewm_hl26": 10.0}, "ewm_hl26", 10.11,
                     limit_vs_best={"difference": 0.11, "ci95": [-0.03, 0.27]})
    assert all(v is None for v in noisy["share"].values())
    assert "no measurable headroom" in noisy["sentence"] and "[95% interval -0.03, +0.27]" in noisy["sentence"]
    clear = headroom(means, "ewm_hl26", 12.0, limit_vs_best={"difference": 2.0, "ci95": [1.5, 2.5]})
    assert clear["share"]["lightgbm"] == 0.5


def _table(weeks: int, cells: int, models: dict, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rate = np.linspace(0.01, 2, cells)
    rows = []
    for w in range(weeks):
        observed = rng.poisson(rate)
        for model, risk in models.items():
            rows.append(pd.DataFrame({"period_start": str(pd.Timestamp("2020-01-06") + pd.Timedelta(weeks=w))[:10],
                                      "cell_id": np.arange(cells), "x": np.arange(cells) % 20 * 250.0,
                                      "y": np.arange(cells) // 20 * 250.0, "lon": 0.0, "lat": 0.0,
                                      "risk": risk(rate, rng), "observed": observed, "model": model}))
    return pd.concat(rows, ignore_index=True)


def test_report_with_the_limit_puts_the_verdict_first_and_the_limit_beside_the_models(tmp_path):
    models = {"lightgbm": lambda r, g: r * g.lognormal(0, 0.3, len(r)),
              "ewm_hl26": lambda r, g: r * g.lognormal(0, 1.5, len(r)),
              "flat": lambda r, g: np.ones(len(r)), LIMIT_NAME: lambda r, g: r}
    table = _table(12, 300, models)
    limit = table[table["model"] == LIMIT_NAME]
    predictions = table[table["model"] != LIMIT_NAME]
    predictions = predictions.assign(model=predictions["model"].astype(str))
    report = accuracy_report(predictions, [0.01, 0.05], reps=300, limit=limit, limit_note="reference note")
    assert LIMIT_NAME not in report["models"] and report["limit"]["available"]
    assert report["best_baseline"] == "ewm_hl26"
    assert report["verdict"]["sentences"][0].startswith("On these 12 weeks (PAI@1%), lightgbm")
    lim = report["limit"]["summary"]["pai@1%"]["mean"]
    best = report["models"]["ewm_hl26"]["summary"]["pai@1%"]["mean"]
    model = report["models"]["lightgbm"]["summary"]["pai@1%"]["mean"]
    assert report["headroom"]["share"]["lightgbm"] == pytest.approx((model - best) / (lim - best))
    rows = summary_rows(report)
    assert rows.index[0] == LIMIT_NAME and set(rows.index[1:]) == {"lightgbm", "ewm_hl26", "flat"}
    paths = write_report(report, predictions, tmp_path, "test report")
    page = paths["accuracy_html"].read_text()
    assert page.index(report["verdict"]["sentences"][0]) < page.index("<table")  # the verdict comes first
    assert "reference: uses future data, not a forecast" in page and "headroom closed" in page
    saved = json.loads(paths["accuracy_json"].read_text())
    assert saved["verdict"]["pairs"] and saved["headroom"]["best_baseline"] == "ewm_hl26"
    # without the limit: no number, the reason in words, no share
    gone = accuracy_report(predictions, [0.01, 0.05], reps=100, limit=None, limit_note="needs 26 weeks after")
    assert not gone["limit"]["available"] and gone["headroom"]["sentence"] == "needs 26 weeks after"
    assert LIMIT_NAME not in summary_rows(gone).index and summary_rows(gone)["headroom closed"].isna().all()


# --- PEI* --------------------------------------------------------------------------------------------------------

def test_pei_star_is_the_smallest_area_that_holds_the_hits_over_the_area_flagged():
    observed = np.zeros(100)
    observed[:8] = [5, 1, 1, 1, 1, 1, 1, 1]  # one busy cell and seven with one incident each
    risk = np.zeros(100)
    risk[1:5] = 1.0  # flags 4 cells (4% of 100) holding one incident each: 4 hits
    # PEI: 4 hits / the most any 4 cells held (5 + 1 + 1 + 1 = 8) = 0.5
    assert pei_at(risk, observed, 0.04) == pytest.approx(0.5)
    # PEI*: the fewest busiest cells whose counts reach 4 hits is 1 (the cell of 5): a* / a = 1 / 4
    assert pei_star_at(risk, observed, 0.04) == pytest.approx(0.25)
    # flagging the busy cell and three singles: 8 hits, which need the same 4 cells: PEI* = PEI = 1
    risk[0] = 2.0
    risk[4] = 0.0
    assert pei_star_at(risk, observed, 0.04) == pytest.approx(1.0) == pei_at(risk, observed, 0.04)
    risk = np.zeros(100)
    risk[[0, 1, 2]] = 1.0  # 3 cells: 7 hits; the fewest cells reaching 7 are the 5 and two singles, 3 cells: 1.0
    assert pei_star_at(risk, observed, 0.03) == pytest.approx(1.0)
    risk[0] = 0.0
    risk[3] = 1.0  # 3 singles: 3 hits, held by the one cell of 5: 1/3; PEI = 3/7
    assert pei_star_at(risk, observed, 0.03) == pytest.approx(1 / 3) and pei_at(risk, observed, 0.03) == 3 / 7
    nothing = (np.arange(100) >= 96).astype(float)  # flags 4 cells without incidents: PEI* 0, as PEI
    assert pei_star_at(nothing, observed, 0.04) == 0.0 == pei_at(nothing, observed, 0.04)
    assert np.isnan(pei_star_at(risk, np.zeros(100), 0.04))
