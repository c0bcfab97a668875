"""Computing a week's forecast with the champion model and turning it into rows for the publication store."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from hotspot.features.config import StudyConfig
from hotspot.serving.db import CellRecord

log = logging.getLogger("hotspot.serving")



def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value) -> str:
    """Compact JSON of a publication's parts (numpy values converted, NaN refused)."""
    return json.dumps(value, separators=(",", ":"), default=_json_default, allow_nan=False)


@dataclass(frozen=True)
class ForecastRows:
    week: str
    metadata: dict
    cells: list[CellRecord]


def cell_records(cells) -> list[CellRecord]:
    """One record per cell (rank order) with its geometry and every property as JSON; `reasons` always present."""
    if "reasons" not in cells.columns:  # forecasts from before per-cell reasons existed
        cells = cells.assign(reasons=[[] for _ in range(len(cells))])
    collection = cells.to_geo_dict(drop_id=True)
    records = []
    for feature in collection["features"]:
        p = feature["properties"]
        p["reasons"] = [str(r) for r in (p.get("reasons") if p.get("reasons") is not None else [])]
        records.append(CellRecord(rank=int(p["rank"]), cell_id=int(p["cell_id"]), lon=float(p["lon"]),
                                  lat=float(p["lat"]), risk=float(p["risk"]), percentile=float(p["percentile"]),
                                  geometry_json=dumps(feature["geometry"]), properties_json=dumps(p)))
    records.sort(key=lambda r: r.rank)
    return records


class Forecaster:
    """The study area's panel and the model that forecasts: `auto` by default, or a pinned version.

    `pin` None (or 'auto'): each week is forecast by the selection rule fitted at the week's refit week with only
    the weeks before that (training/forecast_model.py); the fit is kept per (refit week, data fingerprint) and the
    week's choice per (product, week, data fingerprint), so a second request for the week is instant. `pin`
    'champion': the registry's champion, reloaded when the alias moves; a number: that registered version. The
    champion is also what the briefing uses (load_champion).

    Thread-safe: one forecast is computed at a time (they are CPU-bound and share the panel).
    """

    CHOICES_KEPT = 8  # fitted auto choices kept (weeks x data versions); the oldest goes first

    def __init__(self, cfg: StudyConfig, pin: str | None = None):
        from hotspot.training.forecast_model import pin_from

        self.cfg = cfg
        self.pin = pin_from(pin)
        self._choices: dict[tuple, object] = {}
        self._auto_fits: dict[tuple, object] = {}  # auto fitted at a refit week, shared by the weeks it forecasts
        self.model = None
        self.ref = None
        self.prepared = None
        self.error: str | None = None
        self._lock = threading.RLock()
        self._checked_at = 0.0
        self._briefings: dict[tuple, tuple[bytes, str]] = {}  # rendered briefings, oldest first

    def champion_version(self) -> str | None:
        """The version the registry's champion alias points at now (None when there is none)."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from hotspot.training.registry import CHAMPION, registered_name
        from hotspot.training.tracking import ensure_store

        try:
            return str(MlflowClient(ensure_store()).get_model_version_by_alias(registered_name(self.cfg),
                                                                               CHAMPION).version)
        except MlflowException:
            return None

    def load_champion(self, force: bool = False):
        """Load the champion if none is loaded or the alias moved; returns (model, ref) or raises HotspotError."""
        from hotspot.training.registry import load_champion

        with self._lock:
            if self.model is not None and not force:
                current = self.champion_version()
                if current == self.ref.version:
                    return self.model, self.ref
            try:
                self.model, self.ref = load_champion(self.cfg)
                self.error = None
                log.info("loaded champion %s", self.ref.label)
            except Exception as exc:  # noqa: BLE001 - kept for /ready, re-raised for the caller
                self.error = str(exc).splitlines()[0]
                raise
            finally:
                self._checked_at = time.monotonic()
            return self.model, self.ref

    @property
    def needs_champion(self) -> bool:
        """Forecasts come from the registry's champion (pin 'champion'); auto and a pinned version do without one."""
        return self.pin == "champion"

    @property
    def forecasts_with(self) -> str:
        """What forecasts, in words: 'auto', 'champion' or 'version N'."""
        return "auto" if self.pin is None else ("champion" if self.needs_champion else f"version {self.pin}")

    def try_load_champion(self, min_interval_s: float = 5.0) -> bool:
        """Load the champion if not loaded, at most every `min_interval_s` (for /ready); True when loaded."""
        if self.model is not None:
            return True
        if time.monotonic() - self._checked_at < min_interval_s:
            return False
        try:
            self.load_champion()
        except Exception:  # noqa: BLE001 - /ready reports self.error
            return False
        return True

    def panel(self):
        from hotspot.features.prepared import prepare

        with self._lock:
            if self.prepared is None:
                start = time.perf_counter()
                self.prepared = prepare(self.cfg)
                log.info("panel ready in %.1f s", time.perf_counter() - start)
            return self.prepared

    def model_for(self, t: int):
        """The ForecastModel for period t of the panel: auto's choice (kept per product, week and data fingerprint;
        its fit per refit week), the champion (reloaded when the alias moves) or the pinned version (loaded once)."""
        from hotspot.training.forecast_model import ForecastModel, fit_auto, pinned_model

        with self._lock:
            if self.pin == "champion":
                model, ref = self.load_champion()
                return ForecastModel(model, ref, None, champion=True)
            prepared = self.panel()
            panel = prepared.panel
            auto = self.pin is None
            key = ((self.cfg.model_key, str(panel.period_starts[t].date()), prepared.incidents.fingerprint)
                   if auto else ("version", self.pin))
            if key not in self._choices:
                chosen = (fit_auto(self.cfg, panel, t, prepared.incidents.fingerprint, self._auto_fits) if auto
                          else pinned_model(self.cfg, self.pin))
                if auto:
                    log.info("%s (%.1f s)", chosen.words, chosen.seconds)
                self._choices[key] = chosen
                for kept in (self._choices, self._auto_fits):  # the oldest go first
                    while len(kept) > self.CHOICES_KEPT:
                        kept.pop(next(iter(kept)))
            return self._choices[key]

    def forecast(self, week: str | None) -> ForecastRows:
        """The forecast of `week` (default: the first unobserved week) with auto's choice for that week, or the
        pinned version (see the class); the metadata's `selection` says what auto chose and why.

        ValueError (or HotspotError) when the week is not a period of the panel.
        """
        from hotspot.training.forecast import forecast_cells, forecast_provenance

        with self._lock:
            prepared = self.panel()
            panel = prepared.panel
            t = panel.period_index(week or str(panel.next_period_start.date()))
            chosen = self.model_for(t)
            cells = forecast_cells(panel, chosen.model, t, places=prepared.places)
            metadata = {**forecast_provenance(self.cfg, panel, t, chosen.ref, prepared.incidents.fingerprint,
                                              with_model_fingerprint=True, selection=chosen.selection),
                        "crs": "urn:ogc:def:crs:OGC:1.3:CRS84", "cells": int(len(cells)),
                        "expected_incidents": round(float(cells["risk"].sum()), 4)}
            return ForecastRows(metadata["period_start"], metadata, cell_records(cells))

    def briefing_page(self, week: str | None, top: int, fmt: str, paper: str,
                      live: dict | None = None) -> tuple[bytes, str]:
        """The weekly briefing of `week` (default: the first unrecorded week) with what forecasts the service's
        weeks (`model_for`: auto, the champion or the pinned version), rendered as 'pdf' or 'html'; returns (body,
        week start). Kept for the model and data it was made from (and the live record given, a `live_record` of the
        product's published forecasts), since scoring last week fits models (seconds to minutes).

        ValueError (or HotspotError) when the week is not a period of the panel.
        """
        from hotspot.training.briefing import build_briefing
        from hotspot.training.briefing_render import render_html, render_pdf

        with self._lock:
            if self.needs_champion:
                self.load_champion()
            prepared = self.panel()
            week = week or str(prepared.panel.next_period_start.date())
            live_key = json.dumps(live, sort_keys=True) if live else None  # a new score makes a new briefing
            # auto's forecast follows from the data and the config; a champion's from its version
            made_by = self.ref.version if self.needs_champion and self.ref is not None else self.forecasts_with
            key = (made_by, prepared.incidents.fingerprint, week, top, fmt, paper, live_key)
            cache = self._briefings
            if key not in cache:
                briefing = build_briefing(self.cfg, prepared, self.model_for, week, top, live=live)
                body = render_pdf(briefing, paper) if fmt == "pdf" else render_html(briefing, paper).encode("utf-8")
                while len(cache) >= 8:  # a handful of weeks and formats; the oldest goes first
                    cache.pop(next(iter(cache)))
                cache[key] = (body, briefing.week_start)
            return cache[key]

    def log_publication(self, rows: ForecastRows, publication_id: int, version: int) -> None:
        """Record the publication as an MLflow run tagged step=forecast (the database stays the source of truth)."""
        from hotspot.training import tracking

        try:
            selection = rows.metadata.get("selection")
            label = f"auto:{rows.metadata['model_version']}" if selection else f"v{rows.metadata['model_version']}"
            name = f"publish {rows.week} {label} (#{publication_id}.{version})"
            with self._lock, tracking.step_run(self.cfg, "forecast", rows.metadata["data_fingerprint"] or "",
                                               run_name=name):
                import mlflow

                mlflow.log_params({"forecast_week": rows.week, "model": rows.metadata["model"],
                                   "model_version": rows.metadata["model_version"],
                                   "publication_id": publication_id, "publication_version": version})
                if selection:  # why auto chose this model that week: every candidate's validation scores
                    mlflow.log_dict(selection, "forecast/selection.json")
                    mlflow.set_tag(tracking.NOTE_TAG, f"Published {rows.week}: {selection['sentence']}.")
                mlflow.log_metrics({"expected_incidents": rows.metadata["expected_incidents"],
                                    "cells": rows.metadata["cells"]})
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not undo a committed publication
            log.warning("publication %s stored but not logged to MLflow: %s", publication_id, exc)
