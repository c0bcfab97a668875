"""Reading and validating incident records.

Every row either becomes an accepted incident or is set aside in the quarantine table with a reason and the
offending value; nothing is dropped silently. The checks run in the order of ALL_REASONS and a row carries the first
reason it fails. Record-level checks, per source, live in features.sources; the spatial ones (which need the whole
study area) run here, after cross-source duplicates are removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pyproj import Transformer

from hotspot.features import history, safe_csv
from hotspot.features.area import WGS84, StudyArea, derive_boundary, read_boundary
from hotspot.features.candidates import Candidates, nothing_passed, read_sources
from hotspot.features.config import StudyConfig
from hotspot.features.grid import Grid
from hotspot.features.quarantine import combine_quarantine, no_quarantine, quarantine_frame

# reason -> what a reader of the quarantine file is told
REASONS: dict[str, str] = {
    "missing_timestamp": "the timestamp is empty",
    "unparseable_timestamp": "the timestamp does not parse as a date/time",
    "missing_coordinates": "a coordinate is empty",
    "invalid_coordinates": "a coordinate is not a finite number",
    "zero_coordinates": "both coordinates are 0 (a common default for unknown locations)",
    "coordinates_out_of_range": "the coordinates lie outside the valid range of their CRS",
    "missing_offense": "the offence is empty",
    "offense_not_listed": "the offence is not in incidents.offenses",
    "before_earliest_date": "the occurrence is before incidents.earliest_date",
    "future_date": "the occurrence is after incidents.latest_date (default: today)",
    "duplicate": "an exact duplicate of an earlier record",
    "outside_boundary": "the point lies outside the study-area boundary",
    "cell_outside_area": "the point is inside the boundary but its grid cell's centre is not",
}

# reasons that only arise with an offence mapping or several sources (counted when they occur)
SOURCE_REASONS: dict[str, str] = {
    "source_misplaced": "the source as a whole does not fit where its points should be (lat/lon swapped or "
                        "another CRS: see the detail); none of its rows is used",
    "offense_not_mapped": "the source's offence label is not in its offense_map",
    "duplicate_across_sources": "the same incident as a row of an earlier source (same offence group, within "
                                "dedupe.time_tolerance_minutes and dedupe.distance_m)",
}
# every reason in the order the checks run
ALL_REASONS: dict[str, str] = {}
for _name, _text in REASONS.items():
    ALL_REASONS[_name] = _text
    if _name == "coordinates_out_of_range":
        ALL_REASONS["source_misplaced"] = SOURCE_REASONS["source_misplaced"]
    if _name == "missing_offense":
        ALL_REASONS["offense_not_mapped"] = SOURCE_REASONS["offense_not_mapped"]
    if _name == "duplicate":
        ALL_REASONS["duplicate_across_sources"] = SOURCE_REASONS["duplicate_across_sources"]

ACCEPTED_COLUMNS = ["occurred_at", "offense", "lon", "lat", "x", "y", "cell", "source", "source_row", "hour"]
# plus "premises" (categorical) when a source configures incidents.premises, and "place" (the area label the source
# gives, None where it has none) when one configures incidents.place


@dataclass(frozen=True)
class ValidatedIncidents:
    accepted: pd.DataFrame  # ACCEPTED_COLUMNS; `cell` is the compact grid index
    quarantine: pd.DataFrame  # source row values + source, source_row, reason, detail
    area: StudyArea
    grid: Grid
    fingerprint: str  # sha256 of the input files' bytes (short); of the stored record keys when from the history
    n_read: int
    read_by_source: dict[str, int] = field(default_factory=dict)
    history: Path | None = None  # the stored history the rows came from, when they did

    def reason_counts(self) -> dict[str, int]:
        """Rows quarantined per reason: every reason of REASONS, and the source reasons that occurred."""
        counts = self.quarantine["reason"].value_counts()
        return {reason: int(counts.get(reason, 0)) for reason in ALL_REASONS
                if reason in REASONS or counts.get(reason, 0)}

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Per source: rows read, accepted, quarantined and quarantined per reason (reasons that occurred)."""
        names = list(self.read_by_source) or sorted(set(self.accepted["source"]))
        accepted = self.accepted["source"].value_counts()
        table = {}
        for name in names:
            q = self.quarantine.loc[self.quarantine["source"] == name, "reason"].value_counts()
            table[name] = {"read": int(self.read_by_source.get(name, accepted.get(name, 0) + q.sum())),
                           "accepted": int(accepted.get(name, 0)), "quarantined": int(q.sum()),
                           **{f"quarantined_{r}": int(q[r]) for r in ALL_REASONS if q.get(r, 0)}}
        return table


def offense_groups(cfg: StudyConfig, offenses: pd.Series) -> list[str]:
    """The area's offence groups: the sources' offenses lists when every source has one, else those seen."""
    listed = [s.offenses or [] for s in cfg.sources]
    if all(listed):
        return list(dict.fromkeys(o for offenses_ in listed for o in offenses_))
    return sorted(offenses.unique())


def validate(cfg: StudyConfig, today: date | None = None) -> ValidatedIncidents:
    """Read the incidents, apply every check, build the study area and grid, and split accepted / quarantined.

    When `hotspot ingest` has stored a history for this config (features.history), the rows come from it instead
    of the source files: they passed the record-level checks when they were stored, and the spatial checks run
    here on the whole history, so a history built by appends gives the same result as one ingest of everything.
    """
    stored = history.stored_file(cfg)
    if stored is not None:
        rows, fingerprint = history.load(cfg)
        read = rows["source"].value_counts().to_dict()
        return place(cfg, Candidates(rows, no_quarantine(), {}, {k: int(v) for k, v in read.items()}, fingerprint),
                     history_file=stored)
    return place(cfg, read_sources(cfg, today))


def place(cfg: StudyConfig, found: Candidates, history_file: Path | None = None) -> ValidatedIncidents:
    """The spatial checks: study area (boundary or derived), outside_boundary, grid, cell_outside_area."""
    rows = found.rows.reset_index(drop=True)
    n = len(rows)
    lon, lat = rows["lon"].to_numpy(dtype=float), rows["lat"].to_numpy(dtype=float)
    reason = np.full(n, "", dtype=object)
    coord_text = np.char.add(np.char.add("lon,lat=", lon.astype(str)), np.char.add(",", lat.astype(str)))
    if n == 0:
        raise nothing_passed(found)
    area = read_boundary(cfg.area) if cfg.area.boundary else derive_boundary(cfg.area, lon, lat)
    grid = Grid.from_area(area, cfg.area.cell_size_m, cfg.area.max_cells)
    from hotspot.features.engine import current

    client = current()
    if client is not None:  # the Dask engine: the same join, by chunks on the workers
        from hotspot.features.partitioned import locate

        x, y, inside, located = locate(client, area, grid, lon, lat)
    else:
        to_area = Transformer.from_crs(WGS84, area.crs, always_xy=True)
        x, y = to_area.transform(lon, lat)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        inside = area.contains(x, y)
        located = None
    reason[~inside] = "outside_boundary"
    ok = reason == ""
    cell = np.full(n, -1, dtype=np.int32)
    cell[ok] = grid.locate(x[ok], y[ok]) if located is None else located[ok]
    reason[ok & (cell < 0)] = "cell_outside_area"

    ok = reason == ""
    acc = rows.loc[ok]
    accepted = pd.DataFrame({
        "occurred_at": acc["occurred_at"].to_numpy(dtype="datetime64[ns]"),
        "offense": pd.Categorical(acc["offense"].to_numpy(dtype=object),
                                  categories=offense_groups(cfg, acc["offense"])),
        "lon": lon[ok], "lat": lat[ok], "x": x[ok], "y": y[ok], "cell": cell[ok],
        "source": acc["source"].to_numpy(dtype=object),
        "source_row": acc["source_row"].to_numpy(dtype=np.int64),
    })
    accepted["hour"] = accepted["occurred_at"].dt.hour.astype(np.int8)
    if any(s.premises for s in cfg.sources):
        premises = acc["premises"].astype("string").fillna("unknown").to_numpy(dtype=object)
        accepted["premises"] = pd.Categorical(premises)
    if any(s.place for s in cfg.sources):
        accepted["place"] = acc["place"].astype("string").to_numpy(dtype=object, na_value=None)
    order = {s.name: k for k, s in enumerate(cfg.sources)}
    accepted = accepted.sort_values(["source", "source_row"], key=lambda c: c.map(order) if c.name == "source"
                                    else c, kind="stable")

    spatial = []
    for name, idx in rows.loc[~ok].groupby("source", sort=False).groups.items():
        idx = np.asarray(idx)
        raw = found.raw.get(name)
        source_rows = rows.loc[idx, "source_row"].to_numpy()
        shown = raw.loc[source_rows] if raw is not None else rows.loc[idx, ["occurred_at", "offense"]]
        spatial.append(quarantine_frame(name, source_rows, reason[idx], coord_text[idx], shown))
    quarantine = combine_quarantine([found.quarantine, *spatial], [s.name for s in cfg.sources])
    return ValidatedIncidents(
        accepted=accepted.reset_index(drop=True),
        quarantine=quarantine,
        area=area,
        grid=grid,
        fingerprint=found.fingerprint,
        n_read=sum(found.read_by_source.values()),
        read_by_source=dict(found.read_by_source),
        history=history_file,
    )


def write_quarantine(result: ValidatedIncidents, out_dir: Path) -> Path:
    """Write the quarantined rows with their reason as CSV (readable by anyone) atomically; return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return safe_csv.write_csv(result.quarantine, out_dir / "quarantine.csv")
