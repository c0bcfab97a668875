"""MLproject entry points run through `mlflow run` with the active environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT, SAMPLE_CONFIG


def test_entry_points_cover_every_step():
    spec = yaml.safe_load((REPO_ROOT / "MLproject").read_text())
    assert {"validate", "features", "train", "tune", "promote", "rollback", "backtest", "forecast",
            "demo"} <= set(spec["entry_points"])
    for name, entry in spec["entry_points"].items():
        assert entry["command"].startswith("hotspot "), name


def test_mlflow_run_validate(tmp_path):
    mlflow_exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.run(
        [str(mlflow_exe), "run", str(REPO_ROOT), "-e", "validate", "--env-manager", "local",
         "-P", f"config={SAMPLE_CONFIG}", "-P", f"out={tmp_path / 'val'}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "val" / "quarantine.csv").exists()
