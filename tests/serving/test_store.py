"""The publication store: immutable, versioned, atomic (readers see old or new, never part; a killed publisher leaves
the previous state), on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sqlalchemy import func, select

from hotspot.serving.db import (
    PublicationCellRow,
    PublicationExists,
    PublicationRow,
    PublicationStore,
    create_schema,
    make_engine,
)
from tests.conftest import REPO_ROOT
from tests.serving.conftest import forecast_metadata, make_cells

WEEK = "2021-07-19"


@pytest.fixture
def store(database_url):
    engine = make_engine(database_url)
    create_schema(engine)
    yield PublicationStore(engine)
    engine.dispose()


def _counts(store: PublicationStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(PublicationRow)).scalar(),
                conn.execute(select(func.count()).select_from(PublicationCellRow)).scalar())


def test_publishing_a_week_again_needs_a_new_version(store):
    first = store.publish("area", "all", WEEK, forecast_metadata(), make_cells(50))
    assert (first.week, first.version, first.n_cells) == (WEEK, 1, 50)
    assert first.metadata["created_at"].endswith("Z") and first.metadata["publication_version"] == 1

    with pytest.raises(PublicationExists, match="already published.*new_version"):
        store.publish("area", "all", WEEK, forecast_metadata(model_version="2"), make_cells(50, seed=1))
    assert _counts(store) == (1, 50)  # the refused publication left nothing behind

    second = store.publish("area", "all", WEEK, forecast_metadata(model_version="2"), make_cells(60, seed=1),
                           new_version=True, published_by="hs_analyst1")
    assert second.version == 2 and second.published_by == "hs_analyst1"
    assert store.latest("area", "all").id == second.id
    assert store.find("area", "all", WEEK).id == second.id  # readers get the highest committed version
    assert store.find("area", "all", WEEK, version=1).model_version == "1"  # the old version is still there, unchanged
    assert [c.rank for c in store.cells(first.id)] == list(range(1, 51))
    assert store.latest("other-area", "all") is None


def test_latest_is_the_most_recent_week(store):
    store.publish("area", "all", "2021-07-26", forecast_metadata("2021-07-26"), make_cells(5))
    store.publish("area", "all", WEEK, forecast_metadata(WEEK), make_cells(5))  # an older week published later
    assert store.latest("area", "all").week == "2021-07-26"
    assert [p.week for p in store.list("area", "all")] == ["2021-07-26", WEEK]


def test_readers_never_see_part_of_a_publication(store):
    """A reader polling while a large publication is written sees the old one or the whole new one."""
    store.publish("area", "all", WEEK, forecast_metadata(), make_cells(100))
    seen: list[tuple[int, int, int]] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            pub = store.latest("area", "all")
            seen.append((pub.version, pub.n_cells, len(store.cells(pub.id))))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        store.publish("area", "all", WEEK, forecast_metadata(), make_cells(6000, seed=2), new_version=True,
                      on_cells_written=lambda n: time.sleep(0.2))  # slow, chunked writes
        deadline = time.monotonic() + 10  # let the reader see the committed version (it is slow on a busy machine)
        while not any(v == 2 for v, _, _ in seen[-50:]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(10)
    assert {v for v, _, _ in seen} == {1, 2}, "the reader should have seen both the old and the new version"
    assert all(n == stored for _, n, stored in seen)
    assert {n for v, n, _ in seen if v == 1} == {100} and {n for v, n, _ in seen if v == 2} == {6000}


PUBLISHER = textwrap.dedent("""
    import sys, time
    from hotspot.serving.db import PublicationStore, make_engine
    from tests.serving.conftest import forecast_metadata, make_cells

    store = PublicationStore(make_engine(sys.argv[1]))
    def hang(n):
        print(f"WROTE {n}", flush=True)
        time.sleep(120)
    store.publish("area", "all", "2021-07-19", forecast_metadata(model_version="2"), make_cells(5000, seed=3),
                  new_version=True, on_cells_written=hang)
    print("COMMITTED", flush=True)
""")


def test_a_publisher_killed_mid_transaction_leaves_the_previous_state(store, database_url):
    previous = store.publish("area", "all", WEEK, forecast_metadata(), make_cells(100))
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, database_url], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("WROTE"), proc.stderr.read()
        # the header row and 2,000 cell rows are written, not committed: readers still see the old state
        assert store.latest("area", "all").id == previous.id
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    deadline = time.monotonic() + 10  # PostgreSQL notices the dead client's closed socket almost at once
    while _counts(store) != (1, 100) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _counts(store) == (1, 100)
    latest = store.latest("area", "all")
    assert (latest.id, latest.version) == (previous.id, 1)
    assert len(store.cells(previous.id)) == 100

    # the database is usable: the killed version's number is free again
    again = store.publish("area", "all", WEEK, forecast_metadata(model_version="2"), make_cells(10), new_version=True)
    assert again.version == 2 and store.latest("area", "all").id == again.id


def test_concurrent_publishers_of_one_week_get_one_version_each_or_a_conflict(store):
    store.publish("area", "all", WEEK, forecast_metadata(), make_cells(10))
    outcomes: list[object] = []

    def publish():
        try:
            published = store.publish("area", "all", WEEK, forecast_metadata(), make_cells(2000), new_version=True)
            outcomes.append(published.version)
        except PublicationExists as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    versions = sorted(v for v in outcomes if isinstance(v, int))
    assert len(outcomes) == 3 and versions and versions == list(range(2, 2 + len(versions)))
    assert store.find("area", "all", WEEK).version == max(versions)


def test_each_product_has_its_own_versions_of_a_week(store):
    assault = store.publish("area", "assault", WEEK, forecast_metadata(), make_cells(5))
    burglary = store.publish("area", "break-and-enter", WEEK, forecast_metadata(), make_cells(7, seed=1))
    assert (assault.version, burglary.version) == (1, 1) and (assault.product, burglary.product) == (
        "assault", "break-and-enter")
    with pytest.raises(PublicationExists, match="already published .version 1."):
        store.publish("area", "assault", WEEK, forecast_metadata(), make_cells(5))
    assert store.latest("area", "break-and-enter").n_cells == 7
    assert [p.product for p in store.list("area", "assault")] == ["assault"]
    assert store.find("area", "all", WEEK) is None and store.latest("area", "all") is None


# a publications table as the store made it before products (its DDL then, on both databases)
OLD_PUBLICATIONS = """
CREATE TABLE publications (
    id {id_type} NOT NULL, area VARCHAR(100) NOT NULL, week VARCHAR(10) NOT NULL, version INTEGER NOT NULL,
    model_name VARCHAR(200) NOT NULL, model_version VARCHAR(50) NOT NULL, model_run_id VARCHAR(64),
    data_fingerprint VARCHAR(128), code_version VARCHAR(100), created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    published_by VARCHAR(32), n_cells INTEGER NOT NULL, metadata_json TEXT NOT NULL,
    PRIMARY KEY (id), CONSTRAINT uq_publication_area_week_version UNIQUE (area, week, version))
"""


def test_a_store_made_before_products_is_upgraded_and_its_rows_go_to_the_default_product(database_url):
    """Old rows keep their cells and versions and belong to the area's default product; other products can then
    publish the same week as their version 1."""
    from sqlalchemy import text

    engine = make_engine(database_url)
    with engine.begin() as conn:
        id_type = "INTEGER" if engine.dialect.name == "sqlite" else "SERIAL"
        conn.execute(text(OLD_PUBLICATIONS.format(id_type=id_type)))
        conn.execute(text("CREATE INDEX ix_publications_area_week ON publications (area, week)"))
    PublicationRow.metadata.tables["publication_cells"].create(engine)
    old = PublicationStore(engine)
    with engine.begin() as conn:  # two versions of a week, as the old store wrote them
        for version in (1, 2):
            conn.execute(text("INSERT INTO publications (area, week, version, model_name, model_version, created_at, "
                              "n_cells, metadata_json) VALUES ('area', :week, :v, 'm', :v, :at, 3, '{}')"),
                         {"week": WEEK, "v": version, "at": "2021-07-20 10:00:00"})
    with engine.begin() as conn:
        pid = conn.execute(text("SELECT id FROM publications WHERE version = 2")).scalar()
    with engine.begin() as conn:
        conn.execute(PublicationCellRow.__table__.insert(), [
            {"publication_id": pid, **c.__dict__} for c in make_cells(3)])

    create_schema(engine)
    create_schema(engine)  # upgrading twice changes nothing
    assert old.latest("area", "all") is None  # not claimed yet: no product
    assert old.claim_unlabelled("area", "all") == 2 and old.claim_unlabelled("area", "all") == 0
    latest = old.latest("area", "all")
    assert (latest.week, latest.version, latest.product) == (WEEK, 2, "all")
    assert [c.rank for c in old.cells(latest.id)] == [1, 2, 3]
    with pytest.raises(PublicationExists, match="version 2"):
        old.publish("area", "all", WEEK, forecast_metadata(), make_cells(3))
    assert old.publish("area", "all", WEEK, forecast_metadata(), make_cells(3), new_version=True).version == 3
    assert old.publish("area", "assault", WEEK, forecast_metadata(), make_cells(3)).version == 1
    with engine.connect() as conn:  # the cells still refer to their publications (foreign keys back on)
        assert conn.execute(select(func.count()).select_from(PublicationCellRow)).scalar() == 9
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert not conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    engine.dispose()


def test_a_cycle_is_stored_whole_or_not_at_all(store):
    """commit_cycle: the week's publications, the live scores (one refers to a publication of the same transaction
    by product and week) and the cycle record in one transaction; a failure inside it, or a week already published,
    leaves nothing."""
    from hotspot.serving.db import LiveScore, PendingPublication, now_utc

    earlier = store.publish("test", "all", "2021-07-12", forecast_metadata("2021-07-12"), make_cells(20))
    pending = [PendingPublication("all", WEEK, forecast_metadata(WEEK), make_cells(20, week=WEEK))]
    scores = [LiveScore(earlier.id, "all", "2021-07-12", "published", 30, {"pai@1%": 12.5}),
              LiveScore(earlier.id, "all", "2021-07-12", "naive_4w", 30, {"pai@1%": 10.0})]
    record = {"week": WEEK, "status": "done", "started_at": now_utc(), "data_fingerprint": "fp1",
              "report": {"sentence": "the week"}}
    before = _counts(store)

    def boom(step: str) -> None:
        if step == "cycle":
            raise RuntimeError("killed inside the transaction")

    with pytest.raises(RuntimeError):
        store.commit_cycle("test", pending, scores, record, on_step=boom)
    assert _counts(store) == before and store.live_scores("test", "all") == [] and store.cycles("test") == []

    pubs, cycle_id = store.commit_cycle("test", pending, scores, record)
    assert [p.week for p in pubs] == [WEEK] and pubs[0].version == 1 and len(store.cells(pubs[0].id)) == 20
    assert {(s.week, s.model) for s in store.live_scores("test", "all")} == {("2021-07-12", "published"),
                                                                           ("2021-07-12", "naive_4w")}
    (cycle,) = store.cycles("test")
    assert cycle["id"] == cycle_id and cycle["data_fingerprint"] == "fp1" and cycle["report"]["sentence"] == "the week"

    # late records: the week scored again; the newest score is current, both are kept
    rescored = [LiveScore(earlier.id, "all", "2021-07-12", "published", 34, {"pai@1%": 11.0})]
    store.commit_cycle("test", [], rescored, {**record, "data_fingerprint": "fp2"})
    current = {s.model: s for s in store.live_scores("test", "all")}
    assert current["published"].observed_total == 34 and current["naive_4w"].observed_total == 30
    assert [s.observed_total for s in store.live_scores("test", "all", current=False)
            if s.model == "published"] == [30, 34]

    # the same week again: refused, nothing written
    after = (_counts(store), len(store.live_scores("test", "all", current=False)), len(store.cycles("test")))
    with pytest.raises(PublicationExists):
        store.commit_cycle("test", pending, scores, record)
    assert (_counts(store), len(store.live_scores("test", "all", current=False)), len(store.cycles("test"))) == after
