"""The panel's features built by spatial tiles on the Dask engine (features/engine.py), identical to the local build.

The raster of the grid is cut into square tiles of `[engine] tile_cells` rows and columns (halved while there are
fewer than 3 tiles per worker, down to 4 halos: `balanced_size`). Each worker builds every
time-varying family (features.families) for one tile and a halo of cells around it, wide enough for the widest
spatial operation of the config (ring sums, the Gaussian kernel's truncation at 3 bandwidths, the inverse-distance
sums, the near-repeat neighbours), and returns the tile's own cells: every value depends only on cells within that
reach, and scipy computes each output from the same inputs in the same order, so the result is bit-identical to the
whole-grid build (tests/test_engine.py checks every value on the sample, `benchmarks/scale.py` on full Toronto).
The static families (the calendar, one value per period; the context layers, whose kernel densities read every
point of a layer) are built once for the whole grid in the command's process, as they are small.

The workers see only their tile's counts and incidents; the command's process still puts the tiles together into
the one panel the later steps read, so it holds the whole panel (the next step of issue 18 keeps it partitioned).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from hotspot.features.build import Built, build_features
from hotspot.features.registry import BuildContext

GLOBAL_FAMILIES = ("calendar", "context")  # built once, in the command's process (see the module docstring)


def halo_cells(ctx: BuildContext) -> int:
    """Cells of halo around a tile: the reach of the widest spatial operation the features make."""
    fc = ctx.cfg.features
    sigma = max(fc.kernel_bandwidths_m, default=0.0) / ctx.grid.cell_size_m
    # scipy.ndimage.gaussian_filter reaches int(truncate * sigma + 0.5) cells (truncate = 3, features.spatial);
    # distance_weighted_sums 3 cells; near_repeat 1 ring
    return max([1, 3, *fc.rings, int(3.0 * sigma + 0.5)])


def tiles(ctx: BuildContext, size: int) -> list[tuple[int, int, int, int]]:
    """The tiles' raster windows (row0, row1, col0, col1) that hold at least one cell of the area."""
    grid = ctx.grid
    occupied = np.zeros((grid.n_rows, grid.n_cols), dtype=bool)
    occupied[grid.row, grid.col] = True
    out = []
    for r in range(0, grid.n_rows, size):
        for c in range(0, grid.n_cols, size):
            if occupied[r:r + size, c:c + size].any():
                out.append((r, min(r + size, grid.n_rows), c, min(c + size, grid.n_cols)))
    return out


def balanced_size(ctx: BuildContext, size: int, workers: int, halo: int) -> int:
    """The tile size to build with: `size` halved while there are fewer than 3 tiles per worker (one large tile
    would leave the other workers idle), but never below 4 halos (each tile's halo is built too, so small tiles
    repeat much of the work)."""
    while len(tiles(ctx, size)) < 3 * workers and size // 2 >= 4 * halo:
        size //= 2
    return size


def _tile_context(ctx: BuildContext, window: tuple[int, int, int, int], halo: int):
    """The build context of one tile with its halo, and the positions of the tile's own cells in it and in the
    whole grid."""
    r0, r1, c0, c1 = window
    sub, keep = ctx.grid.window(r0 - halo, r1 + halo, c0 - halo, c1 + halo)
    own = (ctx.grid.row[keep] >= r0) & (ctx.grid.row[keep] < r1) & (ctx.grid.col[keep] >= c0) & (
        ctx.grid.col[keep] < c1)
    local = np.full(ctx.grid.n_cells, -1, dtype=np.int64)
    local[keep] = np.arange(len(keep))
    inc = ctx.incidents
    at = local[inc["cell"].to_numpy()]
    incidents = inc.loc[at >= 0].assign(cell=at[at >= 0].astype(inc["cell"].dtype))
    tile = BuildContext(cfg=ctx.cfg, grid=sub, period_starts=ctx.period_starts, groups=ctx.groups,
                        counts=np.ascontiguousarray(ctx.counts[:, keep]),
                        target=np.ascontiguousarray(ctx.target[:, keep]), incidents=incidents)
    return tile, np.flatnonzero(own), keep[own]


def _build_tile(tile: BuildContext, own: np.ndarray, chosen: list[str]) -> Built:
    built = build_features(tile, chosen)
    built.X = np.ascontiguousarray(built.X[:, own])
    return built


def build_tiled(client, ctx: BuildContext, chosen: list[str],
                on_family: Callable[[str, int, int], None] | None = None, size: int | None = None) -> Built:
    """`build_features(ctx, chosen)`, by tiles on the cluster's workers (see the module docstring)."""
    from distributed import as_completed

    from hotspot.features.engine import await_workers, lost_worker, retries, retrying, tile_cells

    halo = halo_cells(ctx)
    workers = len(client.scheduler_info()["workers"])
    size = balanced_size(ctx, size or tile_cells(), workers, halo)
    local = [f for f in chosen if f in GLOBAL_FAMILIES]
    spread = [f for f in chosen if f not in GLOBAL_FAMILIES]
    windows = tiles(ctx, size)
    where: dict[str, tuple[int, np.ndarray]] = {}  # future key -> (tile number, the tile's own cells)
    tries = [0] * len(windows)

    def submit(i: int):
        tile, own, cells = _tile_context(ctx, windows[i], halo)
        [tile_f] = client.scatter([tile], hash=False)
        future = client.submit(_build_tile, tile_f, own, spread, pure=False)
        where[future.key] = (i, cells)
        return future

    def named(i: int) -> str:
        return f"feature tile {i + 1} of {len(windows)}"

    # a worker lost while the tiles are sent out fails the scatter itself: that tile is sent again
    futures = [retrying(client, named(i), partial(submit, i)) for i in range(len(windows))]
    whole = build_features(ctx, local) if local else None
    X: np.ndarray | None = None
    layout: Built | None = None
    done = 0
    pending = as_completed(futures)
    for future in pending:
        i, cells = where.pop(future.key)
        try:
            built = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker's tile is built again; any other error re-raised
            if not lost_worker(exc) or tries[i] == retries():
                raise
            tries[i] += 1
            await_workers(client, workers, named(i), tries[i])
            pending.add(retrying(client, named(i), partial(submit, i)))  # its input went with the worker
            continue
        if X is None or layout is None:  # every tile builds the same features; the first one to finish names them
            layout = _merge(chosen, built, whole)
            X = np.empty((ctx.n_periods + 1, ctx.grid.n_cells, len(layout.names)), dtype=np.float32)
            if whole is not None:
                for f, name in enumerate(whole.names):
                    X[:, :, layout.names.index(name)] = whole.X[:, :, f]
        assert X is not None and layout is not None
        columns = [layout.names.index(n) for n in built.names]
        for f, column in enumerate(columns):
            X[:, cells, column] = built.X[:, :, f]
        future.release()
        done += 1
        if on_family is not None:
            on_family(f"tile {done} of {len(windows)}", done - 1, len(windows))
    if X is None or layout is None:  # no time-varying family chosen: the whole-grid families are all there is
        assert whole is not None
        return whole
    layout.X = X
    return layout


def _merge(chosen: list[str], spread: Built | None, whole: Built | None) -> Built:
    """The names and metadata of the tiles' features and the whole-grid ones, in the order of `chosen` (the order
    build_features gives)."""
    parts = [b for b in (spread, whole) if b is not None]
    names = [n for fam in chosen for b in parts for n in b.names if b.families[n] == fam]
    pick = lambda attr: {n: getattr(b, attr)[n] for b in parts for n in b.names}  # noqa: E731
    skipped = {k: v for b in parts for k, v in b.skipped.items()}
    return Built(names, pick("descriptions"), pick("units"), pick("families"), pick("reasons"),
                 {f: skipped[f] for f in chosen if f in skipped}, max(b.lookback for b in parts),
                 np.empty((0, 0, 0), dtype=np.float32))
