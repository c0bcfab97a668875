"""Data steps: validate, ingest (several sources, appends to the stored history) and the feature table."""

from __future__ import annotations

import json
import time
from pathlib import Path

from features.config import StudyConfig
from features.ingest import ValidatedIncidents, validate, write_quarantine
from features.panel import write_panel
from hotspot.steps.common import (
    Prepared,
    log_feature_table,
    prepare,
    source_metrics,
)
from training import tracking


def validate_step(cfg: StudyConfig, out_dir: Path) -> tuple[ValidatedIncidents, Path]:
    """Validate the incidents, write the quarantine file and log counts per reason to MLflow."""
    start = time.perf_counter()
    result = validate(cfg)
    path = write_quarantine(result, out_dir)
    counts = result.reason_counts()
    summary = {"read": result.n_read, "accepted": len(result.accepted), "quarantined": len(result.quarantine),
               "by_reason": counts, "cells": result.grid.n_cells, "area_km2": round(result.area.area_km2, 2),
               "area_origin": result.area.origin, "crs": result.grid.crs.to_string(),
               "seconds": round(time.perf_counter() - start, 2)}
    summary["by_source"] = result.source_counts()
    if result.history is not None:
        summary["history"] = str(result.history)
    (out_dir / "validation.json").write_text(json.dumps(summary, indent=2))
    with tracking.step_run(cfg, "validate", result.fingerprint):
        import mlflow

        mlflow.log_metrics({"rows_read": result.n_read, "rows_accepted": len(result.accepted),
                            "rows_quarantined": len(result.quarantine), "cells": result.grid.n_cells,
                            **{f"quarantined_{k}": v for k, v in counts.items()},
                            **source_metrics(summary["by_source"])})
        mlflow.log_artifact(str(path), "validation")
        mlflow.log_artifact(str(out_dir / "validation.json"), "validation")
    return result, path


def ingest_step(cfg: StudyConfig, out_dir: Path, append: Path | None = None, source: str | None = None):
    """Build the stored incident history from every source, or append one file to it (features.history); write
    the quarantine and an ingest.json summary and log counts per source to MLflow. Returns the IngestReport."""
    from features import history

    start = time.perf_counter()
    report = history.append(cfg, append, source) if append is not None else history.build(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    q_path = out_dir / "quarantine.csv"
    tmp = q_path.with_suffix(".csv.tmp")
    report.quarantine.to_csv(tmp, index=False)
    tmp.replace(q_path)
    summary = {"mode": "append" if append is not None else "build",
               "file": str(append) if append is not None else None, **report.as_dict(),
               "seconds": round(time.perf_counter() - start, 2)}
    (out_dir / "ingest.json").write_text(json.dumps(summary, indent=2))
    with tracking.step_run(cfg, "ingest", report.fingerprint):
        import mlflow

        mlflow.log_metrics({"rows_stored": report.rows_stored, "rows_added": report.added,
                            "rows_already_stored": report.already_stored, "rows_late": report.late,
                            "rows_after_data_end": report.after_data_end, **source_metrics(report.by_source)})
        if report.late_periods:
            mlflow.set_tag("late_periods", ",".join(report.late_periods)[:5000])
        mlflow.log_artifact(str(q_path), "ingest")
        mlflow.log_artifact(str(out_dir / "ingest.json"), "ingest")
    return report, summary


def features_step(cfg: StudyConfig, out_dir: Path,
                  incidents: ValidatedIncidents | None = None) -> tuple[Prepared, Path, Path]:
    prepared = prepare(cfg, incidents=incidents)
    start = time.perf_counter()
    panel_path, schema_path = write_panel(prepared.panel, out_dir)
    prepared.seconds["write_s"] = time.perf_counter() - start
    with tracking.step_run(cfg, "features", prepared.incidents.fingerprint):
        import mlflow

        panel = prepared.panel
        mlflow.log_metrics({"cells": panel.grid.n_cells, "periods": panel.n_periods,
                            "features": len(panel.feature_names), **prepared.seconds})
        mlflow.log_artifact(str(schema_path), "features")
        log_feature_table(panel)
    return prepared, panel_path, schema_path
