"""Processes sharing one SQLite MLflow store, with real processes: first runs at once on a fresh mlflow.db all
succeed (MLflow's schema migrations run once, under the store's lock), and champion moves at once (promotions,
rollbacks) all land in the champion history instead of overwriting each other's read-modify-write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO_ROOT, SAMPLE_CONFIG

pytestmark = pytest.mark.slow

# Each process waits for the start file, so they all reach MLflow at the same moment.
FIRST_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    while not Path(sys.argv[1]).exists():
        time.sleep(0.01)
    from hotspot.features.config import load_config
    from hotspot.training import tracking
    import mlflow
    cfg = load_config(sys.argv[2])
    with tracking.step_run(cfg, "race", "fp-race", run_name="race " + sys.argv[3]):
        mlflow.log_metric("n", float(sys.argv[3]))
    print("ok", flush=True)
""")

MOVES = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    while not Path(sys.argv[1]).exists():
        time.sleep(0.01)
    from hotspot.features.config import load_config
    from hotspot.training.registry import set_champion
    cfg = load_config(sys.argv[2])
    for k in range(int(sys.argv[4])):
        set_champion(cfg, str(1 + k % 2), f"{sys.argv[3]}-{k}", rollback=k % 2 == 1)
    print("ok", flush=True)
""")


def start_together(tmp_path, script: str, argsets: list[list[str]]) -> list[subprocess.CompletedProcess]:
    go = tmp_path / "go"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(REPO_ROOT),
           "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(go), str(SAMPLE_CONFIG), *args], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in argsets]
    time.sleep(4)  # every process has imported what it needs and waits
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_first_runs_at_once_on_a_fresh_store_all_succeed(tmp_path):
    results = start_together(tmp_path, FIRST_RUN, [[str(i)] for i in range(4)])
    for r in results:
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("toronto-sample").experiment_id],
                              filter_string="tags.step = 'race'")
    assert sorted(r.data.metrics["n"] for r in runs) == [0.0, 1.0, 2.0, 3.0]


def test_champion_moves_at_once_all_land_in_the_history(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from hotspot.features.config import load_config
    from hotspot.training.registry import champion_history, registered_name

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config(SAMPLE_CONFIG)
    client = MlflowClient(uri)
    name = registered_name(cfg)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=str(tmp_path / "model"))
    moves = 8
    results = start_together(tmp_path, MOVES, [["a", str(moves)], ["b", str(moves)], ["c", str(moves)]])
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    history = champion_history(cfg)
    reasons = [entry["reason"] for entry in history]
    expected = {f"{who}-{k}" for who in "abc" for k in range(moves)}
    assert sorted(reasons) == sorted(expected), f"lost moves: {sorted(expected - set(reasons))}"
    # each entry's `previous` is the version the alias pointed at just before it: the moves form one chain
    for before, after in zip(history, history[1:]):
        assert after["previous"] == before["version"], json.dumps(history, indent=1)
