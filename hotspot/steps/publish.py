"""Publishing from the command line: the same forecast, provenance and store as the service's POST /v1/forecasts,
so a map served later shows what the analyst published (the demo publishes this way too)."""

from __future__ import annotations

from dataclasses import dataclass

from hotspot.features.config import StudyConfig
from hotspot.features.prepared import Prepared
from hotspot.steps.common import prepare


@dataclass(frozen=True)
class Published:
    week: str
    version: int
    model_version: str
    cells: int
    expected_incidents: float
    selection: str | None = None  # auto's choice in words


def publish_step(cfg: StudyConfig, weeks: list[str | None], database_url: str, prepared: Prepared | None = None,
                 new_version: bool = False, published_by: str = "cli", pin: str | None = None) -> list[Published]:
    """Forecast each week (None = the first unrecorded week) for the config's product with `auto` (or the pinned
    version: 'champion' or a number) and publish it to the store at `database_url` as that product's; a week already
    published is refused (PublicationExists) unless `new_version`."""
    from hotspot.serving.db import PublicationStore, create_schema, make_engine
    from hotspot.serving.publishing import Forecaster

    forecaster = Forecaster(cfg, pin=pin)
    forecaster.prepared = prepared or prepare(cfg)
    engine = make_engine(database_url)
    create_schema(engine)
    store = PublicationStore(engine)
    store.claim_unlabelled(cfg.area.name, cfg.product_names[0])  # a store made before products: the default's
    done = []
    for week in weeks:
        rows = forecaster.forecast(week)
        pub = store.publish(cfg.area.name, cfg.product.name, rows.week, rows.metadata, rows.cells,
                            new_version=new_version, published_by=published_by)
        forecaster.log_publication(rows, pub.id, pub.version)
        done.append(Published(pub.week, pub.version, str(rows.metadata["model_version"]), len(rows.cells),
                              float(rows.metadata["expected_incidents"]),
                              (rows.metadata.get("selection") or {}).get("sentence")))
    return done
