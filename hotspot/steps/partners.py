"""Steps for partners and the public: trends, intervention evaluation and cell exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.locking import locked, write_text_atomically
from hotspot.steps.common import (
    Prepared,
    prepare,
)
from hotspot.steps.modelling import model_forecast
from hotspot.training import tracking


def trends_step(cfg: StudyConfig, out_dir: Path, public: bool | None = None, formats: list[str] | None = None,
                prepared: Prepared | None = None):
    """Counts, rates and seasonally adjusted change per offence group and area (analysis.trends); writes
    trends.json, PNG plots and the tables in `formats` (csv, gpkg, geojson); logs them to a `trends` run."""
    from hotspot.analysis.exports import export_trends
    from hotspot.analysis.trends import compute_trends, plot_trends

    prepared = prepared or prepare(cfg)
    trends = compute_trends(cfg, prepared.panel, public=public)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**trends.meta, "data_fingerprint": prepared.incidents.fingerprint, "code_version": tracking.code_version(),
            "config": str(cfg.source_path), "config_sha256": cfg.source_sha256}
    trends.meta = meta
    paths = {"json": out_dir / "trends.json"}
    with locked(paths["json"], what="writing the trends"):  # json, plots and tables from one run, each file whole
        write_text_atomically(paths["json"], json.dumps(trends.to_dict(), indent=1))
        paths.update(plot_trends(trends, out_dir))
        paths.update(export_trends(trends, out_dir, formats or ["csv"]))
    with tracking.step_run(cfg, "trends", prepared.incidents.fingerprint, run_name=f"trends ({meta['view']})"):
        import mlflow

        mlflow.set_tags({"view": meta["view"]})
        mlflow.log_params({"trends_view": meta["view"], "trends_first_week": meta["first_week"],
                           "trends_last_week": meta["last_week"]})
        for path in paths.values():
            mlflow.log_artifact(str(path), "trends")
    return trends, paths


def intervention_step(cfg: StudyConfig, cells_file: Path, start: str, end: str | None, out_dir: Path,
                      prepared: Prepared | None = None, offences: list[str] | None = None):
    """Difference-in-differences of an intervention in the cells of `cells_file` from `start` (analysis.intervention):
    estimate with its interval, placebo and displacement; writes intervention.json and .png; an `intervention` run."""
    from hotspot.analysis.intervention import evaluate_intervention, read_cells_file, write_intervention

    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    groups = offences or list(panel.groups)
    unknown = [g for g in groups if g not in panel.groups]
    if unknown:
        raise HotspotError(f"offences {unknown} are not in the data; offences: {list(panel.groups)}")
    y = panel.counts[:, :, [panel.groups.index(g) for g in groups]].sum(axis=2)
    treated = read_cells_file(cells_file, panel.grid)
    result = evaluate_intervention(y, panel.period_starts, panel.grid, treated, start, end)
    paths = write_intervention(result, out_dir)
    with tracking.step_run(cfg, "intervention", prepared.incidents.fingerprint,
                           run_name=f"intervention {result.start}"):
        import mlflow

        mlflow.log_params({"intervention_start": result.start, "intervention_end": result.end,
                           "intervention_cells": len(result.treated_cells), "intervention_offences": ",".join(groups),
                           "cells_file": str(cells_file)})
        figures = {"estimate": result.estimate, "placebo": result.placebo, "displacement": result.displacement}
        mlflow.log_metrics({f"{name}.{key}": value for name, e in figures.items() if e is not None
                            for key, value in (("effect_pct", e.effect_pct), ("effect_per_cell_week",
                                                                              e.effect_per_cell_week),
                                               ("ci95_lo", e.ci95[0]), ("ci95_hi", e.ci95[1]))
                            if np.isfinite(value)})
        for path in paths.values():
            mlflow.log_artifact(str(path), "intervention")
    return result, paths


def export_step(cfg: StudyConfig, week: str, fmt: str, out: Path, prepared: Prepared | None = None,
                pin: str | None = None):
    """Forecast one period as `hotspot forecast` does (auto, or the pinned version: 'champion' or a number) and write
    it as GeoJSON, GeoPackage or CSV for partners' GIS; an `export` run."""
    from hotspot.analysis.exports import export_forecast, parse_formats

    fmt = parse_formats(fmt)[0]
    prepared = prepared or prepare(cfg)
    cells, metadata, chosen = model_forecast(cfg, week, prepared, pin)
    metadata.update({"format": fmt, "note": metadata["note"] + " Cells only: no incident locations."})
    path = export_forecast(cells, out, fmt, metadata)
    with tracking.step_run(cfg, "export", prepared.incidents.fingerprint, run_name=f"export {fmt}"):
        import mlflow

        mlflow.log_params({"export_week": metadata["period_start"], "export_format": fmt,
                           "model": chosen.ref.name, "model_version": chosen.ref.version})
        mlflow.log_metrics({"cells": len(cells)})
        mlflow.log_artifact(str(path), "export")
    return cells, metadata, path
