"""What the running service holds: settings, the database, the study area, the champion and the caches."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from hotspot.features.config import StudyConfig
from hotspot.serving.artifacts import ModelSource, ReportSource
from hotspot.serving.auth import AccessLog, KeyVerifier
from hotspot.serving.db import Publication, PublicationStore, create_schema, make_engine
from hotspot.serving.hotpath import ResponseMemo
from hotspot.serving.publishing import Forecaster
from hotspot.serving.rendering import Renderer
from hotspot.serving.settings import Settings

log = logging.getLogger("hotspot.serving")


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    store: PublicationStore
    keys: KeyVerifier
    access: AccessLog
    renderer: Renderer
    cfg: StudyConfig | None = None
    config_error: str | None = None
    forecaster: Forecaster | None = None
    reports: ReportSource | None = None
    models: ModelSource | None = None
    publish_lock: threading.Lock = field(default_factory=threading.Lock)
    memo: ResponseMemo = field(default_factory=ResponseMemo)
    _latest: tuple[float, Publication | None] | None = None
    _weeks: dict = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings) -> ServiceState:
        """Connect to the database (creating the tables) and read the study-area config when one is set."""
        engine = make_engine(settings.database_url)
        create_schema(engine)
        store = PublicationStore(engine)
        state = cls(settings=settings, engine=engine, store=store,
                    keys=KeyVerifier(engine, settings.cache_ttl_s), access=AccessLog(engine),
                    renderer=Renderer(store.cells, settings.render_cache_size))
        if settings.config is None:
            state.config_error = "no study area configured (set HOTSPOT_CONFIG or `hotspot serve --config`)"
            return state
        from hotspot.features.config import ConfigError, load_config

        try:
            state.cfg = load_config(settings.config)
        except ConfigError as exc:
            state.config_error = str(exc).splitlines()[0]
            return state
        state.forecaster = Forecaster(state.cfg, pin=settings.forecast_model)
        state.reports = ReportSource(state.cfg, ttl_s=settings.reports_refresh_s)
        state.models = ModelSource(state.cfg, ttl_s=settings.reports_refresh_s)
        return state

    @property
    def area(self) -> str | None:
        return self.cfg.area.name if self.cfg else None

    # The latest-publication pointer and week look-ups are reused for cache_ttl_s: a publication made by another
    # process (another worker) shows within that time; one made by this process shows at once.

    def latest_cached(self) -> tuple[bool, Publication | None]:
        hit = self._latest
        if hit is not None and time.monotonic() - hit[0] < self.settings.cache_ttl_s:
            return True, hit[1]
        return False, None

    def latest_publication(self) -> Publication | None:
        fresh, pub = self.latest_cached()
        if fresh:
            return pub
        return self.refresh_latest()

    def refresh_latest(self) -> Publication | None:
        pub = self.store.latest(self.area) if self.area else None
        self._latest = (time.monotonic(), pub)
        return pub

    def refresh_caches(self) -> None:
        """Run every cache_ttl_s / 2: re-read the latest pointer and re-check the keys in use, so requests find
        them fresh instead of all going to the database together when they expire."""
        self.refresh_latest()
        self.keys.refresh()

    def refresh_reports(self) -> bool:
        """Re-read the report runs from MLflow when they are due (start-up, then every reports.ttl_s): the only
        place the service asks MLflow for reports. False when that failed (logged; the reports held stay served)."""
        if self.reports is None or not self.reports.due():
            return True
        try:
            self.reports.refresh()
        except Exception as exc:  # noqa: BLE001 - MLflow down must not take the reports already rendered with it
            log.warning("reports not refreshed from MLflow: %s", self.reports.error or exc)
            return False
        return True

    def week_cached(self, week: str, version: int | None) -> tuple[bool, Publication | None]:
        hit = self._weeks.get((week, version))
        if hit is not None and (version is not None or time.monotonic() - hit[0] < self.settings.cache_ttl_s):
            return True, hit[1]  # an explicit version never changes once it exists
        return False, None

    def week_publication(self, week: str, version: int | None) -> Publication | None:
        fresh, pub = self.week_cached(week, version)
        if fresh:
            return pub
        pub = self.store.find(self.area, week, version) if self.area else None
        if len(self._weeks) > 5_000:
            self._weeks.clear()
        if pub is not None or version is None:
            self._weeks[(week, version)] = (time.monotonic(), pub)
        return pub

    def published(self, pub: Publication) -> None:
        """A publication this process just committed: readers here see it at once."""
        self._latest = None
        self._weeks.pop((pub.week, None), None)

    def close(self) -> None:
        try:
            self.access.flush()
        finally:
            self.engine.dispose()
