"""The MLflow model registry: registering trained forecasters (LightGBM; baselines and auto through
training/registered_forecaster.py), the `champion` alias and its history.

Each registered version is an MLflow pyfunc (`training/risk_model.py`, logged as code) whose `predict(features)`
returns expected incidents per cell for any objective, with a signature and an input example; its artifacts are the
LightGBM booster and `model_spec.json` (hyper-parameters, training window, feature list and ranking calibration,
enough to rebuild or re-backtest it). `load_version` rebuilds the project's `LightGBMForecaster` from those
artifacts. Each version has tags (data fingerprint, objective) and a description in words: how it was trained and,
once judged, why it was or was not promoted. The alias `champion` says which version serves; every move of the alias
is appended, with its reason, to the registered model's `champion_history` tag (JSON, read by code) and its
description (readable lines).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.panel import Panel
from hotspot.models import Forecaster, LightGBMForecaster

CHAMPION = "champion"
SPEC_ARTIFACT = "model_spec.json"
HISTORY_TAG = "champion_history"
HISTORY_KEEP = 40  # entries kept in the tag (MLflow tag values are bounded)
RISK_MODEL_CODE = Path(__file__).with_name("risk_model.py")  # the pyfunc, logged as code (needs no hotspot install)
BOOSTER_FILE = "booster.txt"
OTHER_FAMILIES = ("baseline", "auto")  # registered as a pickled forecaster (training/registered_forecaster.py)
PERIOD_WORDS = {"W": "weeks", "D": "days", "M": "months", "Q": "quarters", "Y": "years", "A": "years", "h": "hours"}


def registered_name(cfg: StudyConfig) -> str:
    """The MLflow registered-model name of the config's product: AREA-PRODUCT with [[products]], else (as before
    products) AREA-lightgbm."""
    return cfg.model_key if cfg.has_products else f"{cfg.area.name}-lightgbm"


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str | None
    data_fingerprint: str | None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def registry_client():
    """An MLflow client on the project's tracking store (created and migrated when needed)."""
    import mlflow
    from mlflow import MlflowClient

    from hotspot.training.tracking import ensure_store

    mlflow.set_tracking_uri(ensure_store())
    return MlflowClient()


def period_word(cfg: StudyConfig) -> str:
    """The plural noun of the area's period (`weeks` for W-MON)."""
    freq = cfg.period.freq.lstrip("0123456789")
    return PERIOD_WORDS.get(freq[:1], PERIOD_WORDS.get(freq[:2], "periods"))


def training_description(cfg: StudyConfig, model: LightGBMForecaster, panel: Panel, params_source: str,
                         fingerprint: str | None) -> str:
    """How a version was trained, in words (the first paragraph of its registry description)."""
    from hotspot.training.tracking import code_version, period_range

    start, end = model.training_window(panel)
    first, last = model.train_periods_
    if model.is_ranker:
        a, b = model.calibration_ or (float("nan"), float("nan"))
        objective = (f"{model.objective} objective (ranks the cells of each period; scores mapped to expected "
                     f"incidents by log E[count] = {a:.3f} + {b:.3f} x score, fitted on the training rows)")
    else:
        objective = f"{model.objective.capitalize()} objective (predicts expected incidents directly)"
    source = (f"the tuned Optuna study `{params_source.removeprefix('study:')}`" if params_source.startswith("study:")
              else f"the config (`{cfg.source_path.name if cfg.source_path else 'config'}`)")
    targets = ", ".join(cfg.model.target_offenses) if cfg.model.target_offenses else "all offences"
    return (f"LightGBM, {objective}, trained on {end - start} {period_word(cfg)} {period_range(first, last)} "
            f"({panel.grid.n_cells:,} cells of {panel.grid.cell_size_m:g} m; label: {targets}), parameters from "
            f"{source}, {model.num_boost_round} boosting rounds, {len(model.feature_names_)} features, data "
            f"fingerprint `{fingerprint or 'unknown'}`, code `{code_version()}`.\n\n"
            "Returns expected incidents per cell for the next period: `mlflow.pyfunc.load_model(...).predict("
            "features)`, one row per cell, the columns of the signature.")


def log_and_register(cfg: StudyConfig, model, panel: Panel,
                     params_source: str = "config") -> ModelRef:
    """Log the fitted forecaster as a pyfunc that returns risk (booster and spec as artifacts, signature, input
    example) to the active run, register it with a description in words and name the run `train vN`. The first
    registered version becomes the champion; later versions wait for `hotspot promote`. A forecaster other than
    LightGBM (a baseline, `auto`) is registered by training/registered_forecaster.py."""
    if not isinstance(model, LightGBMForecaster):
        return _log_and_register_other(cfg, model, panel, params_source)
    import lightgbm
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    from hotspot.training.tracking import quiet_console

    # doubles: a float32 column upcasts safely to a double one, while float64 input would fail a float signature
    example = panel.feature_frame(panel.n_periods)[list(model.feature_names_)].head(5).astype("float64")
    signature = ModelSignature(inputs=infer_signature(example).inputs, outputs=Schema([ColSpec("double", "risk")]))
    name = registered_name(cfg)
    run = mlflow.active_run()
    fingerprint = run.data.tags.get("data_fingerprint") if run else None
    first, last = model.train_periods_
    spec = {**model.spec(), "objective": model.objective, "calibration": model.calibration_,
            "train_first_period": str(first.date()), "train_last_period": str(last.date()),
            "target_offenses": cfg.model.target_offenses, "data_fingerprint": fingerprint,
            "params_source": params_source}
    mlflow.log_dict(spec, SPEC_ARTIFACT)
    mlflow.log_dict({"features": list(model.feature_names_)}, "features/model_features.json")
    with tempfile.TemporaryDirectory(prefix="hotspot-model-") as folder:
        booster_path, spec_path = Path(folder) / BOOSTER_FILE, Path(folder) / SPEC_ARTIFACT
        model.booster_.save_model(str(booster_path))
        spec_path.write_text(json.dumps(spec, indent=2))
        with quiet_console():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(RISK_MODEL_CODE),
                artifacts={"booster": str(booster_path), "model_spec": str(spec_path)},
                signature=signature, input_example=example, registered_model_name=name,
                pip_requirements=[f"mlflow=={mlflow.__version__}", f"lightgbm=={lightgbm.__version__}",
                                  f"numpy=={np.__version__}", f"pandas=={pd.__version__}"])
    tags = {"data_fingerprint": fingerprint or "", "objective": model.objective, "params_source": params_source,
            "train_last_period": spec["train_last_period"], "n_features": str(len(model.feature_names_)),
            "model": model.name, "model_family": "lightgbm"}
    description = training_description(cfg, model, panel, params_source, fingerprint)
    return finish_registration(cfg, str(info.registered_model_version), tags, description)


def _log_and_register_other(cfg: StudyConfig, model: Forecaster, panel: Panel, params_source: str) -> ModelRef:
    """A baseline or auto version: pickled forecaster pyfunc, spec, tags naming its kind, description in words."""
    import mlflow

    from hotspot.training import registered_forecaster as other

    run = mlflow.active_run()
    fingerprint = run.data.tags.get("data_fingerprint") if run else None
    spec = other.forecaster_spec(cfg, model, panel, fingerprint, params_source)
    version = other.log_forecaster_model(cfg, model, panel, spec, registered_name(cfg))
    description = other.describe_forecaster(cfg, model, panel, spec, period_word(cfg))
    return finish_registration(cfg, version, other.version_tags(spec), description)


def finish_registration(cfg: StudyConfig, version: str, tags: dict[str, str], description: str) -> ModelRef:
    """Tag and describe a version just registered from the active run, name the run `train vN` and make the
    version the champion when there is none."""
    import mlflow

    from hotspot.training.tracking import NOTE_TAG, rename_run

    client = registry_client()
    name = registered_name(cfg)
    run = mlflow.active_run()
    fingerprint = tags.get("data_fingerprint") or None
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=description)
    ref = ModelRef(name, version, run.info.run_id if run else None, fingerprint)
    if run:
        rename_run(run.info.run_id, f"train v{version}")
        mlflow.set_tags({"model_version": version, NOTE_TAG: f"Registered as `{name}` v{version}.\n\n{description}"})
    if champion_version(cfg) is None:
        set_champion(cfg, version, "first registered version (there was no champion)")
    return ref


def append_to_description(cfg: StudyConfig, version: str, paragraph: str) -> None:
    """Add a paragraph to a registered version's description (e.g. the promotion gate's decision in words)."""
    client = registry_client()
    name = registered_name(cfg)
    current = client.get_model_version(name, str(version)).description or ""
    client.update_model_version(name, str(version), description=(current + "\n\n" + paragraph).strip())


def champion_version(cfg: StudyConfig) -> str | None:
    """The version holding the champion alias, or None."""
    import mlflow

    try:
        return str(registry_client().get_model_version_by_alias(registered_name(cfg), CHAMPION).version)
    except mlflow.exceptions.MlflowException:
        return None


def champion_history(cfg: StudyConfig) -> list[dict]:
    """Every move of the champion alias, oldest first: version, when, why."""
    import mlflow

    try:
        tags = registry_client().get_registered_model(registered_name(cfg)).tags
    except mlflow.exceptions.MlflowException:
        return []
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def set_champion(cfg: StudyConfig, version: str, reason: str, rollback: bool = False) -> None:
    """Point the champion alias at `version` and append the move and its reason to the history; under the store's
    lock, so two moves at once (a promotion and a rollback) each land in the history."""
    from hotspot.training.tracking import store_lock

    client = registry_client()
    name = registered_name(cfg)
    with store_lock("moving the champion alias"):
        previous = champion_version(cfg)
        client.set_registered_model_alias(name, CHAMPION, str(version))
        entry = {"version": str(version), "previous": previous, "reason": reason, "rollback": rollback,
                 "at": datetime.now(UTC).isoformat(timespec="seconds")}
        history = (champion_history(cfg) + [entry])[-HISTORY_KEEP:]
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        client.update_registered_model(name, description=model_description(cfg, history))
        client.set_model_version_tag(name, str(version), "champion_reason", reason[:4000])


def model_description(cfg: StudyConfig, history: list[dict]) -> str:
    """The registered model's description: what it is and the champion history as readable lines, newest first."""
    lines = [f"Forecasters of **{cfg.area.name}** ({cfg.product.label}), LightGBM or a baseline or `auto` (the tag "
             "`model` says which): each version returns expected incidents per cell for the "
             "next period (`mlflow.pyfunc.load_model(\"models:/" + registered_name(cfg) + "@champion\").predict("
             "features)`). The alias `champion` marks the version that serves; a new version takes it only through "
             "the promotion gate (`hotspot promote`).", "", "**Champion history** (newest first):", ""]
    for h in reversed(history):
        when = h.get("at", "")[:16].replace("T", " ")
        move = (f"v{h['version']} champion again (rolled back from v{h['previous']})" if h.get("rollback")
                else f"v{h['version']} became champion" + (f" (was v{h['previous']})" if h.get("previous") else ""))
        lines.append(f"- {when} UTC: {move}: {h.get('reason', '')}")
    return "\n".join(lines)


def _version(cfg: StudyConfig, version: str | None):
    import mlflow

    client = registry_client()
    name = registered_name(cfg)
    try:
        if version is None:
            return client.get_model_version_by_alias(name, CHAMPION)
        return client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        from hotspot.training.tracking import tracking_uri

        what = "no champion model" if version is None else f"no version {version} of the model"
        raise HotspotError(f"{what} '{name}' in the registry at {tracking_uri()}; run `hotspot train --config "
                           f"{cfg.source_path}` first") from None


def version_spec(cfg: StudyConfig, version: str | None = None) -> tuple[dict, ModelRef]:
    """The spec logged with a registered version (the champion when None) and its reference."""
    import mlflow

    mv = _version(cfg, version)
    try:
        spec = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{SPEC_ARTIFACT}")
    except Exception:  # versions registered before specs were logged: rebuild from the booster's features
        spec = {}
    fingerprint = (mv.tags or {}).get("data_fingerprint") or spec.get("data_fingerprint")
    return spec, ModelRef(mv.name, str(mv.version), mv.run_id, fingerprint)


def version_forecaster(cfg: StudyConfig, version: str | None = None) -> tuple[Forecaster, ModelRef]:
    """An unfitted forecaster with the hyper-parameters and features a registered version (the champion when None)
    was trained with, e.g. to backtest it or audit it on other weeks (a baseline's or auto's: its pickled forecaster,
    cloned unfitted, named MODEL_vN)."""
    spec, ref = version_spec(cfg, version)
    if not spec:
        raise HotspotError(f"{ref.label} was registered without {SPEC_ARTIFACT}; retrain it with `hotspot train`")
    if spec.get("model_family") in OTHER_FAMILIES:
        from hotspot.training.registered_forecaster import load_pickled
        from hotspot.training.selection import named_clone

        fitted = load_pickled(ref.name, ref.version)
        fitted.name = f"{spec.get('model', fitted.name)}_v{ref.version}"
        return named_clone(fitted), ref
    return LightGBMForecaster.from_spec(spec, name=f"lightgbm_v{ref.version}"), ref


def load_version(cfg: StudyConfig, version: str | None = None) -> tuple[Forecaster, ModelRef]:
    """The fitted forecaster of a registered version (the champion when None), rebuilt from the booster and spec
    kept with the registered pyfunc (or from a plain LightGBM model, as versions were once registered); a baseline's
    or auto's is its pickled fitted forecaster."""
    import lightgbm
    import mlflow

    spec, ref = version_spec(cfg, version)
    if spec.get("model_family") in OTHER_FAMILIES:
        from hotspot.training.registered_forecaster import load_pickled

        return load_pickled(ref.name, ref.version), ref
    with tempfile.TemporaryDirectory(prefix="hotspot-model-") as folder:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{ref.name}/{ref.version}",
                                                         dst_path=folder))
        booster_file = local / "artifacts" / BOOSTER_FILE
        if booster_file.exists():
            booster = lightgbm.Booster(model_file=str(booster_file))
        else:
            booster = mlflow.lightgbm.load_model(str(local))
    return LightGBMForecaster.from_booster(booster, spec or None, spec.get("calibration")), ref


def load_champion(cfg: StudyConfig) -> tuple[Forecaster, ModelRef]:
    """Load the model version that holds the `champion` alias; a clear error when there is none."""
    return load_version(cfg, None)


def list_versions(cfg: StudyConfig) -> list[dict]:
    """Every registered version, newest first: version, run, tags, whether it is the champion."""
    import mlflow

    client = registry_client()
    name = registered_name(cfg)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return []
    champion = champion_version(cfg)
    rows = [{"version": str(v.version), "run_id": v.run_id, "created": v.creation_timestamp,
             "champion": str(v.version) == champion, "tags": dict(v.tags or {})} for v in versions]
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)
