"""The validated incidents and the panel built from them: the shared first half of every step (train, backtest,
audit, forecast, the service's publications)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from hotspot.features import cache
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
            status: Callable[[str], AbstractContextManager] | None = None, use_cache: bool = True) -> Prepared:
    """Validate the inputs (unless already validated) and build the panel, or take both from the cache when the
    inputs are unchanged (features/cache.py); `status(message)` wraps each part (a spinner on the command line;
    none in the service)."""
    say = status or (lambda message: nullcontext())
    key = cache.cache_key(cfg) if use_cache else None
    if key is not None:
        start = time.perf_counter()
        found = cache.load(cfg, key)
        if isinstance(found, Prepared) and (incidents is None or found.incidents.fingerprint == incidents.fingerprint
                                            ) and _parts_present(found.panel):
            found.seconds = {"cache_s": time.perf_counter() - start}
            return found
    prepared = _build(cfg, incidents, say, key)
    if key is not None:
        with say("caching the panel for the next command"):
            cache.store(cfg, key, prepared)
    return prepared


def _build(cfg: StudyConfig, incidents: ValidatedIncidents | None,
           say: Callable[[str], AbstractContextManager], key: str | None = None) -> Prepared:
    timings = {}
    if incidents is None:
        with say("reading and validating incidents"):
            start = time.perf_counter()
            incidents = validate(cfg)
            timings["validate_s"] = time.perf_counter() - start
    message = f"building the panel ({incidents.grid.n_cells:,} cells)"
    with say(message) as status:
        def progress(family: str, i: int, n: int) -> None:
            if hasattr(status, "update"):  # a rich Status on the command line
                status.update(f"{message}: feature family {i + 1} of {n} ({family})")

        start = time.perf_counter()
        panel = build_panel(cfg, incidents.accepted, incidents.grid, on_family=progress, key=key)
        timings["panel_s"] = time.perf_counter() - start
    places = build_places(cfg, incidents.accepted, incidents.grid, incidents.area)
    return Prepared(incidents, panel, timings, places)


def _parts_present(panel: Panel) -> bool:
    """A cached partitioned panel whose files are gone (removed by hand, another machine's cache) is built again."""
    from hotspot.features.parts import MANIFEST, PartitionedX

    X = panel.X
    return not isinstance(X, PartitionedX) or (Path(X.parts.folder) / MANIFEST).is_file()
