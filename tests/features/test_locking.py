"""Two writers of one file at once, with real processes: appends to the history keep every row of both files (the
second waits for the first), a lock held too long ends in a clear error and exit code 2, a writer killed mid-append
leaves the history whole and its temporary file is removed by the next one, and two exports leave one whole set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from hotspot.features import history
from hotspot.features.config import load_config
from hotspot.training import tracking
from tests.conftest import REPO_ROOT, synthetic_incidents, write_config

pytestmark = pytest.mark.slow

BASE_WEEKS = 22

# `hotspot` as a user runs it, with the history's temporary file made slow to be moved into place (TEST_SLEEP_S)
# and announced (TEST_MARKER gets its path) once it is complete: the window a second writer or a SIGKILL hits.
CLI = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import pyarrow.parquet as pq

    real_write = pq.write_table

    def write_table(table, where, *args, **kwargs):
        real_write(table, where, *args, **kwargs)
        if ".tmp" in Path(str(where)).name:
            if os.environ.get("TEST_MARKER"):
                Path(os.environ["TEST_MARKER"]).write_text(str(where))
            time.sleep(float(os.environ.get("TEST_SLEEP_S", "0")))

    pq.write_table = write_table
    from hotspot.cli import app
    sys.argv[0] = "hotspot"
    app()
""")

# Holds the history's lock (a `filelock` lock on `<history>.lock`) until its stdin is closed.
HOLD_RAW = textwrap.dedent("""
    import sys
    from filelock import FileLock
    with FileLock(sys.argv[1] + ".lock"):
        print("held", flush=True)
        sys.stdin.read()
""")

HOLD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hotspot.features.locking import locked
    with locked(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()
""")


def _env(**extra: str) -> dict[str, str]:
    # the checkout under test, not whichever one is installed, and no waiting past a test's own limits
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200", "HOTSPOT_LOCK_TIMEOUT_S": "120", **extra}


def _start(script: str, *args: str, log: Path, **env: str) -> subprocess.Popen:
    with log.with_suffix(".out").open("w") as out, log.with_suffix(".err").open("w") as err:
        return subprocess.Popen([sys.executable, "-c", script, *args], stdout=out, stderr=err, env=_env(**env),
                                cwd=log.parent)


@contextmanager
def _held(path: Path, script: str = HOLD_RAW) -> Iterator[subprocess.Popen]:
    """`path`'s lock held by another process (running `script`) for the block."""
    holder = subprocess.Popen([sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=_env(), text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0


def _wait_for(condition, timeout_s: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def _finish(proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> tuple[int, str, str]:
    rc = proc.wait(timeout=timeout_s)
    return rc, log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


def _temp_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*tmp*"))


@pytest.fixture
def study(tmp_path):
    """A history of 22 weeks and two files of the next two weeks (different rows) to append to it."""
    data = synthetic_incidents(n=1500, weeks=30, seed=3)
    week = ((pd.to_datetime(data["when"]) - pd.Timestamp("2020-01-06")) // pd.Timedelta(days=7)).to_numpy()
    config = write_config(tmp_path / "inc", data[week < BASE_WEEKS])
    cfg = load_config(config)
    built = history.build(cfg)
    # MLflow's store and the area's experiment exist before the writers start: two first runs at once race on
    # creating MLflow's SQLite schema, which is not what these tests are about
    tracking.configure(cfg)
    chunks = []
    for w in (BASE_WEEKS, BASE_WEEKS + 1):
        path = tmp_path / f"week{w}.csv"
        data[week == w].to_csv(path, index=False)
        chunks.append((path, int((week == w).sum())))
    return config, cfg, history.history_file(cfg), built.added, chunks


def _append_args(config: Path, chunk: Path) -> tuple[str, ...]:
    return "ingest", "--config", str(config), "--append", str(chunk), "--out", str(chunk.with_suffix(""))


def _stored_rows(cfg) -> int:
    return len(history.load(cfg)[0])


def test_an_append_waits_for_the_writer_holding_the_history(study, tmp_path):
    config, cfg, path, base, [(chunk, n), _] = study
    before = path.read_bytes()
    with _held(path):
        log = tmp_path / "append"
        proc = _start(CLI, *_append_args(config, chunk), log=log)
        _wait_for(lambda: "waiting for the lock" in log.with_suffix(".err").read_text() or proc.poll() is not None,
                  what="the append to wait or end")
        err = log.with_suffix(".err").read_text()
        assert proc.poll() is None, f"the append did not wait for the lock's holder: {err}"
        assert str(path) in err and "HOTSPOT_LOCK_TIMEOUT_S" in err
        time.sleep(1)
        assert proc.poll() is None and path.read_bytes() == before  # still waiting, nothing written
    rc, out, err = _finish(proc, log)
    assert rc == 0, err
    assert f"{n:,} rows added" in out
    assert _stored_rows(cfg) == base + n


def test_two_appends_at_once_keep_every_row_of_both_files(study, tmp_path):
    """Each writer pauses 3 s between writing its new history and moving it into place: without a lock both read
    the same stored rows and the later replace drops the earlier writer's."""
    config, cfg, path, base, chunks = study
    logs = [tmp_path / f"append{i}" for i in range(2)]
    procs = [_start(CLI, *_append_args(config, chunk), log=log, TEST_SLEEP_S="3")
             for (chunk, _), log in zip(chunks, logs)]
    results = [_finish(p, log) for p, log in zip(procs, logs)]
    for (rc, out, err), (_, n) in zip(results, chunks):
        assert rc == 0, err
        assert f"{n:,} rows added" in out
    assert _stored_rows(cfg) == base + sum(n for _, n in chunks)
    assert _temp_files(path) == []


def test_a_lock_held_too_long_ends_in_a_clear_error_and_exit_code_2(study, tmp_path):
    config, cfg, path, base, [(chunk, _), _] = study
    before = path.read_bytes()
    with _held(path):
        log = tmp_path / "append"
        rc, out, err = _finish(_start(CLI, *_append_args(config, chunk), log=log, HOTSPOT_LOCK_TIMEOUT_S="1"), log)
    assert rc == 2, (out, err)
    assert "Traceback" not in err
    message = " ".join(err.split())
    assert "error:" in message and f"{path}: gave up after 1 s" in message and "HOTSPOT_LOCK_TIMEOUT_S" in message
    assert path.read_bytes() == before


def test_the_timeout_message_names_the_holder(study, monkeypatch):
    from hotspot.features.locking import LockTimeout

    _, cfg, path, _, [(chunk, _), _] = study
    monkeypatch.setenv("HOTSPOT_LOCK_TIMEOUT_S", "0.5")
    with _held(path, HOLD) as holder:
        with pytest.raises(LockTimeout, match=f"holds its lock .*incidents.parquet.lock \\(pid {holder.pid} on "):
            history.append(cfg, chunk)


def test_a_writer_killed_mid_append_leaves_the_history_whole_and_the_next_removes_its_temp_file(study, tmp_path):
    config, cfg, path, base, [(chunk, n), _] = study
    before = path.read_bytes()
    marker = tmp_path / "temp_written"
    log = tmp_path / "killed"
    proc = _start(CLI, *_append_args(config, chunk), log=log, TEST_MARKER=str(marker), TEST_SLEEP_S="120")
    _wait_for(lambda: marker.exists() or proc.poll() is not None, what="the temporary history")
    assert marker.exists(), log.with_suffix(".err").read_text()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert path.read_bytes() == before  # the history is the one before the append
    leftover = Path(marker.read_text())
    assert leftover.exists() and _temp_files(path) == [leftover.name]
    # a temporary file of a writer still running (this test's process) is not the next writer's to remove
    live = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    live.write_bytes(b"being written")

    log = tmp_path / "next"
    rc, out, err = _finish(_start(CLI, *_append_args(config, chunk), log=log), log)
    assert rc == 0, err
    assert f"{n:,} rows added" in out  # the killed append stored nothing
    assert _stored_rows(cfg) == base + n
    assert _temp_files(path) == [live.name]


EXPORT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import geopandas as gpd
    from hotspot.analysis.exports import export_forecast

    writer, out = sys.argv[1], Path(sys.argv[2])
    if os.environ.get("TEST_SLEEP_S"):  # pause after the CSV is in place, before its .meta.json is written
        real_write_text = Path.write_text

        def write_text(self, text, *args, **kwargs):
            if ".meta.json" in self.name:
                Path(os.environ["TEST_MARKER"]).write_text("csv in place")
                time.sleep(float(os.environ["TEST_SLEEP_S"]))
            return real_write_text(self, text, *args, **kwargs)

        Path.write_text = write_text
    cells = gpd.GeoDataFrame({"cell_id": [1, 2], "writer": [writer, writer]},
                             geometry=gpd.points_from_xy([-79.40, -79.39], [43.65, 43.66]), crs="EPSG:4326")
    export_forecast(cells, out, "csv", {"writer": writer})
""")


def test_two_exports_at_once_leave_one_whole_set(tmp_path):
    out = tmp_path / "export" / "forecast.csv"
    marker = tmp_path / "csv_in_place"
    first_log, second_log = tmp_path / "first", tmp_path / "second"
    first = _start(EXPORT, "first", str(out), log=first_log, TEST_MARKER=str(marker), TEST_SLEEP_S="4")
    _wait_for(lambda: marker.exists() or first.poll() is not None, what="the first export's CSV")
    assert marker.exists(), first_log.with_suffix(".err").read_text()
    second = _start(EXPORT, "second", str(out), log=second_log)
    for proc, log in ((second, second_log), (first, first_log)):
        rc, _, err = _finish(proc, log)
        assert rc == 0, err
    csv_writer = set(pd.read_csv(out)["writer"])
    meta_writer = json.loads(out.with_name(out.name + ".meta.json").read_text())["writer"]
    assert csv_writer == {meta_writer} == {"second"}  # the later export's CSV with its own metadata
    assert not list(out.parent.glob(".*tmp*"))
