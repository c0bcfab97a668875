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
