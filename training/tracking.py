"""MLflow bookkeeping: one experiment per study area, one run per step, tagged with what made it.

Tracking URI from MLFLOW_TRACKING_URI, default sqlite:///mlflow.db (relative to the working directory).
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars in the CLI output
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path

from hotspot.features.config import StudyConfig
from hotspot.features.locking import locked

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
REPO_ROOT = Path(__file__).resolve().parents[1]


def tracking_uri() -> str:
    """The MLflow tracking URI: MLFLOW_TRACKING_URI, else the local SQLite default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI (None for any other store)."""
    if not uri.startswith("sqlite:///"):
        return None
    name = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(name) if name and name != ":memory:" else None


@contextmanager
def store_lock(what: str) -> Iterator[None]:
    """Hold the SQLite tracking store's file lock (`mlflow.db.lock`) for a read-modify-write of the registry (the
    champion alias and its history); nothing to hold for a tracking server, which orders its own writes."""
    path = sqlite_file(tracking_uri())
    with locked(path, what=what) if path is not None else nullcontext():
        yield


_READY: set[str] = set()


def quiet_mlflow() -> None:
    """On the command line without --verbose (HOTSPOT_LIBRARY_LOGS=quiet), MLflow's console lines go: its INFO
    lines (store migrations, 'Created version ...') and the registry's direct prints ('Successfully registered model
    ...') share one stream, which is switched off; its warnings go to stderr through a handler of their own."""
    if os.environ.get("HOTSPOT_LIBRARY_LOGS") != "quiet":
        return
    import logging

    from mlflow.utils import logging_utils

    stream = logging_utils.MLFLOW_LOGGING_STREAM
    if stream.enabled:
        stream.enabled = False
        warnings = logging.StreamHandler()
        warnings.setLevel(logging.WARNING)
        warnings.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger("mlflow").addHandler(warnings)


def ensure_store(uri: str | None = None) -> str:
    """Create (or upgrade) the tracking store once per process, under its file lock when it is a SQLite file: two
    first runs at once on a fresh mlflow.db otherwise both run MLflow's schema migrations and one fails ("table
    experiments already exists"). Returns the URI."""
    uri = uri or tracking_uri()
    quiet_mlflow()
    if uri not in _READY:
        path = sqlite_file(uri)
        if path is not None:
            from mlflow import MlflowClient

            with locked(path, what="creating the MLflow tracking store"):
                MlflowClient(uri).search_experiments(max_results=1)
        _READY.add(uri)
    return uri


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout ('+dirty' when it has uncommitted changes)."""
    from importlib.metadata import version

    __version__ = version("hotspot")

    if not (REPO_ROOT / ".git").exists():  # an installed copy: a git repository above site-packages is not ours
        return __version__
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def flatten(prefix: str, value) -> dict[str, str]:
    """A nested dict as dotted keys with string values (cut to 500 characters), for MLflow params and tags."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: str(value)[:500]}


def configure(cfg: StudyConfig) -> None:
    """Point MLflow at the tracking store and the area's experiment (or the one `mlflow run` chose)."""
    import mlflow

    mlflow.set_tracking_uri(ensure_store())
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
