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
    MLflow re-enables its own stream while it logs a model, so switching the stream off (quiet_mlflow) is not
    enough there."""
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
    tags = {"step": step, "area": cfg.area.name, "data_fingerprint": data_fingerprint,
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


def _dataset_source(path: Path | str):
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # several local sources claim file URIs; MLflow picks the first and says so
        warnings.simplefilter("ignore")
        return resolve_dataset_source(Path(path).resolve().as_uri())


def _schema(columns: dict[str, str]):
    from mlflow.types import ColSpec, Schema

    return Schema([ColSpec(kind, name) for name, kind in columns.items()])


def _column_kind(dtype) -> str:
    kind = getattr(dtype, "kind", "O")
    return {"M": "datetime", "f": "double", "b": "boolean"}.get(kind, "long" if kind in "iu" else "string")


def log_inputs(cfg: StudyConfig, incidents, panel, context: str = "training") -> None:
    """Log the validated incidents (fingerprint as digest, source, row counts; not the rows) and the cell x period
    panel (shape, feature names) as MLflow datasets of the active run, so the UI's dataset column names them."""
    import hashlib
    import json

    import mlflow

    sources = [s.path for s in cfg.sources]
    accepted = incidents.accepted
    when = accepted["occurred_at"] if "occurred_at" in accepted and len(accepted) else None
    incidents_ds = profiled_dataset(
        source=_dataset_source(incidents.history or sources[0]), name=f"{cfg.area.name} incidents",
        digest=incidents.fingerprint,
        schema=_schema({c: _column_kind(accepted[c].dtype) for c in accepted.columns}),
        profile={"rows_read": int(incidents.n_read), "rows_accepted": int(len(accepted)),
                 "rows_quarantined": int(len(incidents.quarantine)),
                 "first_incident": str(when.min())[:19] if when is not None else None,
                 "last_incident": str(when.max())[:19] if when is not None else None,
                 "sources": [str(s) for s in sources]})
    T1, C, F = panel.X.shape
    shape = {"periods_observed": int(panel.n_periods), "cells": int(C), "features": int(F),
             "rows": int(panel.n_periods * C), "first_period": str(panel.period_starts[0].date()),
             "last_period": str(panel.period_starts[panel.n_periods - 1].date()), "label": panel.target_noun}
    digest = hashlib.sha256(json.dumps([incidents.fingerprint, cfg.source_sha256, list(panel.feature_names), shape],
                                       default=str).encode()).hexdigest()[:16]
    panel_ds = profiled_dataset(source=_dataset_source(cfg.source_path or sources[0]), name=f"{cfg.area.name} panel",
                               digest=digest, schema=_schema(dict.fromkeys(panel.feature_names, "double")),
                               profile=shape)
    mlflow.log_input(incidents_ds, context=context)
    mlflow.log_input(panel_ds, context=context)


@lru_cache(maxsize=1)
def _profiled_dataset_class():
    from mlflow.data.meta_dataset import MetaDataset

    class _ProfiledDataset(MetaDataset):
        """A dataset logged by its metadata (source, digest, schema) and a profile of counts, never its rows."""

        def __init__(self, source, name: str, digest: str, schema, profile: dict):
            self._profile = profile
            super().__init__(source=source, name=name, digest=digest, schema=schema)

        @property
        def profile(self):
            return self._profile

        def to_dict(self) -> dict[str, str]:
            import json

            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return _ProfiledDataset


def profiled_dataset(**kwargs):
    """A metadata-only MLflow dataset with a profile (see `log_inputs`); its class is made on first use, so
    importing this module does not import MLflow."""
    return _profiled_dataset_class()(**kwargs)
