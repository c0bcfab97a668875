"""Feature-family ablation: every family removed in turn, on the same weeks as the full model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hotspot.features.config import load_config
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.training.ablation import paired_difference, run_ablation, write_ablation
from hotspot.training.backtest import forecast_periods
from tests.conftest import run_cli, write_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("abl")))
    result = validate(cfg)
    return cfg, build_panel(cfg, result.accepted, result.grid)


def test_each_family_is_removed_once_on_the_same_weeks(setup, tmp_path):
    cfg, panel = setup
    periods = forecast_periods(panel, 4)
    abl = run_ablation(cfg, panel, periods, refit_every=4, baselines=["naive_4w"])
    families = sorted(set(panel.feature_families.values()))
    table = abl.table
    assert list(table.index) == ["lightgbm"] + [f"lightgbm-no_{f}" for f in families] + ["naive_4w"]
    for fam in families:
        n_fam = sum(1 for f in panel.feature_families.values() if f == fam)
        assert table.loc[f"lightgbm-no_{fam}", "features"] == len(panel.feature_names) - n_fam
    assert table.loc["lightgbm", "d_pai@1%"] == 0 and table.loc["lightgbm", "d_deviance"] == 0
    # the paired difference is the mean of the weekly differences
    weekly = abl.backtest.metrics["models"]
    fam = families[0]
    a = [w["pai@1%"] for w in weekly[f"lightgbm-no_{fam}"]["weekly"]]
    b = [w["pai@1%"] for w in weekly["lightgbm"]["weekly"]]
    assert table.loc[f"lightgbm-no_{fam}", "d_pai@1%"] == pytest.approx(np.nanmean(np.subtract(a, b)))
    assert abl.family_gain.sum() == pytest.approx(1.0)
    assert set(abl.family_gain.index) == set(families)
    assert set(abl.backtest.predictions["period_start"].astype(str)) == {str(panel.period_starts[t].date())
                                                                          for t in periods}

    paths = write_ablation(abl, tmp_path, "synthetic")
    saved = json.loads(paths["ablation_json"].read_text())
    assert [v["variant"] for v in saved["variants"]] == list(table.index)
    assert paths["ablation_plot"].stat().st_size > 5000
    assert pd.read_csv(paths["ablation_table"], index_col=0).shape[0] == len(table)


def test_paired_difference_interval():
    a = [{"k": v} for v in (2.0, 3.0, 4.0, 5.0)]
    b = [{"k": v} for v in (1.0, 1.0, 1.0, 1.0)]
    mean, lo, hi = paired_difference(a, b, "k")
    assert mean == 2.5 and lo < 2.5 < hi
    assert 1.0 <= lo < 2.5 < hi <= 4.0  # percentile bootstrap: inside the range of the weekly differences
    one = paired_difference(a[:1], b[:1], "k")
    assert one[0] == 1.0 and np.isnan(one[1]) and np.isnan(one[2])
    assert all(np.isnan(paired_difference([], [], "k")))


def test_cli_lists_families_and_runs_ablation_and_overrides(tmp_path):
    proc = run_cli("features", "--list")
    assert proc.returncode == 0, proc.stderr
    for fam in ("temporal", "offense_groups", "spatial", "near_repeat", "time_of_day", "premises", "calendar",
                "context"):
        assert fam in proc.stdout

    config = write_config(tmp_path / "area")
    proc = run_cli("backtest", "--config", str(config), "--weeks", "3", "--ablation", "--out", str(tmp_path / "ab"))
    assert proc.returncode == 0, proc.stderr
    assert "Ablation" in proc.stdout and (tmp_path / "ab" / "ablation.csv").exists()

    proc = run_cli("backtest", "--config", str(config), "--weeks", "3", "--model", "lightgbm", "--without", "spatial",
                   "--target", "Robbery", "--out", str(tmp_path / "nospatial"))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "nospatial" / "metrics.json").read_text())
    assert metrics["target_offenses"] == ["Robbery"]

    proc = run_cli("backtest", "--config", str(config), "--weeks", "3", "--target", "Arson")
    assert proc.returncode == 2 and "Arson" in proc.stderr

    proc = run_cli("backtest", "--config", str(config), "--weeks", "3", "--without", "weather")
    assert proc.returncode == 2 and "unknown feature family" in proc.stderr
