"""The cell x period panel: counts per cell per period and offence group, the label, and the feature cube.

Layout (T observed periods, C cells, G offence groups, F features):
- `counts`  (T, C, G) int32   incidents per period, cell and offence group;
- `target`  (T, C)    float32 the label: incidents of the target offences in period t;
- `X`       (T+1, C, F) float32 features of period t, computed only from periods before t. Row T describes the
  period after the data, the one a forecast is for.

`panel.until(t)` is the panel as it was known when period t started: a forecaster that is fitted on it and
predicts its next period cannot see period t.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.build import build_features
from hotspot.features.config import StudyConfig
from hotspot.features.families import selected_families
from hotspot.features.grid import Grid
from hotspot.features.locking import locked, replace_atomically, write_text_atomically
from hotspot.features.registry import BuildContext


@dataclass(frozen=True, eq=False)
class Panel:
    grid: Grid
    period_starts: pd.DatetimeIndex  # T + 1 entries: observed periods, then the next one
    groups: tuple[str, ...]
    counts: np.ndarray
    target: np.ndarray
    X: np.ndarray  # or a features.parts.PartitionedX (the same shape and indexing, read from disk by parts)
    feature_names: tuple[str, ...]
    feature_descriptions: dict[str, str] = field(default_factory=dict)
    feature_units: dict[str, str] = field(default_factory=dict)
    feature_families: dict[str, str] = field(default_factory=dict)  # feature name -> family name
    feature_reasons: dict[str, str] = field(default_factory=dict)  # feature name -> reason sentence template
    skipped_families: dict[str, str] = field(default_factory=dict)  # family -> why it was not built
    min_history: int = 0  # periods of look-back the longest feature needs
    target_noun: str = "incidents"  # what the label counts, in sentences ('incidents', 'Robbery incidents')
    event_days: np.ndarray | None = None  # target incidents' times, days since period_starts[0], sorted
    event_cell: np.ndarray | None = None  # their cells (compact index)

    @property
    def n_periods(self) -> int:
        return self.target.shape[0]

    @property
    def next_period_start(self) -> pd.Timestamp:
        return self.period_starts[-1]

    @property
    def X_next(self) -> np.ndarray:
        """Features of the period after the observed ones, (C, F)."""
        return self.X[-1]

    def until(self, t: int) -> Panel:
        """The panel known when period t starts: periods [0, t) observed, features up to period t."""
        if not 0 <= t <= self.n_periods:
            raise IndexError(f"period index {t} outside 0..{self.n_periods}")
        event_days = event_cell = None
        if self.event_days is not None and self.event_cell is not None:  # set together (from_incidents)
            cut = int(np.searchsorted(self.event_days, self.days_since_start(self.period_starts[t]), side="left"))
            event_days, event_cell = self.event_days[:cut], self.event_cell[:cut]
        return Panel(
            grid=self.grid, period_starts=self.period_starts[: t + 1], groups=self.groups,
            counts=self.counts[:t], target=self.target[:t], X=self.X[: t + 1],
            feature_names=self.feature_names, feature_descriptions=self.feature_descriptions,
            feature_units=self.feature_units, feature_families=self.feature_families,
            feature_reasons=self.feature_reasons, skipped_families=self.skipped_families, min_history=self.min_history,
            target_noun=self.target_noun, event_days=event_days, event_cell=event_cell,
        )

    def days_since_start(self, when: pd.Timestamp) -> float:
        return (pd.Timestamp(when) - self.period_starts[0]) / pd.Timedelta(days=1)

    def period_index(self, start: pd.Timestamp | str) -> int:
        """Index of the period that starts at `start`; ValueError naming the nearest starts otherwise."""
        ts = pd.Timestamp(start)
        pos = self.period_starts.get_indexer([ts])[0]
        if pos < 0:
            near = self.period_starts[max(0, self.period_starts.searchsorted(ts) - 1):][:2]
            raise ValueError(
                f"{ts.date()} is not a period start of this panel (periods run {self.period_starts[0].date()}"
                f" .. {self.period_starts[-1].date()}; nearest starts: {[str(d.date()) for d in near]})"
            )
        return int(pos)

    def feature_frame(self, t: int) -> pd.DataFrame:
        """Features of period t as a DataFrame (one row per cell), for model signatures and explanations."""
        return pd.DataFrame(self.X[t], columns=list(self.feature_names))

    def to_frame(self) -> pd.DataFrame:
        """Long table, one row per period and cell: period_start, cell_id, features..., y (NaN for the next)."""
        T1, C, F = self.X.shape
        frame = pd.DataFrame(self.X.reshape(T1 * C, F), columns=list(self.feature_names))
        frame.insert(0, "cell_id", np.tile(self.grid.cell_id, T1))
        frame.insert(0, "period_start", np.repeat(self.period_starts.to_numpy(dtype="datetime64[ns]"), C))
        y = np.full((T1, C), np.nan, dtype=np.float32)
        y[: self.n_periods] = self.target
        frame["y"] = y.reshape(-1)
        return frame


def period_starts_for(first: pd.Timestamp, data_end: pd.Timestamp, freq: str) -> tuple[pd.DatetimeIndex, int]:
    """Starts of the periods from the one containing `first`, and the number of complete periods.

    A period is complete when its last day is on or before `data_end`. The returned index holds the complete
    periods plus the next one (the forecast period).
    """
    offset = pd.tseries.frequencies.to_offset(freq)
    start = offset.rollback(first.normalize()) if hasattr(offset, "rollback") else first.normalize()
    starts = pd.date_range(start, data_end.normalize() + offset, freq=offset)
    ends = starts[1:]  # exclusive end of each period but the last
    n_complete = int((ends <= data_end.normalize() + pd.Timedelta(days=1)).sum())
    return starts[: n_complete + 1], n_complete


def keeps_partitioned(cfg: StudyConfig, cell_periods: int) -> bool:
    """Whether the Dask engine keeps a panel of this many cell-periods partitioned on disk (`[engine] partitioned`,
    `partition_above`) rather than putting its whole feature cube together in the command's process."""
    mode = cfg.engine.partitioned
    return mode == "always" or (mode == "auto" and cell_periods > cfg.engine.partition_above)


def parts_folder(cfg: StudyConfig, key: str | None) -> Path:
    """Where a partitioned panel's files go: `[engine] parts_dir`, else beside the panel's cache entry (removed
    with it), else (cache off) a temporary folder removed when the process ends."""
    from hotspot.features.cache import cache_dir

    base = cfg.engine.parts_dir or cache_dir()
    if base is None:
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="hotspot-panel-"))
        atexit.register(shutil.rmtree, folder, True)
        return folder / "parts"
    return Path(base) / cfg.model_key / f"{key or 'uncached'}.parts"


def build_panel(cfg: StudyConfig, incidents: pd.DataFrame, grid: Grid,
                on_family: Callable[[str, int, int], None] | None = None, key: str | None = None) -> Panel:
    """Count accepted incidents per cell and period, then build every selected feature family (features.registry);
    `on_family(name, i, n)` is told before each family is built (progress on the command line). On the Dask engine
    a large panel's features stay partitioned on disk (`keeps_partitioned`; `key`, the panel's cache key, names
    their folder) and the panel's `X` is a features.parts.PartitionedX."""
    first = pd.Timestamp(cfg.incidents.earliest_date) if cfg.incidents.earliest_date else incidents[
        "occurred_at"].min()
    data_end = pd.Timestamp(cfg.period.data_end) if cfg.period.data_end else incidents["occurred_at"].max()
    starts, T = period_starts_for(pd.Timestamp(first), pd.Timestamp(data_end), cfg.period.freq)
    if T < 2:
        raise ValueError(f"the data covers {T} complete period(s) of {cfg.period.freq}; at least 2 are needed")

    period = starts.searchsorted(incidents["occurred_at"].to_numpy(), side="right") - 1
    in_range = (period >= 0) & (period < T)
    groups = tuple(str(g) for g in incidents["offense"].cat.categories)
    G, C = len(groups), grid.n_cells
    cell, offense = incidents["cell"].to_numpy()[in_range], incidents["offense"].cat.codes.to_numpy()[in_range]
    flat = (period[in_range] * C + cell) * G + offense
    counts = np.bincount(flat, minlength=T * C * G).astype(np.int32).reshape(T, C, G)

    targets = cfg.model.target_offenses or list(groups)
    unknown = [g for g in targets if g not in groups]
    if unknown:
        raise ValueError(f"model.target_offenses {unknown} match no accepted incident; offences in the data: "
                         f"{list(groups)}")
    target_idx = [groups.index(g) for g in targets]
    target = counts[:, :, target_idx].sum(axis=2).astype(np.float32)

    known = incidents.loc[in_range].assign(period=period[in_range])
    is_target = known["offense"].isin(targets).to_numpy()
    event_days = ((known["occurred_at"].to_numpy()[is_target] - starts[0].to_datetime64())
                  / np.timedelta64(1, "D")).astype(np.float64)
    order = np.argsort(event_days, kind="stable")
    ctx = BuildContext(cfg=cfg, grid=grid, period_starts=starts, groups=groups, counts=counts, target=target,
                       incidents=known)
    from hotspot.features.engine import current

    client = current()
    if client is not None:  # the Dask engine: the same features, built by spatial tiles on the workers
        from hotspot.features.tiles import build_tiled

        parts = parts_folder(cfg, key) if keeps_partitioned(cfg, (T + 1) * C) else None
        built = build_tiled(client, ctx, selected_families(cfg), on_family, parts_base=parts)
    else:
        built = build_features(ctx, selected_families(cfg), on_family)
    names, descriptions, units, families, reasons = (built.names, built.descriptions, built.units, built.families,
                                                     built.reasons)
    skipped, lookback, X = built.skipped, built.lookback, built.X
    if not names:
        raise ValueError("no feature family could be built; check [features] families and exclude")
    return Panel(
        grid=grid, period_starts=starts, groups=groups, counts=counts, target=target, X=X,
        feature_names=tuple(names), feature_descriptions=descriptions, feature_units=units,
        feature_families=families, feature_reasons=reasons, skipped_families=dict(skipped), min_history=lookback,
        target_noun=ctx.target_noun, event_days=event_days[order],
        event_cell=known["cell"].to_numpy()[is_target][order].astype(np.int32),
    )


def write_panel(panel: Panel, out_dir: Path) -> tuple[Path, Path]:
    """Write the long panel as Parquet and its schema (names, dtypes, descriptions) as JSON, atomically."""
    import json

    from hotspot.features.parts import PartitionedX

    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(panel.X, PartitionedX):
        return _write_partitioned(panel, panel.X, out_dir)
    frame = panel.to_frame()
    path, schema_path = out_dir / "panel.parquet", out_dir / "panel_schema.json"
    schema = _schema(panel, {c: str(frame[c].dtype) for c in frame.columns})
    with locked(path, what="writing the panel"):  # the panel and its schema as one set, each file whole
        replace_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))
        write_text_atomically(schema_path, json.dumps(schema, indent=2))
    return path, schema_path


def _write_partitioned(panel: Panel, X, out_dir: Path) -> tuple[Path, Path]:
    """A partitioned panel as a folder `panel.parquet/` of its part files (the same columns as the single file,
    readable as one dataset by pandas, pyarrow, Dask or Spark), hard-linked where the file system allows (no copy),
    replacing what was there as one set."""
    import json
    import os
    import shutil
    import uuid

    from hotspot.features.parts import MANIFEST, part_name

    path, schema_path = out_dir / "panel.parquet", out_dir / "panel_schema.json"
    names = ["period_start", "cell_id", *panel.feature_names, "y"]
    dtypes = {"period_start": "datetime64[ns]", "cell_id": str(panel.grid.cell_id.dtype), "y": "float32",
              **dict.fromkeys(panel.feature_names, "float32")}
    schema = {**_schema(panel, {n: dtypes[n] for n in names}), "partitioned": {
        "files": len(X.parts.cells), "layout": "one file per spatial tile, one row group per period"}}
    with locked(path, what="writing the panel"):
        tmp = out_dir / f".panel.parquet.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            for name in [part_name(i) for i in range(len(X.parts.cells))] + [MANIFEST]:
                try:
                    os.link(Path(X.parts.folder) / name, tmp / name)
                except OSError:  # another file system: copied
                    shutil.copy2(Path(X.parts.folder) / name, tmp / name)
            old = out_dir / f".panel.parquet.{uuid.uuid4().hex}.old"
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        write_text_atomically(schema_path, json.dumps(schema, indent=2))
    return path, schema_path


def _schema(panel: Panel, dtypes: dict[str, str]) -> dict:
    """The panel's schema file: each column's dtype and description, and the panel's shape."""
    return {
        "rows": "one per period and cell; features of a period use only data before it; y = incidents in it",
        "columns": [
            {"name": c, "dtype": dtype,
             "description": {"period_start": "first day of the period", "cell_id": "stable grid cell id",
                             "y": "label: target incidents in the period (empty for the forecast period)"}.get(
                 c, panel.feature_descriptions.get(c, ""))}
            for c, dtype in dtypes.items()
        ],
        "groups": list(panel.groups),
        "n_cells": panel.grid.n_cells,
        "n_periods": panel.n_periods,
        "cell_size_m": panel.grid.cell_size_m,
        "crs": panel.grid.crs.to_string(),
    }
