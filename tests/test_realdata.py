"""Checks on the full Toronto data in ../shared/data; skipped cleanly when it is absent."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TORONTO_CONFIG, requires_shared_data

pytestmark = [requires_shared_data, pytest.mark.realdata]


@pytest.fixture(scope="module")
def toronto():
    from hotspot.features.config import load_config
    from hotspot.features.ingest import validate
    from hotspot.features.panel import build_panel

    cfg = load_config(TORONTO_CONFIG)
    result = validate(cfg)
    return cfg, result, build_panel(cfg, result.accepted, result.grid)


def test_full_toronto_validates_with_every_row_accounted_for(toronto):
    cfg, result, panel = toronto
    counts = result.reason_counts()
    assert result.n_read == 240_992
    assert result.n_read == len(result.accepted) + sum(counts.values())
    assert counts["before_earliest_date"] == 1_057  # occurrences before 2014 (data README)
    assert 0 < counts["outside_boundary"] < 100  # the README counts 38 points outside the city boundary
    assert 9_000 < result.grid.n_cells < 11_500  # about 10,000 cells of 250 m


def test_full_toronto_panel_matches_the_yearly_counts(toronto):
    cfg, result, panel = toronto
    years = panel.period_starts[: panel.n_periods].year
    total_2019 = panel.target[years == 2019].sum()
    # the README lists 34,064 incidents in 2019; weeks starting in 2019 and cells inside the boundary come close
    assert 33_000 < total_2019 < 34_700
    assert panel.X.shape == (panel.n_periods + 1, panel.grid.n_cells, len(panel.feature_names))
    assert str(panel.period_starts[-1].date()) == "2021-12-27"  # the partial last week is the forecast week


def test_baselines_reach_the_published_accuracy_level(toronto):
    from hotspot.training.backtest import forecast_periods, make_models, run_backtest

    cfg, result, panel = toronto
    periods = forecast_periods(panel, 8, "2019-12-30")
    bt = run_backtest(panel, make_models(cfg, ["naive_52w", "ewm_hl26", "naive_4w"]), periods, 4, [0.01])
    pai = {name: m["mean"]["pai@1%"] for name, m in bt.metrics["models"].items()}
    # long-window counts reach PAI@1% of about 17-18 on these weeks (issue text); a 4-week window is worse
    assert 14 < pai["naive_52w"] < 22 and 14 < pai["ewm_hl26"] < 22
    assert pai["naive_4w"] < pai["naive_52w"]
    assert np.isfinite(bt.predictions["risk"]).all()
