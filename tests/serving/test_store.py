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
    first = store.publish("area", WEEK, forecast_metadata(), make_cells(50))
    assert (first.week, first.version, first.n_cells) == (WEEK, 1, 50)
    assert first.metadata["created_at"].endswith("Z") and first.metadata["publication_version"] == 1

    with pytest.raises(PublicationExists, match="already published.*new_version"):
        store.publish("area", WEEK, forecast_metadata(model_version="2"), make_cells(50, seed=1))
    assert _counts(store) == (1, 50)  # the refused publication left nothing behind

    second = store.publish("area", WEEK, forecast_metadata(model_version="2"), make_cells(60, seed=1),
                           new_version=True, published_by="hs_analyst1")
    assert second.version == 2 and second.published_by == "hs_analyst1"
    assert store.latest("area").id == second.id
    assert store.find("area", WEEK).id == second.id  # readers get the highest committed version
    assert store.find("area", WEEK, version=1).model_version == "1"  # the old version is still there, unchanged
    assert [c.rank for c in store.cells(first.id)] == list(range(1, 51))
    assert store.latest("other-area") is None


def test_latest_is_the_most_recent_week(store):
    store.publish("area", "2021-07-26", forecast_metadata("2021-07-26"), make_cells(5))
    store.publish("area", WEEK, forecast_metadata(WEEK), make_cells(5))  # an older week published later
    assert store.latest("area").week == "2021-07-26"
    assert [p.week for p in store.list("area")] == ["2021-07-26", WEEK]


def test_readers_never_see_part_of_a_publication(store):
    """A reader polling while a large publication is written sees the old one or the whole new one."""
    store.publish("area", WEEK, forecast_metadata(), make_cells(100))
    seen: list[tuple[int, int, int]] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            pub = store.latest("area")
            seen.append((pub.version, pub.n_cells, len(store.cells(pub.id))))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        store.publish("area", WEEK, forecast_metadata(), make_cells(6000, seed=2), new_version=True,
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
    store.publish("area", "2021-07-19", forecast_metadata(model_version="2"), make_cells(5000, seed=3),
                  new_version=True, on_cells_written=hang)
    print("COMMITTED", flush=True)
""")


def test_a_publisher_killed_mid_transaction_leaves_the_previous_state(store, database_url):
    previous = store.publish("area", WEEK, forecast_metadata(), make_cells(100))
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, database_url], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("WROTE"), proc.stderr.read()
        # the header row and 2,000 cell rows are written, not committed: readers still see the old state
        assert store.latest("area").id == previous.id
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
    latest = store.latest("area")
    assert (latest.id, latest.version) == (previous.id, 1)
    assert len(store.cells(previous.id)) == 100

    # the database is usable: the killed version's number is free again
    again = store.publish("area", WEEK, forecast_metadata(model_version="2"), make_cells(10), new_version=True)
    assert again.version == 2 and store.latest("area").id == again.id


def test_concurrent_publishers_of_one_week_get_one_version_each_or_a_conflict(store):
    store.publish("area", WEEK, forecast_metadata(), make_cells(10))
    outcomes: list[object] = []

    def publish():
        try:
            published = store.publish("area", WEEK, forecast_metadata(), make_cells(2000), new_version=True)
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
    assert store.find("area", WEEK).version == max(versions)
