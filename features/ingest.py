"""Reading and validating incident records.

Every row either becomes an accepted incident or is set aside in the quarantine table with a reason and the
offending value; nothing is dropped silently. The checks run in the order of REASONS and a row carries the first
reason it fails.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pyproj import CRS, Transformer

from features.area import WGS84, StudyArea, derive_boundary, read_boundary
from features.config import IncidentsConfig, StudyConfig
from features.errors import InputError
from features.grid import Grid

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

ACCEPTED_COLUMNS = ["occurred_at", "offense", "lon", "lat", "x", "y", "cell", "source", "source_row", "hour"]
# plus "premises" (categorical) when incidents.premises is configured


@dataclass(frozen=True)
class ValidatedIncidents:
    accepted: pd.DataFrame  # ACCEPTED_COLUMNS; `cell` is the compact grid index
    quarantine: pd.DataFrame  # source row values + source, source_row, reason, detail
    area: StudyArea
    grid: Grid
    fingerprint: str  # sha256 of the input files' bytes (short)
    n_read: int

    def reason_counts(self) -> dict[str, int]:
        counts = self.quarantine["reason"].value_counts()
        return {reason: int(counts.get(reason, 0)) for reason in REASONS}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(src: IncidentsConfig) -> pd.DataFrame:
    """Read the incident file as configured and check that the mapped columns exist."""
    path, fmt = src.path, src.file_format
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        elif fmt == "csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        else:
            import geopandas as gpd

            gdf = gpd.read_file(path)
            kinds = set(gdf.geom_type.dropna())
            if kinds - {"Point"}:
                raise InputError(f"{path}: incident GeoJSON must hold points, found {sorted(kinds)}")
            pts = gdf.geometry
            crs = gdf.crs or WGS84
            df = pd.DataFrame(gdf.drop(columns="geometry"))
            df["__x"], df["__y"], df["__crs"] = pts.x.to_numpy(), pts.y.to_numpy(), CRS(crs).to_string()
    except InputError:
        raise
    except Exception as exc:  # parser errors differ by engine; name the file and the cause
        raise InputError(f"{path}: cannot read as {fmt} ({type(exc).__name__}: {exc})") from None
    if fmt != "geojson":
        needed = [src.timestamp, src.offense] + [c for c in (src.lon, src.lat, src.x, src.y) if c]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise InputError(
                f"{path}: column(s) {missing} not found; the file has {list(df.columns)[:30]} "
                f"(check the [incidents] column mapping)"
            )
    elif src.timestamp not in df.columns or src.offense not in df.columns:
        missing = [c for c in (src.timestamp, src.offense) if c not in df.columns]
        raise InputError(f"{path}: column(s) {missing} not found; the file has {list(df.columns)[:30]}")
    if df.empty:
        raise InputError(f"{path}: the file has no rows")
    return df.reset_index(drop=True)


def _parse_timestamps(raw: pd.Series, src: IncidentsConfig) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse to naive datetime64; return (parsed, missing mask, unparseable mask)."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC").dt.tz_localize(None)
        missing = parsed.isna().to_numpy()
        return parsed, missing, np.zeros(len(raw), dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        missing = raw.isna().to_numpy()
        return raw.astype("datetime64[ns]"), missing, np.zeros(len(raw), dtype=bool)
    text = raw.astype("string").str.strip()
    missing = (text.isna() | (text == "")).to_numpy()
    fmt = src.timestamp_format or "ISO8601"
    parsed = pd.to_datetime(text.where(~missing), format=fmt, errors="coerce", utc=True)
    parsed = parsed.dt.tz_localize(None)
    unparseable = parsed.isna().to_numpy() & ~missing
    return parsed, missing, unparseable


def _coordinates(df: pd.DataFrame, src: IncidentsConfig):
    """Return lon, lat (WGS84) and masks for missing / invalid / zero / out-of-range coordinates."""
    if "__x" in df.columns:  # GeoJSON geometry
        a, b, crs = df["__x"], df["__y"], CRS(df["__crs"].iloc[0])
        names = ("geometry.x", "geometry.y")
    elif src.lon is not None:
        a, b, crs = df[src.lon], df[src.lat], CRS.from_user_input(src.crs)
        names = (src.lon, src.lat)
    else:
        a, b, crs = df[src.x], df[src.y], CRS.from_user_input(src.crs)
        names = (src.x, src.y)
    missing = (a.isna() | b.isna()).to_numpy() | (a.astype("string").str.strip() == "").fillna(False).to_numpy()
    av = pd.to_numeric(a, errors="coerce").to_numpy(dtype=float)
    bv = pd.to_numeric(b, errors="coerce").to_numpy(dtype=float)
    invalid = ~missing & ~(np.isfinite(av) & np.isfinite(bv))
    zero = ~missing & ~invalid & (av == 0) & (bv == 0)
    ok = ~(missing | invalid | zero)
    lon = np.full(len(df), np.nan)
    lat = np.full(len(df), np.nan)
    if crs.equals(WGS84):
        lon[ok], lat[ok] = av[ok], bv[ok]
    else:
        tx, ty = Transformer.from_crs(crs, WGS84, always_xy=True).transform(av[ok], bv[ok])
        # a value far outside the CRS's domain can land on a plausible lon/lat; it does not map back to itself
        bx, by = Transformer.from_crs(WGS84, crs, always_xy=True).transform(tx, ty)
        with np.errstate(invalid="ignore"):
            back = np.isclose(bx, av[ok], rtol=1e-6, atol=1e-6) & np.isclose(by, bv[ok], rtol=1e-6, atol=1e-6)
        lon[ok], lat[ok] = np.where(back, tx, np.nan), np.where(back, ty, np.nan)
    bounds = crs.area_of_use.bounds if crs.area_of_use is not None else (-180.0, -90.0, 180.0, 90.0)
    w, s, e, n = bounds
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(lon) & np.isfinite(lat) & (lon >= w - 1) & (lon <= e + 1) & (lat >= s - 1) & (
            lat <= n + 1) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    out_of_range = ok & ~in_range
    return lon, lat, missing, invalid, zero, out_of_range, names


def validate(cfg: StudyConfig, today: date | None = None) -> ValidatedIncidents:
    """Read the incidents, apply every check, build the study area and grid, and split accepted / quarantined."""
    src = cfg.incidents
    df = read_table(src)
    n = len(df)
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, name: str, what: pd.Series | np.ndarray | str) -> None:
        new = mask & (reason == "")
        if new.any():
            reason[new] = name
            detail[new] = what[new] if not isinstance(what, str) else what

    ts, ts_missing, ts_bad = _parse_timestamps(df[src.timestamp], src)
    ts_text = src.timestamp + "=" + df[src.timestamp].astype("string").fillna("<empty>").to_numpy(dtype=object)
    flag(ts_missing, "missing_timestamp", ts_text)
    flag(ts_bad, "unparseable_timestamp", ts_text)

    lon, lat, c_missing, c_invalid, c_zero, c_range, names = _coordinates(df, src)
    # the WGS84 position the boundary checks use, and the coordinates as the file holds them
    coord_text = np.char.add(np.char.add("lon,lat=", lon.astype(str)), np.char.add(",", lat.astype(str)))
    raw_a, raw_b = (df["__x"], df["__y"]) if "__x" in df.columns else (df[names[0]], df[names[1]])
    raw_text = f"{names[0]},{names[1]}=" + (raw_a.astype("string").fillna("<empty>") + "," + raw_b.astype(
        "string").fillna("<empty>")).to_numpy(dtype=object)
    flag(c_missing, "missing_coordinates", f"{names[0]},{names[1]} empty")
    flag(c_invalid, "invalid_coordinates", raw_text)
    flag(c_zero, "zero_coordinates", f"{names[0]},{names[1]}=0,0")
    flag(c_range, "coordinates_out_of_range", raw_text)

    offense = df[src.offense].astype("string").str.strip()
    off_missing = (offense.isna() | (offense == "")).to_numpy()
    flag(off_missing, "missing_offense", f"{src.offense} empty")
    if src.offenses is not None:
        listed = offense.isin(src.offenses).fillna(False).to_numpy()
        flag(~listed, "offense_not_listed", (src.offense + "=" + offense.fillna("")).to_numpy(dtype=object))

    day = ts.dt.normalize()
    if src.earliest_date is not None:
        flag((day < pd.Timestamp(src.earliest_date)).fillna(False).to_numpy(), "before_earliest_date", ts_text)
    latest = pd.Timestamp(src.latest_date or today or date.today())
    flag((day > latest).fillna(False).to_numpy(), "future_date", ts_text)

    dup_cols = src.duplicate_columns or [c for c in df.columns if not c.startswith("__")]
    unknown = [c for c in dup_cols if c not in df.columns]
    if unknown:
        raise InputError(f"{src.path}: incidents.duplicate_columns {unknown} are not columns of the file")
    ok = reason == ""
    dup = np.zeros(n, dtype=bool)
    dup[ok] = df.loc[ok, dup_cols].duplicated(keep="first").to_numpy()
    flag(dup, "duplicate", "repeats an earlier row on " + ",".join(dup_cols))

    ok = reason == ""
    area = read_boundary(cfg.area) if cfg.area.boundary else derive_boundary(cfg.area, lon[ok], lat[ok])
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    to_area = Transformer.from_crs(WGS84, area.crs, always_xy=True)
    valid_xy = np.isfinite(lon) & np.isfinite(lat)
    x[valid_xy], y[valid_xy] = to_area.transform(lon[valid_xy], lat[valid_xy])
    inside = np.zeros(n, dtype=bool)
    inside[ok] = area.contains(x[ok], y[ok])
    flag(ok & ~inside, "outside_boundary", coord_text)

    grid = Grid.from_area(area, cfg.area.cell_size_m, cfg.area.max_cells)
    ok = reason == ""
    cell = np.full(n, -1, dtype=np.int32)
    cell[ok] = grid.locate(x[ok], y[ok])
    flag(ok & (cell < 0), "cell_outside_area", coord_text)

    ok = reason == ""
    accepted = pd.DataFrame({
        "occurred_at": ts[ok].to_numpy(dtype="datetime64[ns]"),
        "offense": pd.Categorical(offense[ok].to_numpy(dtype=object),
                                  categories=src.offenses or sorted(offense[ok].unique())),
        "lon": lon[ok], "lat": lat[ok], "x": x[ok], "y": y[ok], "cell": cell[ok],
        "source": src.name,
        "source_row": np.flatnonzero(ok).astype(np.int64),
    })
    accepted["hour"] = accepted["occurred_at"].dt.hour.astype(np.int8)
    if src.premises:
        if src.premises not in df.columns:
            raise InputError(f"{src.path}: premises column '{src.premises}' not found (incidents.premises)")
        premises = df.loc[ok, src.premises].astype("string").str.strip().fillna("unknown").replace("", "unknown")
        accepted["premises"] = pd.Categorical(premises.to_numpy(dtype=object))
    bad = ~ok
    quarantine = df.loc[bad, [c for c in df.columns if not c.startswith("__")]].copy()
    quarantine.insert(0, "detail", detail[bad])
    quarantine.insert(0, "reason", reason[bad])
    quarantine.insert(0, "source_row", np.flatnonzero(bad))
    quarantine.insert(0, "source", src.name)
    return ValidatedIncidents(
        accepted=accepted.reset_index(drop=True),
        quarantine=quarantine.reset_index(drop=True),
        area=area,
        grid=grid,
        fingerprint=file_sha256(src.path)[:16],
        n_read=n,
    )


def write_quarantine(result: ValidatedIncidents, out_dir: Path) -> Path:
    """Write the quarantined rows with their reason as CSV (readable by anyone) atomically; return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "quarantine.csv"
    tmp = path.with_suffix(".csv.tmp")
    result.quarantine.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
