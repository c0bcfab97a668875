"""The weekly briefing step: the champion's week for command staff as a printable PDF or HTML page."""

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


def briefing_step(cfg: StudyConfig, out: Path, week: str | None = None, top: int = 10, fmt: str | None = None,
                  paper: str = "a4", prepared: Prepared | None = None):
    """Write the weekly briefing of `week` (default: the first unrecorded week) with the champion to `out` (PDF or
    HTML, from `fmt` or the suffix) and log it to MLflow. Returns (briefing, path)."""
    from hotspot.training.briefing import build_briefing
    from hotspot.training.briefing_render import briefing_format, paper_size, write_briefing
    from hotspot.training.registry import load_champion

    check_writable(Path(out))
    kind = briefing_format(Path(out), fmt)
    paper_size(paper)
    prepared = prepared or prepare(cfg)
    week = week or str(prepared.panel.next_period_start.date())
    try:  # before loading the model: a wrong week is the likelier mistake
        prepared.panel.period_index(week)
    except ValueError as exc:
        raise HotspotError(f"week {week}: {str(exc).splitlines()[0]}") from None
    model, ref = load_champion(cfg)
    briefing = build_briefing(cfg, prepared, model, ref, week, top)
    path = write_briefing(briefing, Path(out), kind, paper)
    with tracking.step_run(cfg, "briefing", prepared.incidents.fingerprint, run_name=f"briefing {week}"):
        import mlflow

        mlflow.log_params({"briefing_week": briefing.week_start, "model_version": ref.version, "top": top,
                           "format": kind, "paper": paper})
        if briefing.last_week is not None:
            lw = briefing.last_week
            mlflow.log_metrics({"last_week_hits": lw.forecast.hits, "last_week_recorded": lw.recorded,
                                "last_week_best_baseline_hits": lw.best_baseline.hits})
        mlflow.log_artifact(str(path), "briefing")
    return briefing, path
