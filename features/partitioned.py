"""Validation by partition on the Dask engine (features/engine.py): each worker reads part of a source and runs the
row-by-row checks on it (features.sources.row_checks: timestamps, coordinates and their transformation, offences,
dates); the command's process then runs the checks that need the whole source (timestamps that mostly fail, a
misplaced source, duplicates) and the study-area join on the same rows, so every count and quarantine reason is
the local engine's (tests/test_engine.py).

Parts: a Parquet file's row groups, gathered into parts of about `[engine] partition_rows` rows; a CSV or GeoJSON
file is read by one worker (a CSV record may span lines, so it cannot be split by bytes safely) and its rows are
checked in parts on every worker. The study-area join (`locate`) maps the points' chunks onto the area and grid on
the workers.
"""

from __future__ import annotations

import threading
from datetime import date

import numpy as np
import pandas as pd

from hotspot.features.config import IncidentsConfig
from hotspot.features.errors import InputError
from hotspot.features.sources import RowChecks, read_table, row_checks


def parquet_parts(path, rows: int) -> list[list[int]]:
    """Consecutive row groups of a Parquet file in parts of about `rows` rows (a row group is never split)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    parts, current, size = [], [], 0
    for i in range(meta.num_row_groups):
        current.append(i)
        size += meta.row_group(i).num_rows
        if size >= rows:
            parts.append(current)
            current, size = [], 0
    if current:
        parts.append(current)
    return parts


def _read_groups(src: IncidentsConfig, groups: list[int]) -> pd.DataFrame:
    """Some row groups of a Parquet source, as `read_table` reads the whole file."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(src.path).read_row_groups(groups)
    except Exception as exc:  # noqa: BLE001 - name the file and the cause, as read_table does
        raise InputError(f"{src.path}: cannot read as parquet ({type(exc).__name__}: {exc})") from None
    return table.to_pandas()


def _check_part(src: IncidentsConfig, df: pd.DataFrame, today: date | None) -> RowChecks:
    return row_checks(src, df.reset_index(drop=True), today)


def _read_and_check_groups(src: IncidentsConfig, groups: list[int], today: date | None):
    df = _read_groups(src, groups)
    return df, _check_part(src, df, today)


def read_and_check(client, src: IncidentsConfig, today: date | None = None, rows: int | None = None
                   ) -> tuple[pd.DataFrame, RowChecks]:
    """The source as `read_table` reads it and its row checks, computed by part on the cluster's workers."""
    from hotspot.features.engine import partition_rows

    rows = rows or partition_rows()
    if src.file_format == "parquet":
        try:
            parts = parquet_parts(src.path, rows)
        except Exception as exc:  # noqa: BLE001 - not a Parquet file: let read_table name the problem
            read_table(src)
            raise InputError(f"{src.path}: cannot read as parquet ({exc})") from None
        if len(parts) > 1:
            done = client.gather(client.map(_read_and_check_groups, [src] * len(parts), parts,
                                            [today] * len(parts), pure=False))
            df = pd.concat([d for d, _ in done], ignore_index=True)
            _columns_present(src, df)
            return df, RowChecks.concat([c for _, c in done])
    # one part to read (CSV, GeoJSON, a Parquet file of one row group): read it once, check its rows in parts
    df = read_table(src)
    bounds = list(range(0, len(df), rows)) + [len(df)]
    chunks = [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    if len(chunks) == 1:
        return df, row_checks(src, df, today)
    scattered = client.scatter(chunks, hash=False)
    checks = client.gather(client.map(_check_part, [src] * len(chunks), scattered, [today] * len(chunks),
                                      pure=False))
    return df, RowChecks.concat(checks)


def _columns_present(src: IncidentsConfig, df: pd.DataFrame) -> None:
    """The column checks `read_table` makes, on the parts put together."""
    needed = [src.timestamp, src.offense] + [c for c in (src.lon, src.lat, src.x, src.y) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"{src.path}: column(s) {missing} not found; the file has {list(df.columns)[:30]} "
                         f"(check the [incidents] column mapping of source '{src.name}')")
    if df.empty:
        raise InputError(f"{src.path}: the file has no rows")


_COPYING = threading.Lock()


def _locate_part(area, grid, lon: np.ndarray, lat: np.ndarray):
    import shapely
    from pyproj import Transformer

    # A worker's threads share the unpickled area, and neither GEOS's prepared geometry (its point locator is built
    # on the first query) nor pyproj's objects may be used from two threads at once: a worker of 2 threads crashed
    # (SIGSEGV in contains_xy) on the ten-times region. So each call tests against its own copy of the boundary and
    # makes its own transformer from text.
    with _COPYING:
        boundary = shapely.from_wkb(shapely.to_wkb(area.boundary))
        crs = area.crs.to_wkt()
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    inside = shapely.contains_xy(boundary, x, y)
    cell = np.full(len(x), -1, dtype=np.int32)
    cell[inside] = grid.locate(x[inside], y[inside])
    return x, y, inside, cell


def locate(client, area, grid, lon: np.ndarray, lat: np.ndarray, rows: int | None = None):
    """The study-area join by chunks on the workers: projected x, y, inside the area, cell (-1 outside)."""
    from hotspot.features.engine import partition_rows

    rows = rows or partition_rows()
    bounds = list(range(0, len(lon), rows)) + [len(lon)]
    if len(bounds) <= 2:
        return _locate_part(area, grid, lon, lat)
    [area_f, grid_f] = client.scatter([area, grid], broadcast=True, hash=False)
    done = client.gather(client.map(_locate_part, *zip(*[(area_f, grid_f, lon[a:b], lat[a:b])
                                                           for a, b in zip(bounds[:-1], bounds[1:])]), pure=False))
    return tuple(np.concatenate([d[k] for d in done]) for k in range(4))
