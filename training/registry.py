"""The MLflow model registry: registering trained LightGBM forecasters and finding the champion."""

from __future__ import annotations

from dataclasses import dataclass

from features.config import StudyConfig
from features.errors import HotspotError
from features.panel import Panel
from models import LightGBMForecaster

CHAMPION = "champion"


def registered_name(cfg: StudyConfig) -> str:
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


def log_and_register(cfg: StudyConfig, model: LightGBMForecaster, panel: Panel) -> ModelRef:
    """Log the fitted booster with its signature and input example to the active run and register it.

    The first registered version becomes the champion; later versions wait for `hotspot promote`.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    example = panel.feature_frame(panel.n_periods).head(5)
    signature = infer_signature(example, model.booster_.predict(example.to_numpy()))
    name = registered_name(cfg)
    info = mlflow.lightgbm.log_model(model.booster_, name="model", signature=signature, input_example=example,
                                     registered_model_name=name)
    client = MlflowClient()
    version = str(info.registered_model_version)
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        client.set_registered_model_alias(name, CHAMPION, version)
    run = mlflow.active_run()
    return ModelRef(name, version, run.info.run_id if run else None, run.data.tags.get("data_fingerprint") if run else None)


def load_champion(cfg: StudyConfig) -> tuple[LightGBMForecaster, ModelRef]:
    """Load the model version that holds the `champion` alias; a clear error when there is none."""
    import mlflow
    from mlflow import MlflowClient

    from training.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    name = registered_name(cfg)
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        raise HotspotError(
            f"no champion model '{name}' in the registry at {tracking_uri()}; run `hotspot train --config "
            f"{cfg.source_path}` first"
        ) from None
    booster = mlflow.lightgbm.load_model(f"models:/{name}@{CHAMPION}")
    fingerprint = client.get_run(mv.run_id).data.tags.get("data_fingerprint") if mv.run_id else None
    return LightGBMForecaster.from_booster(booster), ModelRef(name, str(mv.version), mv.run_id, fingerprint)

