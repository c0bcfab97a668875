"""What every step shares: the validated incidents and panel (`prepare`), config overrides, feature tables."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from features.config import StudyConfig
from features.ingest import REASONS, ValidatedIncidents, validate
from features.panel import Panel, build_panel

console = Console(stderr=True)


@dataclass
class Prepared:
    incidents: ValidatedIncidents
    panel: Panel
    seconds: dict[str, float]


def prepare(cfg: StudyConfig, quiet: bool = False, incidents: ValidatedIncidents | None = None) -> Prepared:
    """Validate the inputs (unless already validated) and build the panel (the shared first half of every step)."""
    timings = {}
    if incidents is None:
        with console.status("reading and validating incidents", spinner="dots") if not quiet else nullcontext():
            start = time.perf_counter()
            incidents = validate(cfg)
            timings["validate_s"] = time.perf_counter() - start
    with console.status(f"building the panel ({incidents.grid.n_cells:,} cells)", spinner="dots") if not quiet else nullcontext():
        start = time.perf_counter()
        panel = build_panel(cfg, incidents.accepted, incidents.grid)
        timings["panel_s"] = time.perf_counter() - start
    return Prepared(incidents, panel, timings)


def with_overrides(cfg: StudyConfig, without: list[str] | None = None, targets: list[str] | None = None) -> StudyConfig:
    """A copy of the config with feature families switched off and/or another target offence set."""
    from features.config import FeaturesConfig, ModelConfig

    features, model = cfg.features, cfg.model
    if without:
        features = FeaturesConfig.model_validate({**features.model_dump(), "exclude": [*features.exclude, *without]})
    if targets:
        model = ModelConfig.model_validate({**model.model_dump(), "target_offenses": targets})
    return type(cfg).model_validate({**cfg.model_dump(), "features": features, "model": model},
                                    context={"base_dir": Path("/")}).model_copy(
        update={"source_path": cfg.source_path, "source_sha256": cfg.source_sha256})


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
    from features.ingest import ALL_REASONS  # REASONS plus the multi-source reasons

    return [(reason, count, REASONS.get(reason) or ALL_REASONS[reason])
            for reason, count in result.reason_counts().items() if count]


def source_metrics(by_source: dict[str, dict[str, int]]) -> dict[str, float]:
    """MLflow metrics `source.<name>.<count>` (names made safe for MLflow keys)."""
    import re

    return {re.sub(r"[^A-Za-z0-9_.\-/]", "_", f"source.{name}.{k}"): float(v)
            for name, counts in by_source.items() for k, v in counts.items()}
