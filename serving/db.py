"""Storage of published forecasts, API keys and the access log (SQLAlchemy; SQLite by default, PostgreSQL by URL).

A publication is one header row plus one row per cell, written in ONE transaction: readers see all of it or none
of it, and a publisher killed half-way leaves the database as it was (SQLite's WAL and PostgreSQL's MVCC discard
the uncommitted rows). Publications are never updated or deleted; publishing a week again makes a new version.

A publication belongs to an area AND a forecast product (`[[products]]`): versions and immutability are per (area,
product, week). A store made before products is upgraded in place by `create_schema` (a `product` column, the unique
key widened); its rows then have no product until `claim_unlabelled` gives them to the area's default product.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotspot.training.monitoring import PUBLISHED  # noqa: F401 - LiveScoreRow.model of a publication's own forecast

CELL_CHUNK = 2_000  # cell rows per INSERT statement (one transaction holds them all)


class Base(DeclarativeBase):
    pass


class PublicationRow(Base):
    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("area", "product", "week", "version",
                                       name="uq_publication_area_product_week_version"),
                      Index("ix_publications_area_product_week", "area", "product", "week"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    area: Mapped[str] = mapped_column(String(100))
    # NULL only in a store made before products, until claim_unlabelled gives those rows to the default product
    product: Mapped[str | None] = mapped_column(String(100))
    week: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, the period start
    version: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    model_run_id: Mapped[str | None] = mapped_column(String(64))
    data_fingerprint: Mapped[str | None] = mapped_column(String(128))
    code_version: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published_by: Mapped[str | None] = mapped_column(String(32))  # API key id, never the key
    n_cells: Mapped[int] = mapped_column(Integer)
    metadata_json: Mapped[str] = mapped_column(Text)


class PublicationCellRow(Base):
    __tablename__ = "publication_cells"

    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell_id: Mapped[int] = mapped_column(BigInteger)  # grid ids can pass 2**31
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    risk: Mapped[float] = mapped_column(Float)
    percentile: Mapped[float] = mapped_column(Float)
    geometry_json: Mapped[str] = mapped_column(Text)
    properties_json: Mapped[str] = mapped_column(Text)  # every property, reasons included


class LiveScoreRow(Base):
    """A published forecast scored against what was recorded afterwards (the live record), or a baseline's forecast
    of the same week scored the same way. A week is scored again when late records change what it recorded: the
    newest score of a (publication, model) is the current one, the earlier ones say how much the figures moved."""

    __tablename__ = "live_scores"
    __table_args__ = (Index("ix_live_scores_area_product_week", "area", "product", "week"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id"))
    area: Mapped[str] = mapped_column(String(100))
    product: Mapped[str] = mapped_column(String(100))
    week: Mapped[str] = mapped_column(String(10))
    model: Mapped[str] = mapped_column(String(100))  # PUBLISHED for the publication's own forecast, else a baseline
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    observed_total: Mapped[int] = mapped_column(Integer)  # incidents recorded in the week when it was scored
    data_fingerprint: Mapped[str | None] = mapped_column(String(128))
    metrics_json: Mapped[str] = mapped_column(Text)  # hit_rate/pai/pei at 1% and 5%, poisson_deviance


class CycleRow(Base):
    """One weekly cycle that changed something (`hotspot cycle`): its week, outcome and report."""

    __tablename__ = "cycles"
    __table_args__ = (Index("ix_cycles_area_week", "area", "week"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    area: Mapped[str] = mapped_column(String(100))
    week: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data_fingerprint: Mapped[str | None] = mapped_column(String(128))  # of the incident history it ended with
    report_json: Mapped[str] = mapped_column(Text)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the key's public prefix, e.g. hs_AbCdEf12
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the whole key, hex
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccessLogRow(Base):
    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)


def utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def now_utc() -> datetime:
    """The current UTC time to the second (how the store records times)."""
    return datetime.now(UTC).replace(microsecond=0)


def make_engine(url: str) -> Engine:
    """An engine for `url`, with SQLite set up for one writer and many readers (WAL, busy timeout, real BEGIN)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn, _record):
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions are not serialisable), so a write
        # transaction can take the write lock up front (BEGIN IMMEDIATE) instead of failing on upgrade.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers keep reading the last commit while one writes
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


OLD_UNIQUE = "uq_publication_area_week_version"  # (area, week, version): the key of a store made before products
OLD_INDEX = "ix_publications_area_week"


def create_schema(engine: Engine) -> None:
    """Create the store's tables where they do not exist yet, and upgrade a store made before products."""
    Base.metadata.create_all(engine)
    columns = {c["name"] for c in inspect(engine).get_columns(PublicationRow.__tablename__)}
    if "product" not in columns:
        _add_products(engine)


def _add_products(engine: Engine) -> None:
    """Upgrade the publications table of a store made before products, in one transaction: a `product` column (NULL
    for the rows already there) and the unique key (area, week, version) widened to (area, product, week, version),
    so that each product has its own versions of a week. Alembic's batch mode does it: plain ALTERs on PostgreSQL;
    on SQLite, which cannot drop a constraint, a copy of the table swapped in (foreign keys off meanwhile, as SQLite's
    documented procedure asks, since publication_cells refers to the table)."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:  # outside a transaction, where SQLite honours it (this connection only)
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.execution_options(write=True).begin():
                table = inspect(conn)
                if "product" in {c["name"] for c in table.get_columns("publications")}:
                    return  # another process upgraded it meanwhile
                uniques = {u["name"] for u in table.get_unique_constraints("publications")}
                indexes = {i["name"] for i in table.get_indexes("publications")}
                op = Operations(MigrationContext.configure(conn))
                with op.batch_alter_table("publications") as batch:
                    batch.add_column(Column("product", String(100), nullable=True))
                    if OLD_UNIQUE in uniques:
                        batch.drop_constraint(OLD_UNIQUE, type_="unique")
                    if OLD_INDEX in indexes:
                        batch.drop_index(OLD_INDEX)
                    batch.create_unique_constraint("uq_publication_area_product_week_version",
                                                   ["area", "product", "week", "version"])
                    batch.create_index("ix_publications_area_product_week", ["area", "product", "week"])
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


class PublicationExists(Exception):
    def __init__(self, area: str, week: str, version: int, product: str | None = None):
        self.area, self.week, self.version, self.product = area, week, version, product
        super().__init__(f"a forecast{f' of {product}' if product else ''} for the week of {week} is already "
                         f"published (version {version}); "
                         "publications are immutable: set new_version=true to publish version "
                         f"{version + 1}")


@dataclass(frozen=True)
class Publication:
    """A publication's header (its cells are read separately, once, and cached: they never change)."""

    id: int
    area: str
    product: str | None
    week: str
    version: int
    model_name: str
    model_version: str
    model_run_id: str | None
    data_fingerprint: str | None
    code_version: str | None
    created_at: datetime
    published_by: str | None
    n_cells: int
    metadata: dict[str, Any] = field(hash=False, compare=False)

    @classmethod
    def from_row(cls, row) -> Publication:
        return cls(id=row.id, area=row.area, product=row.product, week=row.week, version=row.version,
                   model_name=row.model_name,
                   model_version=row.model_version, model_run_id=row.model_run_id,
                   data_fingerprint=row.data_fingerprint, code_version=row.code_version,
                   created_at=utc(row.created_at), published_by=row.published_by, n_cells=row.n_cells,
                   metadata=json.loads(row.metadata_json))


@dataclass(frozen=True)
class CellRecord:
    rank: int
    cell_id: int
    lon: float
    lat: float
    risk: float
    percentile: float
    geometry_json: str
    properties_json: str


_P = PublicationRow.__table__
_C = PublicationCellRow.__table__
_S = LiveScoreRow.__table__
_Y = CycleRow.__table__


@dataclass(frozen=True)
class PendingPublication:
    """A forecast to publish as part of a cycle's single transaction (PublicationStore.commit_cycle)."""

    product: str
    week: str
    metadata: dict[str, Any]
    cells: Sequence[CellRecord]


@dataclass(frozen=True)
class LiveScore:
    publication_id: int
    product: str
    week: str
    model: str
    observed_total: int
    metrics: dict[str, float]
    data_fingerprint: str | None = None
    scored_at: datetime | None = None


def _of(area: str, product: str) -> tuple:
    return _P.c.area == area, _P.c.product == product


class PublicationStore:
    """Publish forecasts (one transaction each) and read committed ones back, per area and forecast product."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def publish(self, area: str, product: str, week: str, metadata: dict[str, Any], cells: Sequence[CellRecord], *,
                new_version: bool = False, published_by: str | None = None,
                on_cells_written: Callable[[int], None] | None = None) -> Publication:
        """Store a forecast as the next version of its (area, product, week), atomically.

        Refuses (PublicationExists) when the week is already published for the product and `new_version` is false.
        `on_cells_written(n)` is called inside the open transaction after each chunk of cell rows: a test hook
        for killing a publisher half-way.
        """
        try:
            with self.engine.connect().execution_options(write=True) as conn, conn.begin():
                pid = _insert_publication(conn, area, product, week, metadata, cells, new_version, published_by,
                                          on_cells_written)
        except IntegrityError:
            # a concurrent publisher took the same (week, version) first
            latest = self.find(area, product, week)
            raise PublicationExists(area, week, latest.version if latest else 1) from None
        return self.get(pid)

    def commit_cycle(self, area: str, publications: Sequence[PendingPublication], scores: Sequence[LiveScore],
                     cycle: dict[str, Any], on_step: Callable[[str], None] | None = None) -> tuple[list[Publication],
                                                                                               int]:
        """A weekly cycle's writes in ONE transaction: its publications, the live scores it computed (a score of a
        publication made in this cycle refers to it by (product, week) with publication_id 0) and its cycle record
        (`cycle`: week, status, started_at, data_fingerprint, report). All of it or none of it is stored; a week
        already published for a product is refused (PublicationExists) and nothing is written.
        `on_step(name)` is called inside the open transaction ('publications', 'scores', 'cycle'): a test hook."""
        hook = on_step or (lambda _name: None)
        try:
            with self.engine.connect().execution_options(write=True) as conn, conn.begin():
                ids, made = [], {}
                for pending in publications:
                    pid = _insert_publication(conn, area, pending.product, pending.week, pending.metadata,
                                              pending.cells, False, "cycle", None)
                    ids.append(pid)
                    made[(pending.product, pending.week)] = pid
                hook("publications")
                now = now_utc()
                rows = [{"publication_id": s.publication_id or made[(s.product, s.week)], "area": area,
                         "product": s.product, "week": s.week, "model": s.model, "scored_at": s.scored_at or now,
                         "observed_total": int(s.observed_total), "data_fingerprint": s.data_fingerprint,
                         "metrics_json": json.dumps(s.metrics, allow_nan=False)} for s in scores]
                if rows:
                    conn.execute(insert(_S), rows)
                hook("scores")
                cycle_id = conn.execute(insert(_Y).values(
                    area=area, week=cycle["week"], status=cycle["status"], started_at=cycle["started_at"],
                    finished_at=now, data_fingerprint=cycle.get("data_fingerprint"),
                    report_json=json.dumps(cycle["report"], allow_nan=False, default=str))).inserted_primary_key[0]
                hook("cycle")
        except IntegrityError:
            raise PublicationExists(area, publications[0].week if publications else "?", 1) from None
        return [self.get(pid) for pid in ids], int(cycle_id)

    def live_scores(self, area: str, product: str, current: bool = True) -> list[LiveScore]:
        """Live scores of the product's publications, oldest week first: only the newest score of each (publication,
        model) when `current`, else every score made (late records re-score a week), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_S).where(_S.c.area == area, _S.c.product == product)
                                .order_by(_S.c.week, _S.c.model, _S.c.scored_at, _S.c.id)).all()
        scores = [LiveScore(r.publication_id, r.product, r.week, r.model, r.observed_total,
                            json.loads(r.metrics_json), r.data_fingerprint, utc(r.scored_at)) for r in rows]
        if not current:
            return scores
        newest = {(s.publication_id, s.model): s for s in scores}  # later rows win
        return sorted(newest.values(), key=lambda s: (s.week, s.model))

    def cycles(self, area: str, limit: int = 100) -> list[dict[str, Any]]:
        """The area's recorded cycles, newest first: id, week, status, times, data fingerprint and report."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_Y).where(_Y.c.area == area).order_by(_Y.c.id.desc()).limit(limit)).all()
        return [{"id": r.id, "week": r.week, "status": r.status, "started_at": utc(r.started_at),
                 "finished_at": utc(r.finished_at), "data_fingerprint": r.data_fingerprint,
                 "report": json.loads(r.report_json)} for r in rows]

    def claim_unlabelled(self, area: str, default_product: str) -> int:
        """Give the area's publications made before products (no product) to its default product; returns how many
        (0 once done: cheap to call whenever a config opens the store)."""
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            return conn.execute(update(_P).where(_P.c.area == area, _P.c.product.is_(None))
                                .values(product=default_product)).rowcount

    def get(self, publication_id: int) -> Publication | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_P).where(_P.c.id == publication_id)).first()
        return Publication.from_row(row) if row else None

    def latest(self, area: str, product: str) -> Publication | None:
        """The highest version of the most recent week published for the area's product."""
        with self.engine.connect() as conn:
            row = conn.execute(select(_P).where(*_of(area, product))
                               .order_by(_P.c.week.desc(), _P.c.version.desc()).limit(1)).first()
        return Publication.from_row(row) if row else None

    def find(self, area: str, product: str, week: str, version: int | None = None) -> Publication | None:
        """A week's publication of the product: the given version, or the highest committed one."""
        query = select(_P).where(*_of(area, product), _P.c.week == week)
        query = query.where(_P.c.version == version) if version is not None else \
            query.order_by(_P.c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return Publication.from_row(row) if row else None

    def list(self, area: str, product: str, limit: int = 200) -> list[Publication]:
        """Publications of the area's product, newest week first, highest version first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_P).where(*_of(area, product))
                                .order_by(_P.c.week.desc(), _P.c.version.desc()).limit(limit)).all()
        return [Publication.from_row(r) for r in rows]

    def cells(self, publication_id: int) -> list[CellRecord]:
        """The cells of a committed publication, by rank."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_C).where(_C.c.publication_id == publication_id)
                                .order_by(_C.c.rank)).all()
        return [CellRecord(r.rank, r.cell_id, r.lon, r.lat, r.risk, r.percentile, r.geometry_json,
                           r.properties_json) for r in rows]


def _insert_publication(conn: Connection, area: str, product: str, week: str, metadata: dict[str, Any],
                        cells: Sequence[CellRecord], new_version: bool, published_by: str | None,
                        on_cells_written: Callable[[int], None] | None) -> int:
    """Insert a publication's header and cells inside the caller's open transaction; returns its id."""
    created = now_utc()
    header = {"area": area, "product": product, "week": week, "model_name": str(metadata["model"]),
              "model_version": str(metadata["model_version"]), "model_run_id": metadata.get("model_run_id"),
              "data_fingerprint": metadata.get("data_fingerprint"), "code_version": metadata.get("code_version"),
              "created_at": created, "published_by": published_by, "n_cells": len(cells)}
    current = conn.execute(select(func.max(_P.c.version)).where(*_of(area, product), _P.c.week == week)).scalar()
    if current is not None and not new_version:
        raise PublicationExists(area, week, int(current), product)
    version = int(current or 0) + 1
    meta = {**metadata, "created_at": created.isoformat().replace("+00:00", "Z"),
            "publication_version": version, "published_by": published_by}
    pid = conn.execute(insert(_P).values(**header, version=version,
                                         metadata_json=json.dumps(meta))).inserted_primary_key[0]
    for start in range(0, len(cells), CELL_CHUNK):
        chunk = cells[start:start + CELL_CHUNK]
        conn.execute(insert(_C), [{"publication_id": pid, **c.__dict__} for c in chunk])
        if on_cells_written is not None:
            on_cells_written(start + len(chunk))
    return pid


_ACCESS_COLUMNS = ("at", "key_id", "role", "method", "path", "status", "duration_ms")


def write_access_log(engine: Engine, entries: Iterable[dict]) -> int:
    """Append access-log rows in one transaction; returns how many."""
    entries = list(entries)
    if not entries:
        return 0
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        if engine.dialect.name == "sqlite":
            # thousands of rows a second under load: the driver's executemany holds the GIL far less than
            # SQLAlchemy's per-row parameter processing, which would stall the event loop in the meantime
            rows = [(e["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
                     *(e[c] for c in _ACCESS_COLUMNS[1:])) for e in entries]
            conn.exec_driver_sql(f"INSERT INTO access_log ({', '.join(_ACCESS_COLUMNS)}) VALUES "
                                 f"({', '.join('?' * len(_ACCESS_COLUMNS))})", rows)
        else:
            conn.execute(insert(AccessLogRow.__table__), entries)
    return len(entries)
