"""The validated incidents and the panel built from them: the shared first half of every step (train, backtest,
audit, forecast, the service's publications)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from hotspot.features.config import StudyConfig
from hotspot.features.ingest import ValidatedIncidents, validate
from hotspot.features.panel import Panel, build_panel
from hotspot.features.places import Places, build_places


@dataclass
class Prepared:
    incidents: ValidatedIncidents
    panel: Panel
    seconds: dict[str, float]
    places: Places | None = None  # cell place names (features.places), None when the config gives none


def prepare(cfg: StudyConfig, incidents: ValidatedIncidents | None = None,
            status: Callable[[str], AbstractContextManager] | None = None) -> Prepared:
    """Validate the inputs (unless already validated) and build the panel; `status(message)` wraps each part (a
    spinner on the command line; none in the service)."""
    say = status or (lambda message: nullcontext())
    timings = {}
    if incidents is None:
        with say("reading and validating incidents"):
            start = time.perf_counter()
            incidents = validate(cfg)
            timings["validate_s"] = time.perf_counter() - start
    with say(f"building the panel ({incidents.grid.n_cells:,} cells)"):
        start = time.perf_counter()
        panel = build_panel(cfg, incidents.accepted, incidents.grid)
        timings["panel_s"] = time.perf_counter() - start
    places = build_places(cfg, incidents.accepted, incidents.grid, incidents.area)
    return Prepared(incidents, panel, timings, places)
