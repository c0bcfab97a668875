"""benchmarks/accuracy_matrix.py (issue 16): its help, its case syntax, and a tiny run on the bundled sample whose
JSON holds every model, the limit (or why there is none) and auto's ratio to the best baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SAMPLE_CONFIG

SCRIPT = REPO_ROOT / "benchmarks" / "accuracy_matrix.py"


def run(*args: str, tmp_path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=tmp_path)


def test_help_names_the_options(tmp_path):
    proc = run("--help", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--cases", "--products", "--periods", "--out", "--variants", "--refit-every"):
        assert option in proc.stdout


def test_a_bad_case_is_named(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        from accuracy_matrix import parse_cases
    finally:
        sys.path.pop(0)
    assert parse_cases("all:2019,assault:2021", ["all", "assault"], ["2019", "2021"]) == [
        ("all", "2019"), ("assault", "2021")]
    assert parse_cases(None, ["all", "assault"], ["2019"]) == [("all", "2019"), ("assault", "2019")]
    with pytest.raises(SystemExit, match="'burglary:2019' is not PRODUCT:PERIOD"):
        parse_cases("burglary:2019", ["all"], ["2019"])


def test_a_tiny_matrix_on_the_sample(tmp_path):
    out = tmp_path / "matrix.json"
    proc = run("--config", str(SAMPLE_CONFIG), "--cases", "all:mid,assault:end", "--products", "all,assault",
               "--periods", "mid=2019-06-03,end=2019-12-30", "--weeks", "4", "--refit-every", "4",
               "--variants", "blend", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = json.loads(out.read_text())["cases"]
    assert [(c["product"], c["period"]) for c in cases] == [("all", "mid"), ("assault", "end")]
    for case in cases:
        assert {"lightgbm", "auto", "auto_blend", "ewm_hl26", "sepp"} <= set(case["models"])
        assert case["best_baseline"] not in ("lightgbm", "auto", "auto_blend")
        assert case["n_weeks"] == 4 and case["fits"]["reused"] > 0
        models, ratio = case["models"], case["auto_vs_best"]["ratio"]
        assert ratio == pytest.approx(models["auto"]["pai@1%"] / models[case["best_baseline"]]["pai@1%"])
    # the weeks in mid-2019 have a year recorded after them, the last weeks of the sample none: no limit, and why
    assert cases[0]["limit"]["available"] and cases[0]["headroom"] is not None
    assert not cases[1]["limit"]["available"] and "recorded weeks after" in cases[1]["limit"]["note"]
    assert cases[1]["offenses"] == ["Assault"]
    assert "mean ratio" in proc.stdout and "load" in proc.stdout


def test_the_replay_of_auto_is_auto(tmp_path):
    """benchmarks/selection_replay.py, fed the forecasts a matrix run kept, scores the config's rule (choose, sticky)
    and a blend exactly as the matrix's own `auto` and `auto_blend` scored them on the same weeks."""
    out, kept = tmp_path / "matrix.json", tmp_path / "forecasts"
    proc = run("--config", str(SAMPLE_CONFIG), "--cases", "all:end", "--products", "all",
               "--periods", "end=2019-12-30", "--weeks", "8", "--refit-every", "4", "--variants", "blend",
               "--forecasts", str(kept), "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = json.loads(out.read_text())["cases"][0]["models"]
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        from selection_replay import case
    finally:
        sys.path.pop(0)
    res = case(kept / "all_end.npz", [("choose", 8), ("blend", 8), ("top2", 8)], judged=8, dev=0, refit_every=4)
    assert "dev" not in res and res["judged"]["best_baseline"] not in ("lightgbm", "auto")
    rules = res["judged"]["rules"]
    assert rules["choose/8"]["pai"] == pytest.approx(models["auto"]["pai@1%"], rel=1e-9)
    assert rules["blend/8"]["pai"] == pytest.approx(models["auto_blend"]["pai@1%"], rel=1e-9)
    assert rules["blend/8"]["dev"] == pytest.approx(models["auto_blend"]["deviance"], rel=1e-6)
    assert rules["lightgbm"]["pai"] == pytest.approx(models["lightgbm"]["pai@1%"], rel=1e-9)
    best = res["judged"]["best_baseline"]
    assert res["judged"]["best_pai"] == pytest.approx(models[best]["pai@1%"], rel=1e-12)
    import numpy as np

    with np.load(kept / "all_end.npz") as arrays:  # kept as scored: float32 would turn near-equal risks into ties
        assert all(arrays[name].dtype == np.float64 for name in models if name in arrays.files)
    assert 0.0 <= rules["blend/8"]["p_at_or_above"] <= 1.0
    assert rules["top2/8"]["pai"] > 0 and rules["top2/8"]["dev"] > 0  # the top-cells blend replays too


def test_the_replays_top_blend_fits_its_weights_where_the_ranking_is_decided():
    """selection_replay's `topN` rule: two forecasts, `sharp` orders the busiest cells right but misjudges the quiet
    ones, `level` gets the quiet cells' level right but gives the busy cells one rate. A deviance over every cell,
    mostly quiet cells, prefers `level`; over the cells at the top of either ranking the weights go to `sharp`."""
    import numpy as np

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        from selection_replay import top_blend_weights
    finally:
        sys.path.pop(0)
    from hotspot.training.selection import blend_weights

    rng = np.random.default_rng(1)
    W, C = 12, 20000
    rate = np.where(rng.random(C) < 0.03, rng.gamma(4.0, 2.0, C), rng.gamma(0.5, 0.1, C))  # a few busy cells
    observed = rng.poisson(np.tile(rate, (W, 1)))
    busy = rate > 1
    assert busy.sum() > np.ceil(0.02 * C)
    sharp = np.tile(np.where(busy, rate, 0.3 + 0.1 * rng.random(C)), (W, 1))  # right at the top, too high below it
    level = np.tile(np.where(busy, rate[busy].mean(), rate), (W, 1))  # right below, one flat rate at the top
    forecasts = np.stack([sharp, level])
    everywhere, top = blend_weights(forecasts, observed), top_blend_weights(forecasts, observed, 0.02)
    assert everywhere[1] > everywhere[0] and top[0] > top[1]
    # the cells: sharp's top 2% and every cell tied with level's n-th (all its busy cells): the busy cells
    np.testing.assert_allclose(top, blend_weights(forecasts[:, :, busy], observed[:, busy]))
    zeros = np.zeros_like(forecasts)  # a forecast of 0 is nobody's top: nothing above 0, the plain blend's weights
    np.testing.assert_allclose(top_blend_weights(zeros, observed, 0.02), blend_weights(zeros, observed))
    with pytest.raises(ValueError, match=r"forecasts \(candidates, weeks, cells\)"):
        top_blend_weights(forecasts[:, 0], observed, 0.02)


def test_the_sepp_fit_benchmark_runs_on_the_sample(tmp_path):
    """benchmarks/sepp_fit.py (is the matrix's SEPP a fair baseline?): a bad case is named; a short run on the
    sample backtests every variant on the same weeks and keeps the EM's parameters."""
    script = REPO_ROOT / "benchmarks" / "sepp_fit.py"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}

    def sepp_fit(*args):
        return subprocess.run([sys.executable, str(script), "--config", str(SAMPLE_CONFIG), *args],
                              capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)

    bad = sepp_fit("--cases", "burglary:2019")
    assert bad.returncode != 0 and "'burglary:2019'" in bad.stderr and "PRODUCT:PERIOD" in bad.stderr
    out = tmp_path / "sepp.json"
    proc = sepp_fit("--cases", "assault:2019", "--weeks", "4", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    [case] = json.loads(out.read_text())
    assert case["weeks"] == 4 and set(case["variants"]) == {"shipped", "converged", "no_coincident", "gap_1d"}
    for v in case["variants"].values():
        assert 0 < v["pai@1%"] and 0 < v["deviance"] and 0 <= v["theta"] <= 0.99 and v["iterations"] >= 1
    assert case["variants"]["shipped"]["iterations"] <= 50 and "mean PAI@1% ratio" in proc.stdout
