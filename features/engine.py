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
before anything is registered or predicted, so every later step sees the same kind of model. The rest
runs in the command's process, which still holds the whole panel once the tiles are put together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError

ENGINES = ("local", "dask")
_client: ContextVar[object | None] = ContextVar("hotspot_dask_client", default=None)
_partition_rows: ContextVar[int] = ContextVar("hotspot_partition_rows", default=250_000)
_tile_cells: ContextVar[int] = ContextVar("hotspot_tile_cells", default=128)


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
    try:
        yield client
    finally:
        _client.reset(token)
        _partition_rows.reset(rows)
        _tile_cells.reset(tile)
        client.close()
        if cluster is not None:
            cluster.close()


def worker_memory(client) -> dict[str, int]:
    """Peak resident memory of each worker process so far (bytes), by worker address, for the benchmarks."""
    def peak() -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return {addr: int(v) for addr, v in client.run(peak).items()}
