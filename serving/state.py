"""What the running service holds: settings, the database, the study area, and per forecast product its champion,
reports and caches."""

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


class UnknownProduct(LookupError):
    """A `?product=` the area does not have; the message names those it has."""


@dataclass
class ProductService:
    """One forecast product of the area (`[[products]]`): its config, champion forecaster, reports and model listing,
    and its latest-publication pointer and week look-ups."""

    cfg: StudyConfig
    forecaster: Forecaster
    reports: ReportSource
    models: ModelSource
    latest: tuple[float, Publication | None] | None = None
    weeks: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cfg.product.name

    @property
    def title(self) -> str:
        return self.cfg.product.label

    def describe(self, default: bool) -> dict:
        """Name, title and offences, as /v1/areas and the map list them."""
        return {"name": self.name, "title": self.title, "offenses": self.cfg.product.offenses, "default": default}


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    store: PublicationStore
    keys: KeyVerifier
    access: AccessLog
    renderer: Renderer
    cfg: StudyConfig | None = None  # the default product's config
    config_error: str | None = None
    products: dict[str, ProductService] = field(default_factory=dict)  # by name, the default first
    publish_lock: threading.Lock = field(default_factory=threading.Lock)
    memo: ResponseMemo = field(default_factory=ResponseMemo)

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
            base = load_config(settings.config)
        except ConfigError as exc:
            state.config_error = str(exc).splitlines()[0]
            return state
        for name in base.product_names:
            cfg = base.for_product(name)
            state.products[name] = ProductService(cfg, Forecaster(cfg, pin=settings.forecast_model),
                                                  ReportSource(cfg, ttl_s=settings.reports_refresh_s,
                                                               default_product=name == base.product_names[0]),
                                                  ModelSource(cfg, ttl_s=settings.reports_refresh_s))
        state.cfg = state.default.cfg
        state.store.claim_unlabelled(state.cfg.area.name, state.cfg.product.name)  # a store made before products
        return state

    @property
    def area(self) -> str | None:
        return self.cfg.area.name if self.cfg else None

    @property
    def default(self) -> ProductService | None:
        """The default product (the first): what every route serves without `?product=`."""
        return next(iter(self.products.values()), None)

    # the default product's parts, for code that predates products
    @property
    def forecaster(self) -> Forecaster | None:
        return self.default.forecaster if self.products else None

    @property
    def reports(self) -> ReportSource | None:
        return self.default.reports if self.products else None

    @property
    def models(self) -> ModelSource | None:
        return self.default.models if self.products else None

    def product(self, name: str | None) -> ProductService:
        """The product called `name` (None: the default); UnknownProduct naming the products there are."""
        if name is None:
            return self.default
        found = self.products.get(name)
        if found is None:
            raise UnknownProduct(f"no product named {name!r} in {self.area}; expected one of "
                                 f"{', '.join(self.products)}")
        return found

    # The latest-publication pointer and week look-ups are reused for cache_ttl_s: a publication made by another
    # process (another worker) shows within that time; one made by this process shows at once.

    def latest_cached(self, product: str | None = None) -> tuple[bool, Publication | None]:
        if not self.products:
            return True, None  # no study area: nothing is published
        hit = self.product(product).latest
        if hit is not None and time.monotonic() - hit[0] < self.settings.cache_ttl_s:
            return True, hit[1]
        return False, None

    def latest_publication(self, product: str | None = None) -> Publication | None:
        fresh, pub = self.latest_cached(product)
        if fresh:
            return pub
        return self.refresh_latest(product)

    def refresh_latest(self, product: str | None = None) -> Publication | None:
        if not self.products:
            return None
        p = self.product(product)
        pub = self.store.latest(self.area, p.name)
        p.latest = (time.monotonic(), pub)
        return pub

    def refresh_caches(self) -> None:
        """Run every cache_ttl_s / 2: re-read the latest pointers and re-check the keys in use, so requests find
        them fresh instead of all going to the database together when they expire."""
        for name in self.products:
            self.refresh_latest(name)
        self.keys.refresh()

    def refresh_reports(self) -> bool:
        """Re-read each product's report runs from MLflow when they are due (start-up, then every reports.ttl_s): the
        only place the service asks MLflow for reports. False when that failed (logged; the reports held stay
        served)."""
        ok = True
        for p in self.products.values():
            if not p.reports.due():
                continue
            try:
                p.reports.refresh()
            except Exception as exc:  # noqa: BLE001 - MLflow down must not take the reports already rendered with it
                log.warning("reports of %s not refreshed from MLflow: %s", p.name, p.reports.error or exc)
                ok = False
        return ok

    def week_cached(self, week: str, version: int | None,
                    product: str | None = None) -> tuple[bool, Publication | None]:
        if not self.products:
            return True, None
        hit = self.product(product).weeks.get((week, version))
        if hit is not None and (version is not None or time.monotonic() - hit[0] < self.settings.cache_ttl_s):
            return True, hit[1]  # an explicit version never changes once it exists
        return False, None

    def week_publication(self, week: str, version: int | None, product: str | None = None) -> Publication | None:
        fresh, pub = self.week_cached(week, version, product)
        if fresh:
            return pub
        p = self.product(product)
        pub = self.store.find(self.area, p.name, week, version)
        if len(p.weeks) > 5_000:
            p.weeks.clear()
        if pub is not None or version is None:
            p.weeks[(week, version)] = (time.monotonic(), pub)
        return pub

    def published(self, pub: Publication) -> None:
        """A publication this process just committed: readers here see it at once."""
        p = self.product(pub.product)
        p.latest = None
        p.weeks.pop((pub.week, None), None)

    def close(self) -> None:
        try:
            self.access.flush()
        finally:
            self.engine.dispose()
