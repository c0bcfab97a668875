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


# MLflow's chatter on a registration, printed straight to stderr (not through a logger a level could silence)
CHATTER = ("Successfully registered model", "Created version", "already exists. Creating a new version",
           " INFO mlflow")


@contextmanager
def quiet_console() -> Iterator[None]:
    """Around an MLflow call that prints its progress (logging and registering a model): on the command line
    without --verbose its chatter is dropped and anything else it writes to stderr (warnings, errors) is passed on.
    Its INFO log lines are silenced by level (MLFLOW_LOGGING_LEVEL=WARNING, set by the command line); these prints
    bypass the logger, and MLflow re-enables its own stream while it logs a model, so they are filtered here."""
    if os.environ.get("HOTSPOT_LIBRARY_LOGS") != "quiet":
        yield
        return
    import io
    import sys
    from contextlib import redirect_stderr

    buffer = io.StringIO()
    try:
        with redirect_stderr(buffer):
            yield
    finally:
        kept = [line for line in buffer.getvalue().splitlines() if line.strip() and not any(
            c in line for c in CHATTER)]
        if kept:
            print("\n".join(kept), file=sys.stderr)


def ensure_store(uri: str | None = None) -> str:
    """Create (or upgrade) the tracking store once per process, under its file lock when it is a SQLite file: two
    first runs at once on a fresh mlflow.db otherwise both run MLflow's schema migrations and one fails ("table
    experiments already exists"). Returns the URI."""
    uri = uri or tracking_uri()
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


def is_server(uri: str) -> bool:
    """A tracking server (http[s]://): the one store that the processes of a cluster may all log to at once (a SQLite
    file is for one machine's processes, taking turns under its lock)."""
    return uri.startswith(("http://", "https://"))


def log_trial_run(client, experiment_id: str, parent_run_id: str, study: str, trial: int, spec: dict,
                  fold_scores: list[dict], n_folds: int, worker: str | None = None) -> str:
    """One Optuna trial as a run nested under the `tune` run `parent_run_id`: its parameters and each fold's scores
    (step = fold). Every tag is set at creation, so a run cut off by a kill while logging is still found and
    labelled. Logged from the command's process, or from a Dask worker straight to the tracking server. Returns the
    run id."""
    import time

    import numpy as np
    from mlflow.entities import Metric, Param

    tags = {"mlflow.parentRunId": parent_run_id, "mlflow.runName": f"trial {trial}", "step": "tune_trial",
            "study": study, "state": "pruned" if len(fold_scores) < n_folds else "complete"}
    if worker:
        tags["worker"] = worker
    run = client.create_run(experiment_id, run_name=f"trial {trial}", tags=tags)
    params = {"trial": str(trial), **flatten("", {"params": spec.get("params", {}),
                                                  "num_boost_round": spec.get("num_boost_round"),
                                                  "train_periods": spec.get("train_periods")})}
    now = int(time.time() * 1000)
    metrics = [Metric(m.replace("@", "_at_").replace("%", "pct"), float(v), now, k)
               for k, scores in enumerate(fold_scores) for m, v in scores.items() if np.isfinite(v)]
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by MLflow 3's UI: a model-training experiment opens on its runs
EXPERIMENT_KIND = "custom_model_development"  # (without it the UI opens on the GenAI traces page)
NOTE_TAG = "mlflow.note.content"  # the experiment's description in the UI
ENTRY_RUN_TAG = "entry_point_run_id"  # on a step run started under `mlflow run` in another experiment
_CONFIGURED: set[tuple[str, str]] = set()
_ENTRY_RUN: dict[str, str | None] = {"id": None}


def experiment_description(cfg: StudyConfig) -> str:
    """What the area's experiment holds, in words (the experiment's description in the MLflow UI)."""
    return (f"Weekly crime-hotspot forecasting for **{cfg.area.name}** ({cfg.area.cell_size_m:g} m cells; config "
            f"`{cfg.source_path.name if cfg.source_path else 'unknown'}`). One run per pipeline step, tagged "
            "`step`:\n\n"
            f"- `train vN`: fits LightGBM on every observed period and registers it as version N of "
            f"`{cfg.area.name}-lightgbm` (the model returns expected incidents per cell).\n"
            "- `backtest FIRST..LAST`: rolling weekly forecasts of several models on the same weeks; one nested "
            "run per model with the same metric names (`pai_at_1pct`, `poisson_deviance`, ...), so the chart "
            "view compares them; the parent keeps the accuracy report under `backtest/`.\n"
            "- `tune STUDY`: an Optuna study, one nested run per trial.\n"
            "- `promote vN` / `rollback`: the promotion gate's decision and its reason.\n"
            "- `forecast WEEK`, `audit vN`, `briefing WEEK`, `validate`, `features`: the other steps.\n\n"
            "Every run records the data fingerprint, config hash and code version; inputs are logged as datasets "
            "(the validated incidents and the cell x period panel).")


def configure(cfg: StudyConfig) -> str:
    """Point MLflow at the tracking store and the area's experiment (created, tagged as a model-training experiment
    and described when missing); returns the experiment id."""
    import mlflow

    uri = ensure_store()
    mlflow.set_tracking_uri(uri)
    _take_entry_point_run()
    experiment = mlflow.set_experiment(cfg.area.name)
    if (uri, experiment.experiment_id) not in _CONFIGURED:
        wanted = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, NOTE_TAG: experiment_description(cfg)}
        client = mlflow.MlflowClient(uri)
        for key, value in wanted.items():
            if key not in (experiment.tags or {}):  # a description edited in the UI is kept
                client.set_experiment_tag(experiment.experiment_id, key, value)
        _CONFIGURED.add((uri, experiment.experiment_id))
    return experiment.experiment_id


def _take_entry_point_run() -> str | None:
    """The run `mlflow run` made for the entry point (MLFLOW_RUN_ID), taken out of the environment once: MLflow's
    start_run would otherwise resume it, in its own experiment, wherever a step asks for a new run."""
    taken = os.environ.pop("MLFLOW_RUN_ID", None)
    if taken:
        _ENTRY_RUN["id"] = taken
    return _ENTRY_RUN["id"]


def entry_point_run() -> str | None:
    """The id of the `mlflow run` entry point's run this process runs under, or None."""
    return _take_entry_point_run()


@contextmanager
def step_run(cfg: StudyConfig, step: str, data_fingerprint: str, run_name: str | None = None) -> Iterator:
    """Start an MLflow run for one pipeline step, with the config, data fingerprint and code version logged.

    Under `mlflow run` the entry point's run is the parent when it is in the area's experiment (`mlflow run
    --experiment-name AREA`); when it is elsewhere ("Default"), the step run is started in the area's experiment,
    where the service and the UI look, and the two runs name each other (tags `entry_point_run_id` here,
    `step_run_ids` and `area_experiment` there)."""
    import mlflow

    experiment_id = configure(cfg)
    tags = {"step": step, "area": cfg.area.name, "product": cfg.product.name, "data_fingerprint": data_fingerprint,
            "code_version": code_version(), "config_sha256": cfg.source_sha256 or ""}
    entry = entry_point_run()
    client = mlflow.MlflowClient()
    outer = nullcontext()
    if entry and not mlflow.active_run():
        if client.get_run(entry).info.experiment_id == experiment_id:
            outer = mlflow.start_run(run_id=entry)
        else:
            tags[ENTRY_RUN_TAG] = entry
    with outer, mlflow.start_run(run_name=run_name or step, tags=tags, experiment_id=experiment_id,
                                 nested=mlflow.active_run() is not None) as run:
        if tags.get(ENTRY_RUN_TAG):
            _point_entry_run_at(client, entry, run.info.run_id, cfg.area.name)
        params = flatten("", cfg.model_dump(mode="json"))
        params.update({"config_path": str(cfg.source_path), "config_sha256": cfg.source_sha256 or "",
                       "data_fingerprint": data_fingerprint, "code_version": code_version()})
        mlflow.log_params(params)
        if cfg.source_path:
            mlflow.log_artifact(str(cfg.source_path), artifact_path="config")
        yield run


def _point_entry_run_at(client, entry: str, run_id: str, area: str) -> None:
    """Tag the entry point's run (in another experiment) with the step runs it made and their experiment."""
    known = client.get_run(entry).data.tags.get("step_run_ids", "")
    ids = [i for i in known.split(",") if i] + [run_id]
    client.set_tag(entry, "step_run_ids", ",".join(ids)[-5000:])
    client.set_tag(entry, "area_experiment", area)
    client.set_tag(entry, NOTE_TAG, f"The steps of this entry point logged to the experiment **{area}**: "
                   + ", ".join(f"`{i}`" for i in ids[-20:]))


def experiment_url(cfg: StudyConfig, ui: str = "http://127.0.0.1:5000") -> str | None:
    """The MLflow UI's address of the area's runs (None before the experiment exists). MLflow 3.17's UI opens an
    experiment on the GenAI pages unless the address asks for model training (`workflowType=machine_learning`)."""
    import mlflow

    experiment = mlflow.MlflowClient(ensure_store()).get_experiment_by_name(cfg.area.name)
    if experiment is None:
        return None
    return f"{ui.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"


def rename_run(run_id: str, name: str) -> None:
    """Give a run its final name (e.g. `train v3`, once the registered version is known)."""
    import mlflow

    mlflow.MlflowClient().update_run(run_id, name=name)


def period_range(first, last) -> str:
    """`2019-07-01..2019-12-23`: a span of periods as run names and descriptions write it."""
    return f"{str(first)[:10]}..{str(last)[:10]}"
