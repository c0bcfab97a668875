"""The weekly briefing step: the week's forecast for command staff as a printable PDF or HTML page."""

from __future__ import annotations

import os
from pathlib import Path

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.steps.common import Prepared, prepare
from hotspot.training import tracking


def check_writable(out: Path) -> None:
    """Refuse, before any work, a briefing file that cannot be written: a folder, or a folder that cannot be made
    or written to."""
    out = Path(out)
    if out.is_dir():
        raise HotspotError(f"cannot write the briefing to {out}: it is a folder; name a file (.pdf or .html)")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HotspotError(f"cannot write the briefing to {out}: cannot create the folder {folder} "
                           f"({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise HotspotError(f"cannot write the briefing to {out}: no permission to write in {folder}")


def stored_live(cfg: StudyConfig, database_url: str | None = None) -> dict | None:
    """The product's live record from the publication store at `database_url` (default: HOTSPOT_DATABASE_URL, else
    the commands' default), or None when there is no store: a SQLite file that does not exist is never created, and
    a store without live scores (older, or no cycle run yet) gives None too."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from hotspot.serving import DEFAULT_DATABASE_URL
    from hotspot.serving.db import PublicationStore, make_engine
    from hotspot.serving.live import stored_live_record

    url = database_url or os.environ.get("HOTSPOT_DATABASE_URL") or DEFAULT_DATABASE_URL
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - a URL the store could not open either: no live record, the briefing goes on
        return None
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or parsed.database == ":memory:"
                                                  or not Path(parsed.database).is_file()):
        return None
    engine = make_engine(url)
    try:
        record = stored_live_record(PublicationStore(engine), cfg.area.name, cfg.product.name)
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return record if record["n_weeks"] else None


def briefing_step(cfg: StudyConfig, out: Path, week: str | None = None, top: int = 10, fmt: str | None = None,
                  paper: str = "a4", prepared: Prepared | None = None, database_url: str | None = None,
                  pin: str | None = None):
    """Write the weekly briefing of `week` (default: the first unrecorded week) to `out` (PDF or HTML, from `fmt` or
    the suffix) and log it to MLflow; the forecast is auto's (pin None, as `hotspot forecast` and the map) or the
    pinned version's ('champion' or a number). Returns (briefing, path). The live record of the
    product's published forecasts is added when the publication store (`stored_live`) holds one."""
    from hotspot.training.briefing import build_briefing
    from hotspot.training.briefing_render import briefing_format, paper_size, write_briefing
    from hotspot.training.forecast_model import models_by_week

    check_writable(Path(out))
    kind = briefing_format(Path(out), fmt)
    paper_size(paper)
    prepared = prepared or prepare(cfg)
    week = week or str(prepared.panel.next_period_start.date())
    try:  # before loading the model: a wrong week is the likelier mistake
        prepared.panel.period_index(week)
    except ValueError as exc:
        raise HotspotError(f"week {week}: {str(exc).splitlines()[0]}") from None
    model_for = models_by_week(cfg, prepared.panel, prepared.incidents.fingerprint, pin)
    briefing = build_briefing(cfg, prepared, model_for, week, top, live=stored_live(cfg, database_url))
    path = write_briefing(briefing, Path(out), kind, paper)
    with tracking.step_run(cfg, "briefing", prepared.incidents.fingerprint, run_name=f"briefing {week}"):
        import mlflow

        mlflow.log_params({"briefing_week": briefing.week_start, "model": briefing.model,
                           "model_version": briefing.model_version, "top": top, "format": kind, "paper": paper})
        if briefing.last_week is not None:
            lw = briefing.last_week
            mlflow.log_metrics({"last_week_hits": lw.forecast.hits, "last_week_recorded": lw.recorded,
                                "last_week_best_baseline_hits": lw.best_baseline.hits})
        if briefing.live is not None:
            mlflow.log_metric("live_weeks_scored", briefing.live["n_weeks"])
        mlflow.log_artifact(str(path), "briefing")
    return briefing, path
