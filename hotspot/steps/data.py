"""Data steps: validate, ingest (several sources, appends to the stored history) and the feature table."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hotspot.features import safe_csv
from hotspot.features.config import StudyConfig
from hotspot.features.errors import RejectedInput
from hotspot.features.ingest import ValidatedIncidents, validate, write_quarantine
from hotspot.features.locking import replace_atomically
from hotspot.features.panel import write_panel
from hotspot.steps.common import (
    Prepared,
    log_feature_table,
    prepare,
    source_metrics,
)
from hotspot.training import tracking


def refusal(exc: RejectedInput, out_dir: Path, summary_name: str, extra: dict | None = None) -> RejectedInput:
    """Write the quarantine and a summary of a refused run (nothing accepted, nothing stored); return the error
    to raise, its message pointing at both files."""
    from hotspot.features.ingest import ALL_REASONS

    quarantine = exc.quarantine
    counts = quarantine["reason"].value_counts() if len(quarantine) else {}
    by_source = {}
    for name, n_read in exc.read_by_source.items():
        q = quarantine.loc[quarantine["source"] == name, "reason"].value_counts() if len(quarantine) else {}
        by_source[name] = {"read": int(n_read), "accepted": 0, "quarantined": int(sum(q.values) if len(q) else 0),
                           **{f"quarantined_{r}": int(q[r]) for r in ALL_REASONS if len(q) and q.get(r, 0)}}
    n_read = sum(exc.read_by_source.values())
    summary = {"status": "refused", "error": str(exc), **(extra or {}), "read": n_read, "accepted": 0,
               "quarantined": len(quarantine),
               # rows of other sources that passed their own checks but are not used while the run is refused
               "held_back": n_read - len(quarantine),
               "by_reason": {r: int(c) for r, c in (counts.items() if len(quarantine) else [])},
               "by_source": by_source}
    q_path = safe_csv.write_csv(quarantine, out_dir / "quarantine.csv")
    text = json.dumps(summary, indent=2)
    s_path = replace_atomically(out_dir / summary_name, lambda tmp: tmp.write_text(text))
    return RejectedInput(f"{exc}\nquarantined rows with their reason: {q_path}\nsummary: {s_path}",
                         quarantine, exc.read_by_source)


def validate_step(cfg: StudyConfig, out_dir: Path) -> tuple[ValidatedIncidents, Path]:
    """Validate the incidents, write the quarantine file and log counts per reason to MLflow."""
    start = time.perf_counter()
    try:
        result = validate(cfg)
    except RejectedInput as exc:
        raise refusal(exc, out_dir, "validation.json") from None
    path = write_quarantine(result, out_dir)
    counts = result.reason_counts()
    summary = {"read": result.n_read, "accepted": len(result.accepted), "quarantined": len(result.quarantine),
               "by_reason": counts, "cells": result.grid.n_cells, "area_km2": round(result.area.area_km2, 2),
               "area_origin": result.area.origin, "crs": result.grid.crs.to_string(),
               "seconds": round(time.perf_counter() - start, 2)}
    summary["by_source"] = result.source_counts()
    if result.history is not None:
        summary["history"] = str(result.history)
    text = json.dumps(summary, indent=2)
    replace_atomically(out_dir / "validation.json", lambda tmp: tmp.write_text(text))
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
    from hotspot.features import history

    start = time.perf_counter()
    try:
        report = history.append(cfg, append, source) if append is not None else history.build(cfg)
    except RejectedInput as exc:  # nothing was stored; say what was read and why none of it passed
        raise refusal(exc, out_dir, "ingest.json", {"mode": "append" if append is not None else "build",
                                                     "file": str(append) if append is not None else None}) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    q_path = safe_csv.write_csv(report.quarantine, out_dir / "quarantine.csv")
    summary = {"mode": "append" if append is not None else "build",
               "file": str(append) if append is not None else None, **report.as_dict(),
               "seconds": round(time.perf_counter() - start, 2)}
    text = json.dumps(summary, indent=2)
    replace_atomically(out_dir / "ingest.json", lambda tmp: tmp.write_text(text))
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
    """Build the panel and its features, write the panel and its schema, log them to MLflow; return them and paths."""
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
