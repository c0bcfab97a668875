"""MLproject entry points run through `mlflow run` with the active environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

from hotspot.features.config import load_config
from hotspot.training.tracking import ENTRY_RUN_TAG, tracking_uri
from tests.conftest import REPO_ROOT, SAMPLE_CONFIG


def test_entry_points_cover_every_step():
    spec = yaml.safe_load((REPO_ROOT / "MLproject").read_text())
    assert {"validate", "features", "train", "tune", "promote", "rollback", "backtest", "forecast",
            "demo", "cycle"} <= set(spec["entry_points"])
    for name, entry in spec["entry_points"].items():
        assert entry["command"].startswith("hotspot "), name


def mlflow_run(entry: str, *args: str) -> subprocess.CompletedProcess:
    mlflow_exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.run(
        [str(mlflow_exe), "run", str(REPO_ROOT), "-e", entry, "--env-manager", "local", *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_mlflow_run_validate_logs_to_the_areas_experiment(tmp_path):
    """`mlflow run` starts the entry point's run in "Default" (or the experiment named on its command line); the
    step's run lands in the area's experiment, where the service and the UI look, and the two runs name each other."""
    mlflow_run("validate", "-P", f"config={SAMPLE_CONFIG}", "-P", f"out={tmp_path / 'val'}")
    assert (tmp_path / "val" / "quarantine.csv").exists()

    client = MlflowClient(tracking_uri())
    area = load_config(SAMPLE_CONFIG).area.name
    (step,) = client.search_runs([client.get_experiment_by_name(area).experiment_id],
                                 filter_string="tags.step = 'validate'")
    (entry,) = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    assert step.data.tags[ENTRY_RUN_TAG] == entry.info.run_id
    assert entry.data.tags["step_run_ids"] == step.info.run_id and entry.data.tags["area_experiment"] == area
    assert step.info.status == entry.info.status == "FINISHED"


def test_mlflow_run_in_the_areas_experiment_nests_the_step_run(tmp_path):
    area = load_config(SAMPLE_CONFIG).area.name
    mlflow_run("validate", "--experiment-name", area, "-P", f"config={SAMPLE_CONFIG}", "-P", f"out={tmp_path}")
    client = MlflowClient(tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name(area).experiment_id])
    (step,) = [r for r in runs if r.data.tags.get("step") == "validate"]
    (entry,) = [r for r in runs if r.info.run_id != step.info.run_id]
    assert step.data.tags["mlflow.parentRunId"] == entry.info.run_id and ENTRY_RUN_TAG not in step.data.tags
