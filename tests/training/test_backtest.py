"""Rolling backtest: output contract, and that each week is forecast only from the weeks before it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hotspot.features.config import load_config
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.models import RecentCounts
from hotspot.training.backtest import PREDICTION_COLUMNS, forecast_periods, make_models, run_backtest, write_backtest
from tests.conftest import write_config


@pytest.fixture(scope="module")
def synthetic_panel(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("bt")))
    result = validate(cfg)
    return cfg, build_panel(cfg, result.accepted, result.grid)


class RecordingForecaster(RecentCounts):
    """A real baseline that also records what each fit and predict call could see."""

    def __init__(self):
        super().__init__(weeks=4)
        self.name = "recording"
        self.fit_seen: list[int] = []
        self.predict_seen: list[tuple[int, pd.Timestamp]] = []

    def fit(self, panel):
        self.fit_seen.append(panel.n_periods)
        return super().fit(panel)

    def predict(self, panel):
        self.predict_seen.append((panel.n_periods, panel.next_period_start))
        return super().predict(panel)


def test_each_week_sees_only_the_weeks_before_it(synthetic_panel):
    cfg, panel = synthetic_panel
    periods = forecast_periods(panel, 6)
    model = RecordingForecaster()
    run_backtest(panel, [model], periods, refit_every=3, coverages=[0.01])
    assert model.fit_seen == [periods[0], periods[3]]  # refit every 3 weeks, on the data before that week
    assert [n for n, _ in model.predict_seen] == list(periods)
    assert [start for _, start in model.predict_seen] == list(panel.period_starts[periods])


def test_predictions_follow_the_contract(synthetic_panel, tmp_path):
    cfg, panel = synthetic_panel
    periods = forecast_periods(panel, 4)
    models = make_models(cfg, ["all"])
    result = run_backtest(panel, models, periods, refit_every=2, coverages=cfg.backtest.coverages)
    paths = write_backtest(result, tmp_path / "bt")

    pred = pd.read_parquet(paths["predictions"])
    assert list(pred.columns) == PREDICTION_COLUMNS
    assert len(pred) == len(models) * len(periods) * panel.grid.n_cells
    assert set(pred["model"].astype(str)) == {m.name for m in models}
    assert not pred.duplicated(["model", "period_start", "cell_id"]).any()
    # observed is the real count of the week in each cell
    one = pred[pred["model"].astype(str) == "history"].sort_values(["period_start", "cell_id"])
    expected = panel.target[periods][:, np.argsort(panel.grid.cell_id)].reshape(-1)
    np.testing.assert_array_equal(one["observed"].to_numpy(), expected)
    assert pd.to_datetime(pred["period_start"]).min() == panel.period_starts[periods[0]]
    assert np.isfinite(pred["risk"]).all() and (pred["risk"] >= 0).all()
    assert pred["lon"].between(-180, 180).all() and pred["lat"].between(-90, 90).all()

    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["weeks"] == [str(panel.period_starts[t].date()) for t in periods]
    for m in metrics["models"].values():
        assert len(m["weekly"]) == len(periods)
        for key in ("hit_rate", "pai", "pei"):
            for cov in ("0.5%", "1%", "2%", "5%", "10%"):
                assert f"{key}@{cov}" in m["mean"]
        pai = [w["pai@1%"] for w in m["weekly"]]
        assert m["mean"]["pai@1%"] == pytest.approx(np.nanmean(pai))
    assert paths["hit_rate_plot"].stat().st_size > 1000


def test_backtest_end_selects_the_weeks_before_it(synthetic_panel):
    _, panel = synthetic_panel
    end = panel.period_starts[40]
    periods = forecast_periods(panel, 5, end)
    assert list(periods) == [35, 36, 37, 38, 39]
    with pytest.raises(ValueError, match="look-back"):
        forecast_periods(panel, 200)


def test_unknown_model_name_is_refused(synthetic_panel):
    cfg, _ = synthetic_panel
    with pytest.raises(ValueError, match="unknown model"):
        make_models(cfg, ["lightgbm", "prophet"])
