"""Locks and atomic replacement for files that two processes may write at once (the incident history, exports,
the panel, every report, plot and table a step writes into its output folder).

A writer holds `<file>.lock` (a `filelock` lock beside the file) for its whole read-modify-write, so a second
`hotspot ingest --append` waits for the first instead of replacing the history with rows that miss the first one's.
The holder writes who it is into the lock file, so a waiter can say whom it waits for. A file is only ever replaced
whole (temporary file + os.replace); temporary files left by a killed writer are removed by the next one.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hotspot.features.errors import HotspotError

TIMEOUT_ENV = "HOTSPOT_LOCK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


class LockTimeout(HotspotError):
    """Another process held a file's lock for longer than the lock timeout."""


def lock_file(path: Path) -> Path:
    """The lock file beside `path` (its name plus ".lock")."""
    return path.with_name(path.name + ".lock")


def lock_timeout_s(timeout_s: float | None = None) -> float:
    """`timeout_s` if given, else HOTSPOT_LOCK_TIMEOUT_S, else 600 s."""
    if timeout_s is not None:
        return float(timeout_s)
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise HotspotError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds >= 0")
    return value


def holder(path: Path) -> str | None:
    """Who holds (or last held) the lock of `path`, as the holder recorded it; None when unknown."""
    try:
        record = json.loads(lock_file(path).read_text())
        return f"pid {record['pid']} on {record['host']} since {record['since']} (`{record['command']}`)"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_holder(fd: int) -> None:
    # the program and its command only (`hotspot ingest`): the lock file sits beside exports handed to partners
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]) if sys.argv and sys.argv[0] else "python"
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S%z"),
              "command": command}
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


@contextmanager
def locked(path: Path, timeout_s: float | None = None, what: str = "") -> Iterator[None]:
    """Hold the lock of `path` for the block, waiting up to `timeout_s` (default: `lock_timeout_s()`) for another
    process to release it; says on stderr that it waits, and raises LockTimeout naming the file and the holder.

    what: the step that wants to write, for the message ("appending week.csv")."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    limit = lock_timeout_s(timeout_s)
    # one lock object per file in this process (is_singleton), so a step that holds its output set's lock can call
    # writers that take the same lock (reentrant) instead of waiting for itself
    lock = FileLock(lock_file(path), is_singleton=True, on_acquired=_record_holder)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        by = holder(path)
        print(f"waiting for the lock on {path}{f' held by {by}' if by else ''} (up to {limit:g} s, {TIMEOUT_ENV})",
              file=sys.stderr, flush=True)
        try:
            lock.acquire(timeout=limit)
        except Timeout:
            by = holder(path)
            raise LockTimeout(
                f"{path}: gave up after {limit:g} s waiting to start {what or 'writing it'}: another process holds "
                f"its lock {lock_file(path)} ({by or 'holder unknown'}). Let it finish and run this again, or set "
                f"{TIMEOUT_ENV} to wait longer") from None
    try:
        yield
    finally:
        lock.release()


def temp_file(path: Path) -> Path:
    """This process's temporary name for `path` (hidden, beside it, keeping its suffix for format detection)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporary files of `path` that writers killed mid-write left behind (their process is gone);
    returns what was removed."""
    if not path.parent.is_dir():
        return []
    pattern = re.compile(r"\." + re.escape(path.name) + r"\.(\d+)\.tmp")
    removed = []
    for candidate in path.parent.iterdir():
        found = pattern.match(candidate.name)
        if found and int(found.group(1)) != os.getpid() and not _pid_alive(int(found.group(1))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def replace_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` to a temporary file beside `path`, then move it into place: a reader (or a crash) sees the old
    file or the new one, never half of one. Leftovers of killed writers of `path` are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = temp_file(path)
    tmp.unlink(missing_ok=True)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    """`path` replaced whole by `text` (UTF-8)."""
    return replace_atomically(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def savefig_atomically(fig, path: Path, **kwargs) -> Path:
    """A matplotlib figure saved to `path` whole (the format from `path`'s suffix, as savefig would take it)."""
    path = Path(path)
    return replace_atomically(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **kwargs))
