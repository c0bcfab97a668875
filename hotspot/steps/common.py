"""What every step shares: the validated incidents and panel (`prepare`), config overrides, feature tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from hotspot.features.config import StudyConfig
from hotspot.features.ingest import REASONS, ValidatedIncidents
from hotspot.features.panel import Panel
from hotspot.features.prepared import Prepared
from hotspot.features.prepared import prepare as prepare_data

console = Console(stderr=True)


def prepare(cfg: StudyConfig, quiet: bool = False, incidents: ValidatedIncidents | None = None) -> Prepared:
    """Validate the inputs (unless already validated) and build the panel, with a spinner unless `quiet`."""
    return prepare_data(cfg, incidents, None if quiet else lambda message: console.status(message, spinner="dots"))


def output_root(cfg: StudyConfig) -> Path:
    """Where a product's outputs go under the working directory: outputs/AREA/PRODUCT with [[products]], else (as
    before products) outputs/AREA."""
    root = Path("outputs") / cfg.area.name
    return root / cfg.product.name if cfg.has_products else root


AREA_STEPS = ("validate", "ingest")  # steps on the area's records, before any product's label


def default_out(cfg: StudyConfig, step: str) -> Path:
    """The default output folder of a step: output_root(cfg)/STEP; outputs/AREA/STEP for the data steps, which no
    product changes."""
    return Path("outputs") / cfg.area.name / step if step in AREA_STEPS else output_root(cfg) / step


def study_subject(cfg: StudyConfig, targets: list[str]) -> str:
    """What a report is about, for its title: "AREA (offences)", or "AREA, Product title (offences)" with
    [[products]] (the offences left out when the title says the same)."""
    offences = ", ".join(targets)
    if not cfg.has_products:
        return f"{cfg.area.name} ({offences})"
    label = cfg.product.label
    return f"{cfg.area.name}, {label}" + ("" if label.lower() == offences.lower() else f" ({offences})")


def with_overrides(cfg: StudyConfig, without: list[str] | None = None, targets: list[str] | None = None) -> StudyConfig:
    """A copy of the config with feature families switched off and/or another target offence set."""
    from hotspot.features.config import FeaturesConfig, ModelConfig

    features, model = cfg.features, cfg.model
    if without:
        features = FeaturesConfig.model_validate({**features.model_dump(), "exclude": [*features.exclude, *without]})
    if targets:
        model = ModelConfig.model_validate({**model.model_dump(), "target_offenses": targets})
    return type(cfg).model_validate({**cfg.model_dump(), "features": features, "model": model},
                                    context={"base_dir": Path("/")}).model_copy(
        update={"source_path": cfg.source_path, "source_sha256": cfg.source_sha256,
                "selected_product": cfg.selected_product})


def feature_table(panel: Panel) -> pd.DataFrame:
    """Name, family, description and unit of every feature of the panel (the self-documenting feature table)."""
    return pd.DataFrame({"feature": list(panel.feature_names),
                         "family": [panel.feature_families.get(n, "") for n in panel.feature_names],
                         "description": [panel.feature_descriptions.get(n, "") for n in panel.feature_names],
                         "unit": [panel.feature_units.get(n, "") for n in panel.feature_names]})


def log_feature_table(panel: Panel) -> None:
    """Log the feature table to the active MLflow run (as a table, JSON and params per family)."""
    import mlflow

    table = feature_table(panel)
    mlflow.log_table(table, "features/feature_table.json")
    mlflow.log_dict({"families": sorted(set(table["family"])), "skipped_families": panel.skipped_families,
                     "features": table.to_dict(orient="records")}, "features/features.json")
    mlflow.log_params({"feature_families": ",".join(sorted(set(table["family"]))), "n_features": len(table)})


def reason_table(result: ValidatedIncidents) -> list[tuple[str, int, str]]:
    """Each quarantine reason with its count and its description, in the order reasons are checked."""
    from hotspot.features.ingest import ALL_REASONS  # REASONS plus the multi-source reasons

    return [(reason, count, REASONS.get(reason) or ALL_REASONS[reason])
            for reason, count in result.reason_counts().items() if count]


def source_metrics(by_source: dict[str, dict[str, int]]) -> dict[str, float]:
    """MLflow metrics `source.<name>.<count>` (names made safe for MLflow keys)."""
    import re

    return {re.sub(r"[^A-Za-z0-9_.\-/]", "_", f"source.{name}.{k}"): float(v)
            for name, counts in by_source.items() for k, v in counts.items()}
