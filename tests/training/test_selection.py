"""`auto` (training/selection.py): it picks the candidate that wins its validation weeks, it never sees the week it
forecasts, it records its choices, and `hotspot backtest --model auto` writes them beside the contract files."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hotspot.features.config import load_config
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.models import EWMCounts, HistoryCounts, RecentCounts
from hotspot.training.backtest import make_models, run_backtest, write_backtest
from hotspot.training.selection import AutoSelect, choose, selection_rows
from tests.conftest import ORIGIN_LAT, ORIGIN_LON, run_cli, write_config

WEEKS, MOVE = 80, 56  # the planted hotspot moves from A to B at week MOVE


def moving_hotspot(seed: int = 0) -> pd.DataFrame:
    """Uniform background plus a tight hotspot of ~15 incidents a week at A, which moves to B at week MOVE: the last
    4 weeks' counts find B, the all-history mean still ranks A first."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2020-01-06")
    n_bg, per_week = 1500, 15
    lon = list(rng.uniform(ORIGIN_LON, ORIGIN_LON + 0.06, n_bg))
    lat = list(rng.uniform(ORIGIN_LAT, ORIGIN_LAT + 0.045, n_bg))
    seconds = list(rng.uniform(0, WEEKS * 7 * 86400, n_bg))
    for week in range(WEEKS):
        cx, cy = (0.015, 0.010) if week < MOVE else (0.045, 0.035)
        lon += list(rng.normal(ORIGIN_LON + cx, 0.0005, per_week))
        lat += list(rng.normal(ORIGIN_LAT + cy, 0.0004, per_week))
        seconds += list(rng.uniform(week, week + 1, per_week) * 7 * 86400)
    order = np.argsort(seconds)
    when = t0 + pd.to_timedelta(np.asarray(seconds)[order], unit="s")
    n = len(order)
    return pd.DataFrame({"when": when.strftime("%Y-%m-%d %H:%M:%S"), "lon": np.asarray(lon)[order],
                         "lat": np.asarray(lat)[order], "offence": rng.choice(["Assault", "Robbery"], size=n),
                         "case_ref": np.arange(n)})


def panel_of(folder, incidents: pd.DataFrame):
    cfg = load_config(write_config(folder, incidents))
    result = validate(cfg)
    return cfg, build_panel(cfg, result.accepted, result.grid)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return panel_of(tmp_path_factory.mktemp("planted"), moving_hotspot())


def auto(**kw) -> AutoSelect:
    # the winner listed last, so that "the first candidate" is never the right answer by accident
    return AutoSelect(candidates=[HistoryCounts(), RecentCounts(weeks=4)], **kw)


def test_auto_picks_the_candidate_that_wins_validation_and_forecasts_with_it(planted):
    _, panel = planted
    t = WEEKS - 4
    model = auto(validation_weeks=6, refit_every=3).fit(panel.until(t))
    assert model.chosen_ == "naive_4w"
    assert model.scores_["naive_4w"] > 2 * model.scores_["history"]  # the hotspot's cell found vs missed
    assert list(model.validation_weeks_) == list(panel.period_starts[t - 6:t])
    assert model.weekly_scores_.shape == (6, 2)
    np.testing.assert_array_equal(model.predict(panel.until(t)), RecentCounts(weeks=4).predict(panel.until(t)))
    # before the move history is as good as the recent counts: on weeks with a stable hotspot it is chosen
    stable = auto(validation_weeks=6, refit_every=3).fit(panel.until(MOVE - 2))
    assert stable.chosen_ == "history"


def test_choice_rule_minimises_deviance_and_breaks_ties_by_order():
    assert choose({"a": 1.0, "b": 2.0}, "pai@1%") == "b"
    assert choose({"a": 1.0, "b": 2.0}, "poisson_deviance") == "a"
    assert choose({"a": 2.0, "b": 2.0}, "pai@1%") == "a"
    assert choose({"a": math.nan, "b": 0.5}, "pai@1%") == "b"
    assert choose({"a": math.nan, "b": math.nan}, "pai@1%") == "a"


def _changed_from(incidents: pd.DataFrame, week_start: pd.Timestamp, seed: int = 1) -> pd.DataFrame:
    """The same incidents, but from `week_start` on each one's place shuffled among those later incidents: the
    counts of that week and every later one change, the set of points (and so the study area's grid) does not."""
    later = pd.to_datetime(incidents["when"]) >= week_start
    changed = incidents.copy()
    perm = np.random.default_rng(seed).permutation(int(later.sum()))
    for col in ("lon", "lat"):
        changed.loc[later, col] = changed.loc[later, col].to_numpy()[perm]
    return changed


def test_auto_never_sees_the_week_it_forecasts(planted, tmp_path):
    _, panel = planted
    t = WEEKS - 6
    incidents = moving_hotspot()
    _, other = panel_of(tmp_path / "changed", _changed_from(incidents, panel.period_starts[t]))
    np.testing.assert_array_equal(other.grid.cell_id, panel.grid.cell_id)
    np.testing.assert_array_equal(other.target[:t], panel.target[:t])
    assert not np.array_equal(other.target[t], panel.target[t])  # week t itself changed, and later ones
    a, b = auto().fit(panel.until(t)), auto().fit(other.until(t))
    assert (a.chosen_, a.scores_) == (b.chosen_, b.scores_)
    np.testing.assert_array_equal(a.predict(panel.until(t)), b.predict(other.until(t)))
    # the control: once week t is known, the changed counts do change the forecast
    later_a, later_b = auto().fit(panel.until(t + 1)), auto().fit(other.until(t + 1))
    assert not np.array_equal(later_a.predict(panel.until(t + 1)), later_b.predict(other.until(t + 1)))
    # and in a backtest the forecasts of every week before t are the same on both panels
    periods = np.arange(t - 4, t + 2)
    runs = [run_backtest(p, [auto()], periods, 2, [0.01]).predictions for p in (panel, other)]
    before = [r[pd.to_datetime(r["period_start"]) < panel.period_starts[t]]["risk"].to_numpy() for r in runs]
    np.testing.assert_array_equal(*before)


class CountingHistory(HistoryCounts):
    """The all-history mean, recording the length of every panel any copy of it is fitted on (clones included)."""

    fits: list[int] = []

    def _default_name(self) -> str:
        return "counting_history"

    def fit(self, panel):
        CountingHistory.fits.append(panel.n_periods)
        return super().fit(panel)


def test_a_backtest_of_auto_fits_no_candidate_twice_on_the_same_weeks(planted):
    _, panel = planted
    periods = np.arange(20, 36)  # before the move: history is chosen throughout
    fits = {}
    for reuse in (True, False):
        CountingHistory.fits = []
        model = AutoSelect(candidates=[CountingHistory(), RecentCounts(weeks=4)], validation_weeks=8, refit_every=4,
                           reuse_scores=reuse)
        refits = run_backtest(panel, [model], periods, 4, [0.01]).metrics["models"]["auto"]["refits"]
        assert {r["chosen"] for r in refits} == {"counting_history"}
        fits[reuse] = list(CountingHistory.fits)
    # with reuse: each block's fit once, and the last final fit serves as the next newest block's
    assert sorted(fits[True]) == sorted(set(fits[True])) == list(range(12, 36, 4))
    assert len(fits[False]) == 3 * len(range(20, 36, 4))  # two blocks and the final fit at every refit


def test_backtest_records_each_choice_and_reused_scores_change_nothing(planted, tmp_path):
    _, panel = planted
    periods = np.arange(MOVE - 4, MOVE + 8)  # across the move: the choice changes
    result = run_backtest(panel, [auto(validation_weeks=4, refit_every=2)], periods, 2, [0.01])
    refits = result.metrics["models"]["auto"]["refits"]
    assert [r["refit_week"] for r in refits] == [str(d.date()) for d in panel.period_starts[periods[::2]]]
    assert {r["chosen"] for r in refits} == {"history", "naive_4w"}
    assert refits[0]["chosen"] == "history" and refits[-1]["chosen"] == "naive_4w"
    # every week is forecast by the candidate chosen at its refit
    preds = result.predictions
    for i, t in enumerate(periods):
        chosen = refits[i // 2]["chosen"]
        refit_at = int(periods[i - i % 2])
        expected = (RecentCounts(weeks=4) if chosen == "naive_4w" else HistoryCounts()).fit(
            panel.until(refit_at)).predict(panel.until(int(t)))
        week = preds[preds["period_start"] == panel.period_starts[t].date()]
        np.testing.assert_allclose(week["risk"].to_numpy(), expected)
    fresh = run_backtest(panel, [auto(validation_weeks=4, refit_every=2, reuse_scores=False)], periods, 2, [0.01])
    assert fresh.metrics["models"]["auto"]["refits"] == refits
    table = selection_rows(result.metrics)
    assert list(table["chosen"]) == [r["chosen"] for r in refits]
    assert {"history", "naive_4w", "validation_from", "validation_to"} <= set(table.columns)
    paths = write_backtest(result, tmp_path / "bt")
    assert pd.read_csv(paths["selection"])["chosen"].tolist() == table["chosen"].tolist()


def test_sticky_refits_keep_the_previous_choice_over_a_difference_within_noise(planted):
    _, panel = planted
    periods = np.arange(16, MOVE)  # a stable hotspot: three near-identical candidates
    near = lambda sticky: AutoSelect(  # noqa: E731
        candidates=[RecentCounts(weeks=8), HistoryCounts(), EWMCounts(halflife=8)], validation_weeks=6,
        refit_every=2, sticky=sticky, metric="pai@10%")  # at 1% every one flags the hotspot's cell alone
    sticky, plain = (run_backtest(panel, [near(s)], periods, 2, [0.01]).metrics["models"]["auto"]["refits"]
                     for s in (True, False))
    assert all(r["chosen"] == r["best_mean"] for r in plain)
    kept = [r for r in sticky if r["chosen"] != r["best_mean"]]
    assert kept, "the best mean moved between near-identical candidates, yet no refit kept its previous choice"
    assert all(r["chosen"] == r["previous"] for r in kept)

    def switches(refits):
        return sum(a["chosen"] != b["chosen"] for a, b in zip(refits, refits[1:], strict=False))
    assert switches(sticky) < switches(plain)


def test_all_leaves_auto_out_and_bad_candidates_are_named(synthetic_config, tmp_path):
    cfg = load_config(synthetic_config)
    names = [m.name for m in make_models(cfg, ["all"])]
    assert "auto" not in names
    assert [m.name for m in make_models(cfg, ["all", "auto"])] == [*names, "auto"]
    default = make_models(cfg, ["auto"])[0]
    assert [c.name for c in default.candidates] == ["lightgbm", "naive_4w", "history", "ewm_hl8"]
    assert default.refit_every == cfg.backtest.refit_every and default.metric == cfg.promotion.metric
    bad = load_config(write_config(tmp_path / "bad", extra='[selection]\ncandidates = ["ewm_hl8", "prophet"]'))
    with pytest.raises(ValueError, match=r"selection\.candidates: unknown model\(s\) \['prophet'\]"):
        make_models(bad, ["auto"])


def test_cli_backtest_of_auto_writes_predictions_selection_and_report(tmp_path):
    config = write_config(tmp_path / "area", moving_hotspot(), extra=(
        '[selection]\ncandidates = ["history", "naive_4w", "ewm_hl8"]\nvalidation_weeks = 4'))
    out = tmp_path / "bt"
    proc = run_cli("backtest", "-c", str(config), "--weeks", "6", "--model", "auto,history", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_parquet(out / "predictions.parquet")
    assert set(preds["model"].astype(str)) == {"auto", "history"}
    selection = pd.read_csv(out / "selection.csv")
    assert len(selection) == 2 and set(selection["model"]) == {"auto"}  # 6 weeks, refit every 3
    assert set(selection["chosen"]) <= {"history", "naive_4w", "ewm_hl8"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection"]["models"]["auto"]["refits"] == 2
    assert metrics["selection"]["models"]["auto"]["vs_best_baseline"]["baseline"] == "history"
    assert "auto chose" in proc.stdout and "auto chose" in (out / "accuracy.html").read_text()
    assert json.loads((out / "accuracy.json").read_text())["best_baseline"] == "history"  # never auto
