"""The stored incident history: every row that passed the record-level checks, kept in one Parquet file so a
weekly file can be appended without re-reading every source.

Each row keeps its source, a `record_key` (a hash of the source's key column, else of the row's contents: the same
file appended twice adds nothing), `ingested_at` and `late` (it arrived after its period had been observed, so the
backtest weeks it falls in should be scored again). No personal field is stored. The file is only ever replaced
whole (temporary file + os.replace): a failed ingest or append leaves the previous history byte for byte. A build or
append holds `incidents.parquet.lock` from reading the stored rows to replacing them, so two appends at once keep
both files' rows (the second waits for the first, up to HOTSPOT_LOCK_TIMEOUT_S; features.locking).

When the history exists, features.ingest.validate reads it instead of the sources; the spatial checks (area, grid)
run on the whole history each time, so appending week by week gives the same panel as one ingest of everything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.candidates import nothing_passed, read_sources
from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError, InputError
from hotspot.features.locking import locked, replace_atomically
from hotspot.features.sources import CANDIDATE_COLUMNS

FILE_NAME = "incidents.parquet"
COLUMNS = [*CANDIDATE_COLUMNS, "ingested_at", "late"]


@dataclass
class IngestReport:
    path: Path
    rows_stored: int  # rows in the history after the step
    added: int
    already_stored: int = 0  # appended rows whose record key was stored before (idempotent re-runs)
    late: int = 0
    late_periods: list[str] = field(default_factory=list)  # starts of the periods late rows fall in
    after_data_end: int = 0  # added rows after `period.data_end`: stored, but outside the panel until it moves
    data_end: str | None = None
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantine: pd.DataFrame | None = None
    fingerprint: str = ""

    def as_dict(self) -> dict:
        return {"history": str(self.path), "rows_stored": self.rows_stored, "added": self.added,
                "already_stored": self.already_stored, "late": self.late, "late_periods": self.late_periods,
                "after_data_end": self.after_data_end, "data_end": self.data_end,
                "by_source": self.by_source, "fingerprint": self.fingerprint}


def history_file(cfg: StudyConfig) -> Path:
    """The stored history's file for this config: [history] path, else beside the config's files."""
    folder = cfg.history_dir
    if folder is None:
        raise HotspotError("the config has no file location, so the history needs [history] path")
    return folder / FILE_NAME


def stored_file(cfg: StudyConfig) -> Path | None:
    """The history file when one exists for this config, else None."""
    folder = cfg.history_dir
    path = None if folder is None else folder / FILE_NAME
    return path if path is not None and path.is_file() else None


def mapping_signature(cfg: StudyConfig) -> str:
    """What the stored rows depend on: every source's mapping and checks (not its file path)."""
    # a source without a place column dumps as before, so histories stored before `place` existed still match
    tables = [s.model_dump(mode="json", exclude={"path"} | ({"place"} if s.place is None else set()))
              for s in cfg.sources]
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16]


def content_fingerprint(rows: pd.DataFrame) -> str:
    """A deterministic fingerprint of the stored rows, whichever order and time they were stored in."""
    keys = np.sort(rows["record_key"].astype(str).to_numpy())
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def load(cfg: StudyConfig) -> tuple[pd.DataFrame, str]:
    """The stored rows and their fingerprint; refuses a history built with another mapping."""
    import pyarrow.parquet as pq

    path = history_file(cfg)
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"hotspot", b"{}"))
    if meta.get("mapping") != mapping_signature(cfg):
        raise HotspotError(f"{path}: the history was built with another [incidents] mapping than "
                           f"{cfg.source_path}; rebuild it with `hotspot ingest --config {cfg.source_path}`")
    rows = table.to_pandas()
    if "place" not in rows.columns:  # stored before incidents.place existed (and with no place configured)
        rows["place"] = pd.Series(pd.NA, index=rows.index, dtype="string")
    return rows, content_fingerprint(rows)


def write_atomic(cfg: StudyConfig, rows: pd.DataFrame, path: Path) -> None:
    """Replace the history with `rows` in one step: a reader (or a crash) sees the old file or the new one. The
    caller holds the history's lock (`locked(path)`) from reading what `rows` were made of."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(rows[COLUMNS].reset_index(drop=True), preserve_index=False)
    meta = {**(table.schema.metadata or {}),
            b"hotspot": json.dumps({"mapping": mapping_signature(cfg), "area": cfg.area.name}).encode()}
    replace_atomically(path, lambda tmp: pq.write_table(table.replace_schema_metadata(meta), tmp))


def _stamp(rows: pd.DataFrame, late: np.ndarray | bool = False) -> pd.DataFrame:
    rows = rows.copy()
    rows["ingested_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    rows["late"] = late
    rows["premises"] = rows["premises"].astype("string")
    rows["place"] = rows["place"].astype("string")
    rows["offense"] = rows["offense"].astype(str)
    return rows


def _data_end(cfg: StudyConfig) -> str | None:
    return str(cfg.period.data_end) if cfg.period.data_end else None


def _after_data_end(cfg: StudyConfig, rows: pd.DataFrame) -> int:
    """Rows that occurred after the config's fixed `period.data_end`: the panel stops there, so they are kept in the
    history but reach no feature, model or forecast until `data_end` is raised or removed (said, never silent)."""
    if not cfg.period.data_end or not len(rows):
        return 0
    end = pd.Timestamp(cfg.period.data_end) + pd.Timedelta(days=1)
    return int((pd.to_datetime(rows["occurred_at"]) >= end).sum())


def build(cfg: StudyConfig, today: date | None = None) -> IngestReport:
    """Build (or rebuild) the history from every configured source."""
    path = history_file(cfg)
    with locked(path, what="building the incident history"):
        found = read_sources(cfg, today)
        if not len(found.rows):  # storing an empty history would hide the failure from every later step
            raise nothing_passed(found)
        rows = _stamp(found.rows)
        write_atomic(cfg, rows, path)
    return IngestReport(path=path, rows_stored=len(rows), added=len(rows),
                        by_source=_by_source(found.read_by_source, rows, found.quarantine),
                        quarantine=found.quarantine, fingerprint=content_fingerprint(rows),
                        after_data_end=_after_data_end(cfg, rows), data_end=_data_end(cfg))


def append(cfg: StudyConfig, file: Path, source: str | None = None, today: date | None = None) -> IngestReport:
    """Check `file` with the mapping of `source` (default: the first) and add its new rows to the history."""
    path = stored_file(cfg)
    if path is None:
        raise HotspotError(f"no stored history at {history_file(cfg)}; run `hotspot ingest --config "
                           f"{cfg.source_path}` first")
    names = [s.name for s in cfg.sources]
    name = source or names[0]
    if name not in names:
        raise InputError(f"--source {name!r} is not a source of {cfg.source_path}; its sources: {names}")
    src = next(s for s in cfg.sources if s.name == name).model_copy(update={"path": Path(file).resolve()})
    # held from reading the stored rows to replacing them: a second append waits, then reads these rows too
    with locked(path, what=f"appending {Path(file).name}"):
        stored, _ = load(cfg)
        # a row already stored is not new (idempotent); the others are checked against other sources' stored rows
        others = stored.loc[stored["source"] != name].reset_index(drop=True)
        found = read_sources(cfg, today, sources=[src], pool=others)
        if not len(found.rows):
            raise nothing_passed(found)
        fresh = found.rows
        known = fresh["record_key"].isin(set(stored["record_key"])).to_numpy()
        fresh = fresh.loc[~known]
        late, late_periods = _late(cfg, stored, fresh)
        rows = pd.concat([stored, _stamp(fresh, late)], ignore_index=True)
        write_atomic(cfg, rows, path)
    by_source = _by_source(found.read_by_source, fresh, found.quarantine)
    by_source[name]["already_stored"] = int(known.sum())
    return IngestReport(path=path, rows_stored=len(rows), added=len(fresh), already_stored=int(known.sum()),
                        late=int(late.sum()), late_periods=late_periods, by_source=by_source,
                        after_data_end=_after_data_end(cfg, fresh), data_end=_data_end(cfg),
                        quarantine=found.quarantine, fingerprint=content_fingerprint(rows))


def _late(cfg: StudyConfig, stored: pd.DataFrame, fresh: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Which fresh rows are late: they fall in a period before the one holding the newest stored incident (already
    observed, maybe scored); and the starts of those periods."""
    late = np.zeros(len(fresh), dtype=bool)
    if not len(stored) or not len(fresh):
        return late, []
    offset = pd.tseries.frequencies.to_offset(cfg.period.freq)
    current = offset.rollback(pd.Timestamp(stored["occurred_at"].max()).normalize())
    late = (fresh["occurred_at"] < current).to_numpy()
    if not late.any():
        return late, []
    starts = pd.DatetimeIndex(fresh.loc[late, "occurred_at"]).normalize().map(offset.rollback)
    return late, sorted({str(d.date()) for d in starts})


def _by_source(read: dict[str, int], added: pd.DataFrame, quarantine: pd.DataFrame) -> dict[str, dict[str, int]]:
    table = {}
    for name, n in read.items():
        q = quarantine.loc[quarantine["source"] == name, "reason"].value_counts()
        table[name] = {"read": int(n), "added": int((added["source"] == name).sum()), "quarantined": int(q.sum()),
                       **{f"quarantined_{r}": int(c) for r, c in q.items()}}
    return table
