"""The fairness audit step: group exposure, accuracy and feedback-loop simulation, logged to MLflow."""

from __future__ import annotations

import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hotspot.features.config import FairnessConfig, StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.locking import locked
from hotspot.steps.common import (
    Prepared,
    console,
    default_out,
    prepare,
)
from hotspot.training import tracking
from hotspot.training.backtest import (
    forecast_periods,
    make_models,
    run_backtest,
)


def audit_step(cfg: StudyConfig, model_version: str | None = None, weeks: int | None = None, end: str | None = None,
               out_dir: Path | None = None, baselines: list[str] | None = None, refit_every: int | None = None,
               prepared: Prepared | None = None, simulation: dict | None = None,
               bootstrap_reps: int | None = None) -> tuple[dict, dict[str, Path]]:
    """Fairness audit of a registered version (the champion when None) beside the count baselines on the same
    backtest weeks; writes audit.json, audit.html and PNGs, with the audit's predictions.parquet and cell_groups.csv
    (enough to recompute every group figure), and logs them to the version's run and an audit run.
    Groups: the config's demographic areas, else (no [fairness] or groups_from = 'places') the cells' place names.
    `simulation` and `bootstrap_reps` override the config's feedback-simulation settings and bootstrap size."""
    from hotspot.training.audit.fairness import audit_demography, read_areas
    from hotspot.training.audit.report import clean, write_audit, write_audit_data
    from hotspot.training.audit.run import build_audit
    from hotspot.training.registry import registry_client, version_forecaster, version_spec

    fairness = cfg.fairness or FairnessConfig()  # no [fairness]: groups from the cells' place names
    if fairness.groups_from == "areas":
        read_areas(fairness)  # fail on a missing file or column before the long work
    elif cfg.places.areas is None and not any(s.place for s in cfg.sources):
        raise HotspotError(f"{cfg.source_path}: the fairness audit has no groups: the config has no demographic "
                           "areas ([fairness] areas, population, groups) and no place names ([places] areas or "
                           "incidents.place) to group the cells by")
    if simulation or bootstrap_reps:
        fairness = FairnessConfig.model_validate(
            {**fairness.model_dump(), "simulation": {**fairness.simulation.model_dump(), **(simulation or {})},
             "bootstrap_reps": bootstrap_reps or fairness.bootstrap_reps}, context={"base_dir": Path("/")})
    forecaster, ref = version_forecaster(cfg, model_version)
    spec, _ = version_spec(cfg, ref.version)
    start = time.perf_counter()
    prepared = prepared or prepare(cfg)
    panel = prepared.panel
    try:
        demography = audit_demography(fairness, panel.grid, prepared.places)
    except HotspotError as exc:
        raise HotspotError(f"{cfg.source_path}: {exc}") from None
    periods = forecast_periods(panel, weeks or cfg.backtest.weeks, end)
    bc = cfg.backtest
    names = baselines
    if names is None:  # the count baselines
        names = [*(f"naive_{w}w" for w in bc.naive_weeks), f"ewm_hl{bc.ewm_halflife:g}"]
    models = [forecaster, *make_models(cfg, names)]
    refit = refit_every or bc.refit_every
    seconds = {"prepare_s": time.perf_counter() - start}
    start = time.perf_counter()
    with Progress(TextColumn("[bold]audit backtest[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        tasks = {m.name: progress.add_task(m.name, total=len(periods)) for m in models}
        result = run_backtest(panel, models, periods, refit, [fairness.coverage],
                              on_step=lambda name, done: progress.update(tasks[name], completed=done))
    seconds["backtest_s"] = time.perf_counter() - start
    start = time.perf_counter()
    provenance = {"model_data_fingerprint": ref.data_fingerprint, "data_fingerprint": prepared.incidents.fingerprint,
                  "code_version": tracking.code_version(), "config": str(cfg.source_path),
                  "config_sha256": cfg.source_sha256}
    with console.status("auditing: groups, simulation, trade-off", spinner="dots"):
        audit = build_audit(cfg, panel, result.predictions, demography, ref, spec, provenance, fairness)
    seconds["audit_s"] = time.perf_counter() - start
    audit.update(seconds=seconds, refit_every=refit)
    out_dir = out_dir or default_out(cfg, "audit")
    with locked(out_dir / "audit.json", what="writing the audit"):  # written and logged as one set
        paths = write_audit(audit, out_dir)
        paths.update(write_audit_data(result.predictions, demography.cell_table(panel.grid.cell_id), out_dir))
        metrics = audit_metrics(clean(audit))
        client = registry_client()
        if ref.run_id:
            client.log_batch(ref.run_id, metrics=[_metric(k, v) for k, v in metrics.items()])
            for path in paths.values():
                client.log_artifact(ref.run_id, str(path), "audit")
        with tracking.step_run(cfg, "audit", prepared.incidents.fingerprint, run_name=f"audit v{ref.version}"):
            import mlflow

            mlflow.set_tags({"model_version": ref.version, "model_name": ref.name, "model_run_id": ref.run_id or ""})
            mlflow.log_params({"audit_models": ",".join(m.name for m in models), "audit_weeks": len(periods),
                               "audit_first_week": audit["weeks"][0], "audit_last_week": audit["weeks"][-1],
                               "audit_refit_every": refit})
            mlflow.log_metrics(metrics)
            for path in paths.values():
                mlflow.log_artifact(str(path), "audit")
    return audit, paths


DEMO_AUDIT = {"weeks": 8, "simulation": {"rounds": 12, "replications": 2}, "bootstrap_reps": 200}


def demo_audit_step(cfg: StudyConfig, prepared: Prepared, out_dir: Path) -> tuple[dict, dict[str, Path]]:
    """The audit as the demo runs it: the champion on the last DEMO_AUDIT["weeks"] weeks with a short feedback-loop
    simulation and a smaller bootstrap (settings stated in the report), the rest from the config."""
    return audit_step(cfg, weeks=DEMO_AUDIT["weeks"], out_dir=out_dir, prepared=prepared,
                      simulation=DEMO_AUDIT["simulation"], bootstrap_reps=DEMO_AUDIT["bootstrap_reps"])


def audit_metrics(audit: dict) -> dict[str, float]:
    """Headline audit figures as MLflow metrics named audit.*: per group of every definition for the audited model,
    the largest flag-rate ratio of every model, the simulation's end distances and the time taken."""
    import re

    out = {}
    audited = audit["audited_model"]
    for name, d in audit["definitions"].items():
        for label, g in d["models"][audited]["groups"].items():
            for key in ("flag_share", "disparate_impact", "hit_rate", "pai", "flagged_population_share"):
                if key in g:  # no population figures where residents are unknown (place names)
                    out[f"audit.{name}.{label}.{key}"] = g[key]["value"]
            out[f"audit.{name}.{label}.population_share"] = d["groups"][label]["population_share"]
        for model, figs in d["models"].items():
            out[f"audit.{name}.largest_flag_rate_ratio.{model}"] = figs["largest_flag_rate_ratio"]
    for arm, a in audit.get("feedback", {}).get("arms", {}).items():
        out[f"audit.feedback.{arm}.distance_end"] = a["distance_end"]
    out.update({f"audit.{k}": v for k, v in audit.get("seconds", {}).items()})
    return {re.sub(r"[^A-Za-z0-9_.\-/]", "_", k): float(v) for k, v in out.items() if v is not None}


def _metric(key: str, value: float):
    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), 0)
