"""Every source read and checked record by record (features.sources), with rows that repeat an earlier source's
removed: the candidates that the spatial checks (features.ingest.place) and the stored history (features.history)
start from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from hotspot.features.config import IncidentsConfig, StudyConfig
from hotspot.features.errors import RejectedInput
from hotspot.features.quarantine import combine_quarantine, quarantine_frame
from hotspot.features.sources import (
    CANDIDATE_COLUMNS,
    SourceRows,
    check_source,
    drop_cross_source_duplicates,
    finish_source,
    points_reference,
)


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Candidates:
    """Rows of every source that passed the record-level checks, before the spatial ones."""

    rows: pd.DataFrame  # features.sources.CANDIDATE_COLUMNS
    quarantine: pd.DataFrame
    raw: dict[str, pd.DataFrame]  # source name -> the columns its quarantine rows may show
    read_by_source: dict[str, int]
    fingerprint: str
    sources: list[IncidentsConfig] = field(default_factory=list)  # the sources read (none: the stored history)


def checked(cfg: StudyConfig, src: IncidentsConfig, today: date | None, reference) -> SourceRows:
    """One source checked (features.sources.check_source), or on the Dask engine read and checked by parts on the
    workers (features/partitioned.py), the whole-source checks then run here: the same rows and reasons."""
    from hotspot.features.engine import current

    client = current()
    if client is None:
        return check_source(cfg, src, today, reference)
    from hotspot.features.partitioned import read_and_check

    df, checks = read_and_check(client, src, today)
    return finish_source(cfg, src, df, checks, reference)


def read_sources(cfg: StudyConfig, today: date | None = None,
                 sources: list[IncidentsConfig] | None = None, pool: pd.DataFrame | None = None) -> Candidates:
    """Check every source (or `sources`) and drop rows that repeat an earlier source's row (or a row of `pool`)."""
    sources = sources if sources is not None else cfg.sources
    reference = None
    kept, quarantined, raw, read, digests, problems = [], [], {}, {}, [], []
    pool = pool if pool is not None else pd.DataFrame(columns=CANDIDATE_COLUMNS)
    for src in sources:
        part = checked(cfg, src, today, reference)
        if reference is None and cfg.area.boundary is None and cfg.area.crs is None:
            reference = points_reference(part.candidates, src.name)
        raw[src.name], read[src.name] = part.raw, part.n_read
        if part.problem:
            problems.append(part.problem)
        digests.append(f"{src.name}:{file_sha256(src.path)}")
        quarantined.append(part.quarantine)
        rows = part.candidates
        repeats, match = drop_cross_source_duplicates(cfg, pool, rows)
        if repeats.any():
            first = pool.iloc[match[repeats]]
            source_rows = rows.loc[repeats, "source_row"].to_numpy()
            detail = "repeats " + first["source"].astype(str) + " row " + first["source_row"].astype(str)
            quarantined.append(quarantine_frame(src.name, source_rows, "duplicate_across_sources",
                                                detail.to_numpy(dtype=object), part.raw.loc[source_rows]))
            rows = rows.loc[~repeats]
        kept.append(rows)
        pool = pd.concat([pool, rows], ignore_index=True) if len(pool) else rows.reset_index(drop=True)
    frame = pd.concat(kept, ignore_index=True)
    fingerprint = (digests[0].split(":", 1)[1] if len(digests) == 1 else
                   hashlib.sha256("\n".join(digests).encode()).hexdigest())[:16]
    quarantine = combine_quarantine(quarantined, [s.name for s in sources])
    if problems:
        raise RejectedInput("\n".join(problems), quarantine, read)
    return Candidates(frame, quarantine, raw, read, fingerprint, list(sources))


def nothing_passed(found: Candidates) -> RejectedInput:
    """The error for a run in which no row passed the record-level checks: what was read and the main reasons."""
    n_read = sum(found.read_by_source.values())
    counts = found.quarantine["reason"].value_counts() if len(found.quarantine) else pd.Series(dtype=int)
    files = ", ".join(f"{s.name} ({s.path})" for s in found.sources) if found.sources else "the stored history"
    if n_read == 0:
        why = "the file holds no rows" if len(found.sources) == 1 else "the files hold no rows"
    else:
        why = "quarantined: " + ", ".join(f"{r} {c:,}" for r, c in counts.head(3).items())
    return RejectedInput(f"no incident passed the checks: {n_read:,} rows read from {files}; {why}",
                         found.quarantine, found.read_by_source)
