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

The workers see only their tile's counts and incidents. The command's process either puts the tiles together into
one dense cube, or (`parts_base` given: a large panel, features/panel.py `keeps_partitioned`) lets each worker write
its tile's features, the whole-grid families' values for its cells included, as one Parquet file of a partitioned
panel (features/parts.py) and keeps only the file names: then no process holds the whole cube.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from hotspot.features.build import Built, build_features
from hotspot.features.parts import PartitionedX, finish, part_name, start, write_part
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


def _build_tile_part(tile: BuildContext, own: np.ndarray, chosen: list[str], spread: list[str],
                     whole: Built | None, values: np.ndarray | None, folder: str, i: int) -> Built:
    """Build one tile and write its own cells' features as part i of a partitioned panel, in the panel's column
    order: the tile's families, and the whole-grid families (`whole`: their names, `values` (T + 1, own cells,
    F_whole) their values here). Returns the names and metadata only."""
    built = build_features(tile, spread)
    layout = _merge(chosen, built, whole)
    source = {n: built.X[:, own, f] for f, n in enumerate(built.names)}  # views: no second copy of the tile
    if whole is not None and values is not None:
        source.update({n: values[:, :, f] for f, n in enumerate(whole.names)})
    write_part(Path(folder) / part_name(i), [source[n] for n in layout.names], layout.names, tile.period_starts,
               tile.grid.cell_id[own], tile.target[:, own])
    layout.X = np.empty((0, 0, 0), dtype=np.float32)
    return layout


def build_tiled(client, ctx: BuildContext, chosen: list[str],
                on_family: Callable[[str, int, int], None] | None = None, size: int | None = None,
                parts_base: Path | None = None) -> Built:
    """`build_features(ctx, chosen)`, by tiles on the cluster's workers (see the module docstring); with
    `parts_base`, written there as a partitioned panel (its `X` a features.parts.PartitionedX)."""
    from hotspot.features.engine import tile_cells, trim_workers

    try:
        return _build_tiled(client, ctx, chosen, on_family, size or tile_cells(), parts_base)
    finally:
        trim_workers(client)


def _build_tiled(client, ctx: BuildContext, chosen: list[str], on_family: Callable[[str, int, int], None] | None,
                 size: int, parts_base: Path | None) -> Built:
    from hotspot.features.engine import retrying

    halo = halo_cells(ctx)
    workers = len(client.scheduler_info()["workers"])
    size = balanced_size(ctx, size, workers, halo)
    local = [f for f in chosen if f in GLOBAL_FAMILIES]
    spread = [f for f in chosen if f not in GLOBAL_FAMILIES]
    windows = tiles(ctx, size)
    where: dict[str, tuple[int, np.ndarray]] = {}  # future key -> (tile number, the tile's own cells)
    tries = [0] * len(windows)

    if not spread:  # only whole-grid families: nothing to tile
        return build_features(ctx, local)
    folder = start(parts_base) if parts_base is not None else None
    # partitioned, the whole-grid families go out with the tiles, so they are built first
    whole = build_features(ctx, local) if local and folder is not None else None
    whole_meta = replace(whole, X=np.empty((0, 0, 0), dtype=np.float32)) if whole is not None else None

    def submit(i: int):
        tile, own, cells = _tile_context(ctx, windows[i], halo)
        if folder is None:
            [tile_f] = client.scatter([tile], hash=False)
            future = client.submit(_build_tile, tile_f, own, spread, pure=False)
        else:
            values = np.ascontiguousarray(whole.X[:, cells]) if whole is not None else None
            tile_f, values_f = client.scatter([tile, values], hash=False)
            future = client.submit(_build_tile_part, tile_f, own, chosen, spread, whole_meta, values_f, str(folder),
                                   i, pure=False)
        where[future.key] = (i, cells)
        return future

    def named(i: int) -> str:
        return f"feature tile {i + 1} of {len(windows)}"

    try:
        # a worker lost while the tiles are sent out fails the scatter itself: that tile is sent again
        futures = [retrying(client, named(i), partial(submit, i)) for i in range(len(windows))]
        if folder is not None:
            return _written(client, ctx, chosen, futures, where, tries, workers, named, submit, folder, parts_base,
                            whole_meta, on_family)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # nothing half-written is left behind
        raise
    whole = build_features(ctx, local) if local else None
    X: np.ndarray | None = None
    layout: Built | None = None
    done = 0
    for _, cells, built, future in _finished(client, futures, where, tries, workers, named, submit):
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
    assert X is not None and layout is not None
    layout.X = X
    return layout


def _finished(client, futures, where, tries, workers, named, submit) -> Iterator[tuple]:
    """Each tile as it finishes: (tile number, its cells, its Built, its future); a tile a lost worker took (its
    scattered input gone with it) is sent and built again, up to `[engine] retries` times; any other error raised."""
    from distributed import as_completed

    from hotspot.features.engine import await_workers, lost_worker, retries, retrying

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
            pending.add(retrying(client, named(i), partial(submit, i)))
            continue
        yield i, cells, built, future


def _written(client, ctx: BuildContext, chosen: list[str], futures, where, tries, workers, named, submit,
             folder: Path, parts_base: Path | None, whole_meta: Built | None, on_family) -> Built:
    """Wait for the tiles written as parts (retrying those a lost worker took), then finish the partitioned panel."""
    assert parts_base is not None
    cells_of: dict[int, np.ndarray] = {}
    layout: Built | None = None
    for i, cells, built, future in _finished(client, futures, where, tries, workers, named, submit):
        layout = layout or built
        cells_of[i] = cells
        future.release()
        if on_family is not None:
            on_family(f"tile {len(cells_of)} of {len(futures)}, written", len(cells_of) - 1, len(futures))
    assert layout is not None
    parts = finish(folder, parts_base, layout.names, [cells_of[i] for i in range(len(futures))], ctx.grid.n_cells,
                   ctx.n_periods + 1)
    layout.X = PartitionedX(parts)  # type: ignore[assignment]
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
