"""The MLflow model registry: registering trained LightGBM forecasters, the `champion` alias and its history.

Each registered version carries, beside the booster (with signature and input example), `model_spec.json`: the
hyper-parameters, training window, feature list and ranking calibration needed to rebuild or re-backtest it, and
tags with its data fingerprint and objective. The alias `champion` says which version serves; every move of the
alias is appended, with its reason, to the registered model's `champion_history` tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.panel import Panel
from hotspot.models import LightGBMForecaster

CHAMPION = "champion"
SPEC_ARTIFACT = "model_spec.json"
HISTORY_TAG = "champion_history"
HISTORY_KEEP = 40  # entries kept in the tag (MLflow tag values are bounded)


def registered_name(cfg: StudyConfig) -> str:
    """The MLflow registered-model name of the study area's LightGBM."""
    return f"{cfg.area.name}-lightgbm"


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


def log_and_register(cfg: StudyConfig, model: LightGBMForecaster, panel: Panel,
                     params_source: str = "config") -> ModelRef:
    """Log the fitted booster (signature, input example), its spec and feature list to the active run, and register
    it. The first registered version becomes the champion; later versions wait for `hotspot promote`."""
    import mlflow
    from mlflow.models import infer_signature

    example = panel.feature_frame(panel.n_periods)[list(model.feature_names_)].head(5)
    signature = infer_signature(example, model.booster_.predict(example.to_numpy()))
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
    info = mlflow.lightgbm.log_model(model.booster_, name="model", signature=signature, input_example=example,
                                     registered_model_name=name)
    client = registry_client()
    version = str(info.registered_model_version)
    tags = {"data_fingerprint": fingerprint or "", "objective": model.objective, "params_source": params_source,
            "train_last_period": spec["train_last_period"], "n_features": str(len(model.feature_names_))}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    ref = ModelRef(name, version, run.info.run_id if run else None, fingerprint)
    if champion_version(cfg) is None:
        set_champion(cfg, version, "first registered version (there was no champion)")
    return ref


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
        client.set_model_version_tag(name, str(version), "champion_reason", reason[:4000])


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


def version_forecaster(cfg: StudyConfig, version: str | None = None) -> tuple[LightGBMForecaster, ModelRef]:
    """An unfitted forecaster with the hyper-parameters and features a registered version (the champion when None)
    was trained with, e.g. to backtest it or audit it on other weeks."""
    spec, ref = version_spec(cfg, version)
    if not spec:
        raise HotspotError(f"{ref.label} was registered without {SPEC_ARTIFACT}; retrain it with `hotspot train`")
    return LightGBMForecaster.from_spec(spec, name=f"lightgbm_v{ref.version}"), ref


def load_version(cfg: StudyConfig, version: str | None = None) -> tuple[LightGBMForecaster, ModelRef]:
    """The fitted forecaster of a registered version (the champion when None)."""
    import mlflow

    spec, ref = version_spec(cfg, version)
    booster = mlflow.lightgbm.load_model(f"models:/{ref.name}/{ref.version}")
    return LightGBMForecaster.from_booster(booster, spec or None, spec.get("calibration")), ref


def load_champion(cfg: StudyConfig) -> tuple[LightGBMForecaster, ModelRef]:
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
