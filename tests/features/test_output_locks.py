"""Every set of files a step writes into its output folder (the panel and its schema, the backtest with its accuracy
report and figures, the audit, trends, tuning results, intervention estimate) is written under that set's lock, each
file replaced whole: a second writer waits for the first, a lock held too long ends in a clear error (exit 2 from
the command line) with what was there before untouched, and a killed writer's temporary files are removed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hotspot.features.locking import LockTimeout, savefig_atomically, temp_file, write_text_atomically
from tests.conftest import REPO_ROOT, SAMPLE_CONFIG, run_cli


@contextmanager
def held(path: Path) -> Iterator[None]:
    """`path`'s lock held by another process for the block (a lock is reentrant within one process)."""
    hold = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO_ROOT)
    try:
        assert hold.stdout.readline().strip() == "held"
        yield
    finally:
        hold.stdin.close()
        hold.wait(30)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_panel_and_schema_wait_for_their_lock(sample_prepared, tmp_path, monkeypatch):
    from hotspot.features.panel import write_panel

    _, _, panel = sample_prepared
    out = tmp_path / "features"
    parquet, schema = write_panel(panel, out)
    before = (parquet.read_bytes(), schema.read_bytes())
    monkeypatch.setenv("HOTSPOT_LOCK_TIMEOUT_S", "0.3")
    with held(parquet):
        with pytest.raises(LockTimeout, match=r"panel\.parquet.*writing the panel.*panel\.parquet\.lock"):
            write_panel(panel, out)
        assert (parquet.read_bytes(), schema.read_bytes()) == before
    leftover = out / f".panel.parquet.{dead_pid()}.tmp.parquet"
    leftover.write_bytes(b"half a parquet file")
    write_panel(panel, out)
    assert not leftover.exists()
    assert sorted(p.name for p in out.iterdir()) == ["panel.parquet", "panel.parquet.lock", "panel_schema.json"]


def test_figures_and_texts_are_replaced_whole(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = tmp_path / "plot.png"
    leftover = tmp_path / f".plot.png.{dead_pid()}.tmp.png"
    leftover.write_bytes(b"\x89PNG half")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    savefig_atomically(fig, png, dpi=50)
    plt.close(fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not leftover.exists() and not temp_file(png).exists()

    text = tmp_path / "report.json"
    write_text_atomically(text, '{"a": 1}')
    with pytest.raises(ValueError):  # a failed write leaves the old file and no temporary one
        replace_with_failure(text)
    assert text.read_text() == '{"a": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "report.json"]


def replace_with_failure(path):
    from hotspot.features.locking import replace_atomically

    def write(tmp):
        tmp.write_text('{"a": ')
        raise ValueError("disk full")

    replace_atomically(path, write)


@pytest.mark.slow
def test_backtest_waits_for_the_report_lock_and_leaves_the_old_report(tmp_path):
    """`hotspot backtest` into a folder whose accuracy report another process is writing: exit 2 with the lock and
    what to do, the report there before untouched; run again once the lock is free, a whole new set."""
    out = tmp_path / "backtest"
    args = ("backtest", "--config", str(SAMPLE_CONFIG), "--weeks", "1", "--model", "naive_4w", "--out", str(out))
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = out / "accuracy.json"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with held(report):
        blocked = run_cli(*args, cwd=tmp_path, env={"HOTSPOT_LOCK_TIMEOUT_S": "1"})
    assert blocked.returncode == 2, blocked.stderr
    assert "waiting for the lock on" in blocked.stderr and "accuracy.json.lock" in blocked.stderr
    assert "Let it finish and run this again" in blocked.stderr
    for name in ("accuracy.json", "accuracy.html", "report_hit_rate_curve.png", "metrics.json",
                 "predictions.parquet"):
        assert (out / name).read_bytes() == before[name], name
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


# Holds `<path>.lock` through features.locking (so the holder is recorded) until stdin is closed.
HOLD = """
import sys
from pathlib import Path
from hotspot.features.locking import locked
with locked(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""
