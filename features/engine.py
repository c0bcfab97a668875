"""Where the data and model steps run: `local` (this process, the default) or `dask` (a Dask cluster).

`--engine dask` (or `[engine] kind = "dask"`) with `--scheduler ADDRESS` connects to a running scheduler; without an
address the command starts a `distributed.LocalCluster` (`[engine]` workers, threads_per_worker, memory_limit,
processes) for its own run and says so, and closes it at the end. The steps ask `current()` for the client: None
means the local engine, which never imports Dask (the single-machine path stays as fast as it was).

What runs on the cluster (docs/scale-out.md): `validate` and `ingest` read Parquet sources by row groups, check
the rows by part and join them to the study area by chunks on the workers (features/partitioned.py); `features`
(and every command that builds the panel under `--engine dask`) builds the time-varying feature families by spatial
tiles with a halo on the workers (features/tiles.py); a backtest (`backtest`, `audit`, the promotion gate) runs each
model's refit blocks as tasks (training/rolling.py); `tune` runs its Optuna trials as tasks, one study shared through
its storage (training/tuning.py); a single LightGBM fit in the command's process (`train`) trains with LightGBM's
own Dask estimator (`lightgbm.dask`, data-parallel over the workers), converted to a local booster (`to_local()`)
before anything is registered or predicted, so every later step sees the same kind of model. A large panel
(`[engine] partitioned`) stays on disk as the workers wrote it, a Parquet file per tile (features/parts.py), and is
read by parts; a smaller one is put together in the command's process. The rest runs in the command's process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TypeVar

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError

ENGINES = ("local", "dask")
_client: ContextVar[object | None] = ContextVar("hotspot_dask_client", default=None)
_partition_rows: ContextVar[int] = ContextVar("hotspot_partition_rows", default=250_000)
_tile_cells: ContextVar[int] = ContextVar("hotspot_tile_cells", default=128)
_retries: ContextVar[tuple[int, float]] = ContextVar("hotspot_retries", default=(2, 120.0))
log = logging.getLogger(__name__)
T = TypeVar("T")


def current():
    """The Dask client of the engine in use, or None for the local engine."""
    return _client.get()


def partition_rows() -> int:
    """Rows per part of a partitioned read or check on the engine in use (`[engine] partition_rows`)."""
    return _partition_rows.get()


def tile_cells() -> int:
    """Rows and columns of raster cells per tile of the panel's build on the engine in use (`[engine] tile_cells`)."""
    return _tile_cells.get()


def chosen(cfg: StudyConfig, engine: str | None = None, scheduler: str | None = None) -> tuple[str, str | None]:
    """(engine, scheduler address) from the flags, else `[engine]`; a scheduler address implies dask."""
    kind = (engine or ("dask" if scheduler else cfg.engine.kind)).strip().lower()
    if kind not in ENGINES:
        raise HotspotError(f"--engine: expected one of {list(ENGINES)}, got {engine!r}")
    address = scheduler or cfg.engine.scheduler
    if kind == "local" and scheduler:
        raise HotspotError("--scheduler goes with --engine dask (the local engine runs in this process)")
    return kind, (address if kind == "dask" else None)


@contextlib.contextmanager
def engine(cfg: StudyConfig, engine: str | None = None, scheduler: str | None = None,
           say: Callable[[str], None] = print) -> Iterator[object | None]:
    """Run the body on the chosen engine: yields the Dask client (None for local) and makes it `current()`."""
    kind, address = chosen(cfg, engine, scheduler)
    if kind == "local":
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise HotspotError("--engine dask needs Dask: pip install 'hotspot[dask]' (dask and distributed)") from None
    ec = cfg.engine
    cluster = None
    if address:
        try:
            client = Client(address, timeout=f"{ec.connect_timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise HotspotError(f"--scheduler {address}: cannot reach the Dask scheduler ({exc})") from None
        say(f"engine: dask, scheduler {address} ({len(client.scheduler_info()['workers'])} workers)")
    else:
        cluster = LocalCluster(n_workers=ec.workers, threads_per_worker=ec.threads_per_worker,
                               memory_limit=ec.memory_limit, processes=ec.processes, dashboard_address=None)
        client = Client(cluster)
        say(f"engine: dask, started a LocalCluster of {ec.workers} worker {'processes' if ec.processes else 'threads'}"
            f" x {ec.threads_per_worker} thread(s), memory limit {ec.memory_limit} each (give --scheduler ADDRESS to "
            "use a running cluster)")
    token, rows, tile = _client.set(client), _partition_rows.set(ec.partition_rows), _tile_cells.set(ec.tile_cells)
    retry = _retries.set((ec.retries, ec.wait_for_workers_s))
    try:
        yield client
    finally:
        _client.reset(token)
        _partition_rows.reset(rows)
        _tile_cells.reset(tile)
        _retries.reset(retry)
        client.close()
        if cluster is not None:
            cluster.close()


def retries() -> int:
    """Times a tile or a fit is run again after the cluster loses a worker (`[engine] retries`)."""
    return _retries.get()[0]


def lost_worker(exc: BaseException) -> bool:
    """True for the errors a lost worker causes: its running tasks or its scattered data gone (Dask cancels what
    depended on them), a task that killed workers again and again, a connection closed, or LightGBM's socket to a
    peer reset. Those are retried; an error raised by the work's own code is not."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    if isinstance(exc, FutureCancelledError | KilledWorker | CommClosedError):
        return True
    return type(exc).__name__ == "LightGBMError" and "socket" in str(exc).lower()


def await_workers(client, n: int, what: str, attempt: int) -> None:
    """Log the loss and wait (up to `[engine] wait_for_workers_s`) until the cluster has `n` workers again (a
    LocalCluster's nanny restarts a killed worker; a scheduler's deployment replaces one)."""
    wait = _retries.get()[1]
    log.warning("%s: a worker of the cluster was lost; running it again (retry %d of %d) once %d worker(s) are "
                "back", what, attempt, retries(), n)
    try:
        client.wait_for_workers(n, timeout=wait)
    except TimeoutError:
        log.warning("%s: %d worker(s) still missing after %.0f s; going on with %d", what,
                    n - len(client.scheduler_info()["workers"]), wait, len(client.scheduler_info()["workers"]))


def restart_stuck(client, prefix: str, grace_s: float = 10.0) -> list[str]:
    """Restart the workers still running a task whose key starts with `prefix` `grace_s` seconds after a failure
    (a part of a collective LightGBM fit whose peer was lost can wait for it until LightGBM's own `time_out`, two
    hours by default, holding the worker's thread). Returns their addresses."""
    import time

    deadline = time.monotonic() + grace_s
    while True:
        stuck = [a for a, keys in client.processing().items() if any(str(k).startswith(prefix) for k in keys)]
        if not stuck or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    if stuck:
        log.warning("restarting worker(s) %s: still running %s of the failed attempt", ", ".join(stuck), prefix)
        client.restart_workers(stuck, timeout=_retries.get()[1], raise_for_error=False)
    return stuck


@contextlib.contextmanager
def unblocking(client, prefix: str, poll_s: float = 0.5) -> Iterator[None]:
    """While the body runs, watch the cluster: once a worker it started with is gone, restart the workers still
    running tasks whose key starts with `prefix` (`restart_stuck`). A collective LightGBM fit needs this: its parts
    wait for each other, so the survivors of a lost peer can block the fit (and the gather of its results) instead
    of failing; restarted, they fail and the fit can be retried."""
    import threading

    start = set(client.scheduler_info()["workers"])
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            try:
                if start - set(client.scheduler_info()["workers"]):
                    restart_stuck(client, prefix)
                    return
            except Exception:  # noqa: BLE001 - the client is closing; the body reports its own errors
                return

    thread = threading.Thread(target=watch, daemon=True, name="hotspot-unblocking")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def retrying(client, what: str, run: Callable[[], T], before_retry: Callable[[], object] | None = None) -> T:
    """`run()`, run again after the cluster loses a worker, up to `[engine] retries` times, each once the cluster
    has its workers back (`await_workers`; `before_retry` first, e.g. `restart_stuck`). Dask re-runs a lost task by
    itself only while its inputs survive; data scattered to the lost worker does not, so the whole `run` (its
    scatter included) is what is retried."""
    n = len(client.scheduler_info()["workers"])
    for attempt in range(retries() + 1):
        try:
            return run()
        except Exception as exc:  # noqa: BLE001 - only a lost worker's errors are retried; the rest re-raised
            if not lost_worker(exc):
                raise
            if attempt == retries():
                raise HotspotError(f"{what}: the cluster lost a worker {attempt + 1} time(s) in a row "
                                   f"([engine] retries = {retries()}): {str(exc).splitlines()[0]}") from exc
            if before_retry is not None:
                before_retry()
            await_workers(client, n, what, attempt + 1)
    raise AssertionError("unreachable")


def trim_workers(client) -> None:
    """Give the memory the workers freed back to the system (Arrow's pool, and glibc's malloc_trim as Dask's guide
    to unmanaged memory advises): after the panel's tiles, a worker's heap keeps its peak, which would count
    against its memory limit (spilling, pausing) in the steps after (measured on the ten-times region: 2.6 GB
    held, 0.28 GB after). Nothing where the C library has no malloc_trim."""
    def trim() -> int:
        import ctypes
        import sys

        if "pyarrow" in sys.modules:  # Arrow's own allocator keeps what the Parquet writes and reads freed
            sys.modules["pyarrow"].default_memory_pool().release_unused()
        try:
            return int(ctypes.CDLL("libc.so.6").malloc_trim(0))
        except (OSError, AttributeError):
            return 0

    try:
        client.run(trim)
    except Exception as exc:  # noqa: BLE001 - an optimisation: a worker that cannot answer keeps its heap
        log.debug("malloc_trim on the workers failed: %s", exc)


def worker_memory(client) -> dict[str, int]:
    """Peak resident memory of each worker process so far (bytes), by worker address, for the benchmarks."""
    def peak() -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return {addr: int(v) for addr, v in client.run(peak).items()}
