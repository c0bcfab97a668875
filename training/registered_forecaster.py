"""Registering a forecaster that is not one LightGBM booster: a baseline (`ewm_hl26`, `naive_4w`, `sepp`...) or
`auto` (the selection rule, training/selection.py), as a version of the product's registered model beside the
LightGBM ones, judged by the same promotion gate.

The version is an MLflow pyfunc (`training/forecaster_model.py`, logged as code) whose artifacts are the fitted
forecaster (pickled), its spec (`model_spec.json`: name, family, parameters, training window; for `auto` what it
chose and the validation scores) and the forecast it made of the period after its training data. Tags: `model` (the
name `hotspot backtest --model` takes), `model_family` (`baseline` or `auto`), data fingerprint, training window.
"""

from __future__ import annotations

import copy
import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.config import StudyConfig
from hotspot.features.panel import Panel
from hotspot.models import Forecaster

SPEC_ARTIFACT = "model_spec.json"  # the same name as training/registry.py's (which imports this module)

FORECASTER_MODEL_CODE = Path(__file__).with_name("forecaster_model.py")
PICKLE_FILE = "forecaster.pkl"
NEXT_PERIOD_FILE = "next_period.csv"


def _family(model: Forecaster) -> str:
    from hotspot.training.backtest import model_family

    return model_family(model)


def _portable(model: Forecaster) -> Forecaster:
    """A shallow copy without what only a backtest reuses (auto's score cache holds the whole panel's counts)."""
    kept = copy.copy(model)
    kept.__dict__.pop("score_cache_", None)
    return kept


def _param_value(value):
    if isinstance(value, Forecaster):
        return value.name
    if isinstance(value, list | tuple):
        return [_param_value(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def forecaster_spec(cfg: StudyConfig, model: Forecaster, panel: Panel, fingerprint: str | None,
                    params_source: str) -> dict:
    """What a registered baseline or auto version is: name, family, class, parameters, training window, label."""
    spec = {"model": model.name, "model_family": _family(model), "class": type(model).__name__,
            "params": {k: _param_value(v) for k, v in model.get_params(deep=False).items()},
            "train_first_period": str(panel.period_starts[0].date()),
            "train_last_period": str(panel.period_starts[-1].date()),
            "forecast_period": str(panel.next_period_start.date()),
            "target_offenses": cfg.model.target_offenses, "data_fingerprint": fingerprint,
            "params_source": params_source}
    summary = getattr(model, "fit_summary_", None)
    if summary is not None:
        spec["selection"] = summary
    return spec


def describe_forecaster(cfg: StudyConfig, model: Forecaster, panel: Panel, spec: dict, period_word: str) -> str:
    """How a baseline or auto version was fitted and what it is, in words (its registry description)."""
    from hotspot.training.tracking import code_version, period_range

    def metric_words(metric: str) -> str:
        return "Poisson deviance" if metric == "poisson_deviance" else metric.upper()

    doc = (type(model).__doc__ or "").strip().splitlines()[0] if type(model).__doc__ else ""
    targets = ", ".join(cfg.model.target_offenses) if cfg.model.target_offenses else "all offences"
    span = period_range(spec["train_first_period"], spec["train_last_period"])
    window = (f"fitted on the {panel.n_periods} {period_word} {span} ({panel.grid.n_cells:,} cells of "
              f"{panel.grid.cell_size_m:g} m; label: "
              f"{targets}), data fingerprint `{spec['data_fingerprint'] or 'unknown'}`, code `{code_version()}`")
    sel = spec.get("selection")
    if sel:
        names = ", ".join(spec["params"].get("candidates") or [])
        scores = ", ".join(f"{n} {v:.3f}" for n, v in sel["scores"].items() if np.isfinite(v))
        weeks = sel["validation_weeks"]
        what = (f"`auto`, the selection rule: it chooses among {names} the candidate with the best mean "
                f"{metric_words(sel['metric'])} over the {len(weeks)} {period_word} before its fit (rolling "
                f"origin, each week forecast by a candidate fitted only on earlier weeks), {window}. It chose "
                f"**{sel['chosen']}** (validation {period_range(weeks[0], weeks[-1])}: {scores}) and forecasts with "
                f"{sel['chosen']} fitted on every week; a backtest of this version (the promotion gate) chooses "
                "again at each refit.")
    else:
        params = ", ".join(f"{k}={v}" for k, v in spec["params"].items()) or "no parameters"
        what = f"Baseline `{model.name}`: {doc.rstrip('.')} ({type(model).__name__}, {params}), {window}."
    return (what + "\n\nReturns expected incidents per cell: `mlflow.pyfunc.load_model(...).predict(panel)` (a "
            "hotspot Panel; the hotspot package installed) forecasts the panel's next period; `.predict(pandas."
            "DataFrame({'cell_id': [...]}))` returns the forecast it made of " + spec["forecast_period"] + ".")


def log_forecaster_model(cfg: StudyConfig, model: Forecaster, panel: Panel, spec: dict, name: str) -> str:
    """Log a fitted baseline or auto forecaster as a pyfunc (pickle, spec and next-period forecast as artifacts)
    to the active run and register it under `name`; returns the new version (training/registry.py's
    log_and_register tags, describes and names it)."""
    import mlflow

    from hotspot.training.tracking import quiet_console

    mlflow.log_dict(spec, SPEC_ARTIFACT)
    risk = np.asarray(model.predict(panel), dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="hotspot-model-") as folder:
        pickle_path, spec_path = Path(folder) / PICKLE_FILE, Path(folder) / SPEC_ARTIFACT
        next_path = Path(folder) / NEXT_PERIOD_FILE
        pickle_path.write_bytes(pickle.dumps(_portable(model)))
        spec_path.write_text(json.dumps(spec, indent=2))
        pd.DataFrame({"cell_id": panel.grid.cell_id, "risk": risk}).to_csv(next_path, index=False)
        with quiet_console():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(FORECASTER_MODEL_CODE),
                artifacts={"forecaster": str(pickle_path), "model_spec": str(spec_path),
                           "next_period": str(next_path)},
                registered_model_name=name,
                pip_requirements=[f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}",
                                  f"pandas=={pd.__version__}"])
    return str(info.registered_model_version)


def version_tags(spec: dict) -> dict[str, str]:
    """The registry tags of a baseline or auto version: data fingerprint, model, family, training window."""
    tags = {"data_fingerprint": spec["data_fingerprint"] or "", "model": spec["model"],
            "model_family": spec["model_family"], "params_source": spec["params_source"],
            "train_last_period": spec["train_last_period"]}
    if spec.get("selection"):
        tags["auto_chose"] = spec["selection"]["chosen"]
    return tags


def load_pickled(name: str, version: str) -> Forecaster:
    """The fitted forecaster a baseline or auto version was registered with (from its model's artifacts)."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="hotspot-model-") as folder:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                         dst_path=folder))
        with open(local / "artifacts" / PICKLE_FILE, "rb") as f:
            return pickle.load(f)  # noqa: S301 - the registry's own artifact
