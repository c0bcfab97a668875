"""The panel's feature cube kept partitioned on disk (issue 18): one Parquet file per spatial tile, written by the
Dask workers that built the tile (features/tiles.py), read back by parts, so that no process holds the whole cube.

Each file holds one tile's cells for every period: the columns of the long panel (`period_start`, `cell_id`, every
feature, `y`; Panel.to_frame's layout) with one row group per period, rows in the tile's cell order. The folder of
files is itself a partitioned Parquet dataset (`pandas.read_parquet(folder)` reads it as the long panel), and a
`_manifest.json` names the files, the features and each file's cells (compact grid indices).

`PartitionedX` stands where a panel's dense `X` (T + 1, C, F) stands: it has the shape and dtype, slices of
periods stay lazy (`panel.until(t)` costs nothing), and whatever indexes one period (`X[t]`, `X_next`) or asks for
an array (`np.asarray`) reads just those periods from the files. A fit reads its training rows with `take`:
the kept rows of some periods and columns, in the order a dense cube gives them, so a LightGBM fit on a partitioned
panel is the dense fit exactly (tests/test_engine.py). Written by hand because nothing in pyarrow or Dask reads a
(period, cell) window of a tiled dataset into a dense array in a given order; each file's reads are pyarrow's.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

MANIFEST = "_manifest.json"  # a leading underscore: readers of the folder as a Parquet dataset skip it


@dataclass(frozen=True, eq=False)
class PanelParts:
    """The files of a partitioned cube: `folder`/part-NNNNN.parquet, one per tile, and what they hold."""

    folder: str
    names: tuple[str, ...]  # feature columns, in the panel's order
    cells: tuple[np.ndarray, ...]  # each file's cells (compact indices), in its row order
    n_cells: int
    n_periods: int  # row groups per file: the T + 1 periods of the cube

    def path(self, i: int) -> Path:
        return Path(self.folder) / part_name(i)

    @classmethod
    def open(cls, folder: str | Path) -> PanelParts:
        """The parts written in `folder` (by `finish`); a clear error when the folder is missing or incomplete."""
        manifest = Path(folder) / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{folder}: not a partitioned panel (no {MANIFEST}; was it removed with its "
                                    "cache entry? build the panel again)")
        meta = json.loads(manifest.read_text())
        return cls(str(folder), tuple(meta["names"]), tuple(np.asarray(c, dtype=np.int64) for c in meta["cells"]),
                   int(meta["n_cells"]), int(meta["n_periods"]))


def part_name(i: int) -> str:
    """The file name of part i."""
    return f"part-{i:05d}.parquet"


def write_part(path: Path, columns: list[np.ndarray], names: list[str], period_starts, cell_id: np.ndarray,
               y: np.ndarray) -> None:
    """One tile's file: `columns` (one (T + 1, n) array per feature, views welcome) as the long panel's rows, one
    row group per period (y (T, n): the label, empty for the last period). Written under a temporary name and
    renamed, so a file is whole or absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(cell_id)
    T1 = len(period_starts)
    cell = pa.array(np.asarray(cell_id))
    schema = _schema(names, cell.type)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for t in range(T1):
            label = y[t] if t < y.shape[0] else np.full(n, np.nan, dtype=np.float32)
            arrays = [pa.array(np.full(n, np.datetime64(period_starts[t], "ns"))), cell,
                      *(pa.array(np.ascontiguousarray(c[t], dtype=np.float32)) for c in columns),
                      pa.array(np.asarray(label, dtype=np.float32))]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=max(n, 1))
    os.replace(tmp, path)


def _schema(names: list[str], cell_type):
    import pyarrow as pa

    return pa.schema([("period_start", pa.timestamp("ns")), ("cell_id", cell_type),
                      *((n, pa.float32()) for n in names), ("y", pa.float32())])


def start(base: Path) -> Path:
    """A new, empty folder beside `base` to write the parts in (renamed to `base` by `finish`)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    folder = base.with_name(f".{base.name}.{uuid.uuid4().hex}.building")
    folder.mkdir()
    return folder


def finish(folder: Path, base: Path, names: list[str], cells: list[np.ndarray], n_cells: int,
           n_periods: int) -> PanelParts:
    """Write the manifest and move the finished folder to `base` (replacing an older one): a reader sees the
    whole set or none of it."""
    meta = {"names": list(names), "cells": [np.asarray(c).tolist() for c in cells], "n_cells": n_cells,
            "n_periods": n_periods, "files": [part_name(i) for i in range(len(cells))],
            "layout": "one file per tile; row group t = period t; columns period_start, cell_id, features, y"}
    (folder / MANIFEST).write_text(json.dumps(meta))
    if base.exists():
        old = base.with_name(f".{base.name}.{uuid.uuid4().hex}.old")
        os.replace(base, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, base)
    return PanelParts.open(base)


class PartitionedX:
    """A lazy (T + 1, C, F) float32 cube over `PanelParts`, periods [start, stop) of it (see the module docstring)."""

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, parts: PanelParts, start: int = 0, stop: int | None = None):
        self.parts = parts
        self.start = start
        self.stop = parts.n_periods if stop is None else stop

    def __repr__(self) -> str:
        return f"PartitionedX({self.parts.folder!r}, periods {self.start}..{self.stop}, shape {self.shape})"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.stop - self.start, self.parts.n_cells, len(self.parts.names))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key):
        if isinstance(key, tuple):
            head = self[key[0]]
            rest = key[1:]
            if isinstance(head, PartitionedX):
                return np.asarray(head)[(slice(None), *rest)]
            return head[rest]
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step != 1:
                raise IndexError("a partitioned panel is sliced by consecutive periods only")
            return PartitionedX(self.parts, self.start + a, self.start + max(a, b))
        if isinstance(key, int | np.integer):
            t = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= t < len(self):
                raise IndexError(f"period {key} outside a cube of {len(self)} periods")
            return self.read(t, t + 1)[0]
        raise IndexError(f"a partitioned panel is indexed by a period or a slice of periods, not {key!r}")

    def __array__(self, dtype=None, copy=None):
        out = self.read(0, len(self))
        return out if dtype is None else out.astype(dtype, copy=False)

    def reshape(self, *shape) -> np.ndarray:
        return np.asarray(self).reshape(*shape)

    def read(self, a: int, b: int) -> np.ndarray:
        """Periods [a, b) of this view, dense (b - a, C, F)."""
        out = np.empty((b - a, *self.shape[1:]), dtype=np.float32)
        groups = list(range(self.start + a, self.start + b))
        for i, cells in enumerate(self.parts.cells):
            table = _read(self.parts, i, groups, list(self.parts.names))
            for f, name in enumerate(self.parts.names):
                out[:, cells, f] = table.column(name).to_numpy().reshape(b - a, len(cells))
        return out

    def periods(self) -> Iterator[np.ndarray]:
        """Each period's (C, F) features in turn (a digest of the whole cube without holding it)."""
        for t in range(len(self)):
            yield self.read(t, t + 1)[0]

    def take(self, a: int, b: int, keep: np.ndarray, columns: np.ndarray,
             every: tuple[int, int] = (0, 1)) -> np.ndarray:
        """The rows of periods [a, b) where `keep` (b - a, C) is true, features `columns`, as
        `np.asarray(X[a:b])[:, :, columns][keep]` gives them (period-major, cells in grid order), without reading
        more than one file at a time. `every = (k, n)` takes only the periods a + k, a + k + n, ... (and the rows
        of `keep` for them): one worker's share of a distributed fit."""
        k, n = every
        chosen = np.arange(a + k, b, n)
        mask = keep[chosen - a]
        position = np.cumsum(mask.ravel()) - 1  # each kept (period, cell)'s row in the output
        position = position.reshape(mask.shape)
        names = [self.parts.names[c] for c in columns]
        out = np.empty((int(mask.sum()), len(names)), dtype=np.float32)
        for i, cells in enumerate(self.parts.cells):
            own = mask[:, cells]
            if not own.any():
                continue
            table = _read(self.parts, i, [int(self.start + t) for t in chosen], names)
            sel = own.ravel()
            rows = position[:, cells].ravel()[sel]
            for j, name in enumerate(names):
                out[rows, j] = table.column(name).to_numpy()[sel]
        return out


def _read(parts: PanelParts, i: int, groups: list[int], columns: list[str]):
    path = parts.path(i)
    try:
        return _opened(str(path), path.stat().st_mtime_ns).read_row_groups(groups, columns=columns, use_threads=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: a part of the partitioned panel is missing (was its cache entry "
                                "removed? build the panel again)") from None


@lru_cache(maxsize=512)
def _opened(path: str, mtime_ns: int):
    """A part file opened once per process (its footer, a row group per period, is read once, not per read)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path)


def take_rows(X, a: int, b: int, keep: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The kept rows of periods [a, b) and the given feature columns of a dense or partitioned cube, period-major."""
    if isinstance(X, PartitionedX):
        return X.take(a, b, keep, columns)
    F = X.shape[2]
    rows = X[a:b].reshape(-1, F)[keep.ravel()]
    return rows if len(columns) == F else rows[:, columns]
