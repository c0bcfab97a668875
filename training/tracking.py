"""MLflow bookkeeping: one experiment per study area, one run per step, tagged with what made it.

Tracking URI from MLFLOW_TRACKING_URI, default sqlite:///mlflow.db (relative to the working directory).
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars in the CLI output
import subprocess
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from features.config import StudyConfig

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
REPO_ROOT = Path(__file__).resolve().parents[1]


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout ('+dirty' when it has uncommitted changes)."""
    from hotspot import __version__

    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def flatten(prefix: str, value) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: str(value)[:500]}


def configure(cfg: StudyConfig) -> None:
    """Point MLflow at the tracking store and the area's experiment (or the one `mlflow run` chose)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(cfg.area.name)


@contextmanager
def step_run(cfg: StudyConfig, step: str, data_fingerprint: str, run_name: str | None = None) -> Iterator:
    """Start an MLflow run for one pipeline step, with the config, data fingerprint and code version logged."""
    import mlflow

    configure(cfg)
    tags = {"step": step, "area": cfg.area.name, "data_fingerprint": data_fingerprint,
            "code_version": code_version(), "config_sha256": cfg.source_sha256 or ""}
    # Under `mlflow run` the entry point's run is the parent and each step a nested run inside it.
    parent = os.environ.get("MLFLOW_RUN_ID")
    outer = mlflow.start_run(run_id=parent) if parent and not mlflow.active_run() else nullcontext()
    with outer, mlflow.start_run(run_name=run_name or step, tags=tags, nested=mlflow.active_run() is not None) as run:
        params = flatten("", cfg.model_dump(mode="json"))
        params.update({"config_path": str(cfg.source_path), "config_sha256": cfg.source_sha256 or "",
                       "data_fingerprint": data_fingerprint, "code_version": code_version()})
        mlflow.log_params(params)
        if cfg.source_path:
            mlflow.log_artifact(str(cfg.source_path), artifact_path="config")
        yield run
