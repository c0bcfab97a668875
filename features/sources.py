"""One incident source: read it, screen its columns for personal data, check every row, map it onto the area's
offence groups, and catch a whole source that is read wrongly (date format, lat/lon swap, wrong CRS).

`check_source` returns the candidate rows (the record-level checks passed; the spatial checks need the whole area
and run in features.ingest) and the quarantined ones. Several sources are then merged and their cross-source
duplicates removed by `drop_cross_source_duplicates`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import numpy as np
import pandas as pd
from pyproj import CRS, Transformer

from hotspot.features.area import WGS84
from hotspot.features.config import IncidentsConfig, StudyConfig
from hotspot.features.errors import InputError
from hotspot.features.privacy import screen
from hotspot.features.quarantine import quarantine_frame

# the columns of a candidate row: what the history stores and the spatial checks need
CANDIDATE_COLUMNS = ["occurred_at", "offense", "lon", "lat", "source", "source_row", "premises", "place", "record_key"]


@dataclass
class SourceRows:
    source: IncidentsConfig
    candidates: pd.DataFrame  # CANDIDATE_COLUMNS
    quarantine: pd.DataFrame  # source, source_row, reason, detail + the raw columns (personal fields dropped)
    raw: pd.DataFrame  # the raw columns that may be shown in the quarantine file, by source_row
    n_read: int
    problem: str | None = None  # why the source as a whole was refused (lat/lon swapped, wrong CRS)


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
                f"(check the [incidents] column mapping of source '{src.name}')"
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


def check_parsed(src: IncidentsConfig, n_present: int, n_unparseable: int, sample) -> None:
    """Refuse a source whose timestamps mostly do not parse (the format is wrong, not a few rows)."""
    if n_present >= 10 and n_unparseable > n_present / 2:
        fmt = src.timestamp_format or "ISO8601"
        raise InputError(
            f"source '{src.name}': column '{src.timestamp}' does not parse as "
            f"{'ISO 8601' if fmt == 'ISO8601' else repr(fmt)} for {n_unparseable:,} of {n_present:,} rows, "
            f"e.g. {sample!r}; set timestamp_format for this source")


def _raw_coordinates(df: pd.DataFrame, src: IncidentsConfig):
    if "__x" in df.columns:  # GeoJSON geometry
        return df["__x"], df["__y"], CRS(df["__crs"].iloc[0]), ("geometry.x", "geometry.y")
    if src.lon is not None:
        return df[src.lon], df[src.lat], CRS.from_user_input(src.crs), (src.lon, src.lat)
    return df[src.x], df[src.y], CRS.from_user_input(src.crs), (src.x, src.y)


def to_lonlat(av: np.ndarray, bv: np.ndarray, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat of finite coordinates in `crs`; NaN where a value does not map back to itself."""
    if crs.equals(WGS84):
        return av.copy(), bv.copy()
    tx, ty = Transformer.from_crs(crs, WGS84, always_xy=True).transform(av, bv)
    # a value far outside the CRS's domain can land on a plausible lon/lat; it does not map back to itself
    bx, by = Transformer.from_crs(WGS84, crs, always_xy=True).transform(tx, ty)
    with np.errstate(invalid="ignore"):
        back = np.isclose(bx, av, rtol=1e-6, atol=1e-6) & np.isclose(by, bv, rtol=1e-6, atol=1e-6)
    return np.where(back, tx, np.nan), np.where(back, ty, np.nan)


def _coordinates(df: pd.DataFrame, src: IncidentsConfig):
    """Return lon, lat (WGS84), the raw values and masks for missing / invalid / zero / out-of-range coordinates."""
    a, b, crs, names = _raw_coordinates(df, src)
    missing = (a.isna() | b.isna()).to_numpy() | (a.astype("string").str.strip() == "").fillna(False).to_numpy()
    av = pd.to_numeric(a, errors="coerce").to_numpy(dtype=float)
    bv = pd.to_numeric(b, errors="coerce").to_numpy(dtype=float)
    invalid = ~missing & ~(np.isfinite(av) & np.isfinite(bv))
    zero = ~missing & ~invalid & (av == 0) & (bv == 0)
    ok = ~(missing | invalid | zero)
    lon = np.full(len(df), np.nan)
    lat = np.full(len(df), np.nan)
    lon[ok], lat[ok] = to_lonlat(av[ok], bv[ok], crs)
    bounds = crs.area_of_use.bounds if crs.area_of_use is not None else (-180.0, -90.0, 180.0, 90.0)
    w, s, e, n = bounds
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(lon) & np.isfinite(lat) & (lon >= w - 1) & (lon <= e + 1) & (lat >= s - 1) & (
            lat <= n + 1) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    out_of_range = ok & ~in_range
    return lon, lat, (av, bv, crs), missing, invalid, zero, out_of_range, names


def record_keys(df: pd.DataFrame, src: IncidentsConfig, columns: list[str]) -> np.ndarray:
    """A stable key per row: a hash of the source's key column, else of the row's values on `columns`.

    The key never holds a record id in clear (it is hashed with the source name).
    """
    if src.key:
        if src.key not in df.columns:
            raise InputError(f"source '{src.name}': key column '{src.key}' not found in {src.path.name}")
        values = df[src.key].astype("string").fillna("")
    else:
        values = pd.Series(pd.util.hash_pandas_object(df[columns].astype("string"), index=False).to_numpy(),
                           index=df.index).astype("string")
    return np.array([hashlib.sha256(f"{src.name}\x1f{v}".encode()).hexdigest()[:32] for v in values], dtype=object)


@dataclass
class RowChecks:
    """The record-level checks of some rows of a source that need no other row (features/partitioned.py runs them
    per partition): the first failing reason and its detail per row, with what the whole-source checks need."""

    reason: np.ndarray
    detail: np.ndarray
    placed: np.ndarray  # rows whose coordinates could be placed (the whole-source placement check looks at these)
    coords_ok: np.ndarray  # rows without a timestamp or coordinate problem (a misplaced source flags them all)
    ts: pd.Series
    lon: np.ndarray
    lat: np.ndarray
    raw_a: np.ndarray  # the coordinates as numbers in the source's CRS
    raw_b: np.ndarray
    crs: CRS
    raw_text: np.ndarray
    offense: pd.Series
    ts_present: int
    ts_unparseable: int
    ts_sample: str | None  # the first unparseable timestamp, for the message

    @classmethod
    def concat(cls, parts: list[RowChecks]) -> RowChecks:
        """The checks of consecutive partitions as one (row order kept)."""
        if len(parts) == 1:
            return parts[0]
        arrays = {name: np.concatenate([getattr(p, name) for p in parts])
                  for name in ("reason", "detail", "placed", "coords_ok", "lon", "lat", "raw_a", "raw_b", "raw_text")}
        samples = [p.ts_sample for p in parts if p.ts_sample is not None]
        return cls(**arrays, ts=pd.concat([p.ts for p in parts], ignore_index=True), crs=parts[0].crs,
                   offense=pd.concat([p.offense for p in parts], ignore_index=True),
                   ts_present=sum(p.ts_present for p in parts), ts_unparseable=sum(p.ts_unparseable for p in parts),
                   ts_sample=samples[0] if samples else None)


def row_checks(src: IncidentsConfig, df: pd.DataFrame, today: date | None = None) -> RowChecks:
    """The record-level checks, in the order of features.ingest.ALL_REASONS, that look at one row at a time."""
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
    sample = None
    if ts_bad.any():
        sample = df[src.timestamp].astype("string").str.strip()[ts_bad].iloc[0]

    lon, lat, raw_xy, c_missing, c_invalid, c_zero, c_range, names = _coordinates(df, src)
    raw_a, raw_b = (df["__x"], df["__y"]) if "__x" in df.columns else (df[names[0]], df[names[1]])
    raw_text = f"{names[0]},{names[1]}=" + (raw_a.astype("string").fillna("<empty>") + "," + raw_b.astype(
        "string").fillna("<empty>")).to_numpy(dtype=object)
    flag(c_missing, "missing_coordinates", f"{names[0]},{names[1]} empty")
    flag(c_invalid, "invalid_coordinates", raw_text)
    flag(c_zero, "zero_coordinates", f"{names[0]},{names[1]}=0,0")
    flag(c_range, "coordinates_out_of_range", raw_text)
    coords_ok = reason == ""
    placed = coords_ok | c_range

    label = df[src.offense].astype("string").str.strip()
    off_missing = (label.isna() | (label == "")).to_numpy()
    flag(off_missing, "missing_offense", f"{src.offense} empty")
    label_text = (src.offense + "=" + label.fillna("")).to_numpy(dtype=object)
    if src.offense_map is not None:
        offense = label.map(src.offense_map).astype("string")
        flag(offense.isna().to_numpy(), "offense_not_mapped", label_text)
    else:
        offense = label
    if src.offenses is not None:
        listed = offense.isin(src.offenses).fillna(False).to_numpy()
        flag(~listed, "offense_not_listed", label_text)

    day = ts.dt.normalize()
    if src.earliest_date is not None:
        flag((day < pd.Timestamp(src.earliest_date)).fillna(False).to_numpy(), "before_earliest_date", ts_text)
    latest = pd.Timestamp(src.latest_date or today or date.today())
    flag((day > latest).fillna(False).to_numpy(), "future_date", ts_text)
    av, bv, crs = raw_xy
    return RowChecks(reason, detail, placed, coords_ok, ts.reset_index(drop=True), lon, lat, av, bv, crs, raw_text,
                     offense.reset_index(drop=True), int((~ts_missing).sum()), int(ts_bad.sum()), sample)


def check_source(cfg: StudyConfig, src: IncidentsConfig, today: date | None = None, reference=None) -> SourceRows:
    """Read one source and apply the record-level checks in the order of features.ingest.ALL_REASONS: the row-by-
    row ones (`row_checks`; by part on the Dask engine, features/partitioned.py), then the whole-source ones.

    `reference`: (inside(lon, lat) -> mask, description) where the points should lie, for the whole-source check;
    absent = the boundary or the area CRS's area of use, when the config has one."""
    df = read_table(src)
    return finish_source(cfg, src, df, row_checks(src, df, today), reference)


def finish_source(cfg: StudyConfig, src: IncidentsConfig, df: pd.DataFrame, checks: RowChecks,
                  reference=None) -> SourceRows:
    """The checks that need the whole source (timestamps that mostly fail, a misplaced source, duplicates), then
    the candidate rows and the quarantine."""
    personal = screen(df, src, cfg.personal_data)
    check_parsed(src, checks.ts_present, checks.ts_unparseable, checks.ts_sample)
    n = len(df)
    reason, detail = checks.reason.copy(), checks.detail.copy()

    def flag(mask: np.ndarray, name: str, what: pd.Series | np.ndarray | str) -> None:
        new = mask & (reason == "")
        if new.any():
            reason[new] = name
            detail[new] = what[new] if not isinstance(what, str) else what

    misplaced = check_placement(cfg, src, checks.lon, checks.lat, (checks.raw_a, checks.raw_b, checks.crs),
                                checks.placed, reference)
    problem = misplaced.message if misplaced else None
    if misplaced is not None:  # every row of the source is suspect: none is used, each says why in short (the
        # whole finding, with the figures and what to change, is the run's error message and validation.json);
        # it comes before the offence and date reasons, which the row checks gave these rows
        mask = checks.coords_ok
        reason[mask] = "source_misplaced"
        detail[mask] = (checks.raw_text + f" ({misplaced.cause}, like the whole source)")[mask]

    dup_cols = src.duplicate_columns or [c for c in df.columns if not c.startswith("__")]
    unknown = [c for c in dup_cols if c not in df.columns]
    if unknown:
        raise InputError(f"{src.path}: incidents.duplicate_columns {unknown} are not columns of the file")
    ok = reason == ""
    dup = np.zeros(n, dtype=bool)
    dup[ok] = df.loc[ok, dup_cols].duplicated(keep="first").to_numpy()
    flag(dup, "duplicate", "repeats an earlier row on " + ",".join(dup_cols))
    keys = record_keys(df, src, dup_cols)
    if src.key:
        ok = reason == ""
        repeated = np.zeros(n, dtype=bool)
        repeated[ok] = pd.Series(keys[ok]).duplicated(keep="first").to_numpy()
        flag(repeated, "duplicate", f"repeats an earlier row's key {src.key}")

    ok = reason == ""
    candidates = pd.DataFrame({
        "occurred_at": checks.ts[ok].to_numpy(dtype="datetime64[ns]"),
        "offense": checks.offense[ok].to_numpy(dtype=object),
        "lon": checks.lon[ok], "lat": checks.lat[ok],
        "source": src.name,
        "source_row": np.flatnonzero(ok).astype(np.int64),
        "premises": None, "place": None, "record_key": keys[ok],
    })
    if src.premises:
        if src.premises not in df.columns:
            raise InputError(f"{src.path}: premises column '{src.premises}' not found (incidents.premises)")
        premises = df.loc[ok, src.premises].astype("string").str.strip().fillna("unknown").replace("", "unknown")
        candidates["premises"] = premises.to_numpy(dtype=object)
    if src.place:
        if src.place not in df.columns:
            raise InputError(f"{src.path}: place column '{src.place}' not found (incidents.place)")
        place = df.loc[ok, src.place].astype("string").str.strip().replace("", pd.NA)
        candidates["place"] = place.to_numpy(dtype=object, na_value=None)
    # what the quarantine file may show: the row as read, without personal fields (case numbers stay, to trace it)
    shown = [c for c in df.columns if not c.startswith("__") and personal.get(c) != "personal"]
    raw = df[shown]
    bad = ~ok
    quarantine = quarantine_frame(src.name, np.flatnonzero(bad), reason[bad], detail[bad], raw.loc[bad])
    return SourceRows(src, candidates, quarantine, raw, n, problem)


# ------------------------------------------------------------------ whole-source sanity checks


def _reference(cfg: StudyConfig, src: IncidentsConfig):
    """A test `inside(lon, lat) -> mask` for where this source's points should be, or None when nothing says."""
    if cfg.area.boundary is not None:
        from hotspot.features.area import read_boundary

        area = read_boundary(cfg.area)
        to_area = Transformer.from_crs(WGS84, area.crs, always_xy=True)

        def inside(lon, lat):
            x, y = to_area.transform(lon, lat)
            return area.contains(np.asarray(x), np.asarray(y))
        return inside, "the study-area boundary"
    if cfg.area.crs is not None:
        bounds = CRS.from_user_input(cfg.area.crs).area_of_use
        if bounds is not None:
            w, s, e, n = bounds.bounds

            def inside(lon, lat):
                return (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
            return inside, f"the area of use of {cfg.area.crs}"
    return None


def points_reference(candidates: pd.DataFrame, name: str):
    """Where another source's points lie (their central 98%, widened by its own size), as a reference."""
    if len(candidates) < 10:
        return None
    lo_lon, hi_lon = np.nanpercentile(candidates["lon"], [1, 99])
    lo_lat, hi_lat = np.nanpercentile(candidates["lat"], [1, 99])
    pad_lon, pad_lat = max(hi_lon - lo_lon, 0.01), max(hi_lat - lo_lat, 0.01)

    def inside(lon, lat):
        return (lon >= lo_lon - pad_lon) & (lon <= hi_lon + pad_lon) & (lat >= lo_lat - pad_lat) & (
            lat <= hi_lat + pad_lat)
    return inside, f"the area of source '{name}'"


def land_reference():
    """Where incident data can be at all, when the config says nothing more: on land, outside Antarctica.

    A weak reference: it cannot tell one city from another, so it only decides between two readings of the same
    values (as given, or swapped) when one of them is plainly impossible."""
    from global_land_mask import globe  # a 1 km land/sea raster as a NumPy array (2 MB), no network

    def inside(lon, lat):
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (lat >= -60) & (lat <= 90)
        found = np.zeros(lon.shape, dtype=bool)
        if valid.any():
            found[valid] = globe.is_land(lat[valid], lon[valid])
        return found
    return inside, "inhabited land (the config names no boundary or area.crs)"


# with the weak reference, a reading counts as impossible below this share and as plausible above the other
LAND_IMPOSSIBLE, LAND_PLAUSIBLE = 0.1, 0.8


def _share(inside, lon, lat) -> float:
    if not len(lon):
        return 0.0
    with np.errstate(invalid="ignore"):
        return float(np.mean(inside(lon, lat) & np.isfinite(lon) & np.isfinite(lat)))


def _looks_projected(a: np.ndarray, b: np.ndarray) -> bool:
    """Most values too large for degrees: metres or feet of a projected CRS read as lon/lat."""
    with np.errstate(invalid="ignore"):
        return float(np.mean((np.abs(a) > 180) | (np.abs(b) > 90))) > 0.5


class Misplaced(NamedTuple):
    """Why a source as a whole cannot be placed: in short (`cause`) and with its figures and the fix (`message`)."""

    cause: str
    message: str


def check_placement(cfg: StudyConfig, src: IncidentsConfig, lon, lat, raw_xy, ok: np.ndarray,
                    reference=None) -> Misplaced | None:
    """Why this source as a whole cannot be placed (lat/lon swapped, values in another CRS), or None.

    Most of its points must miss where they should be (the boundary, the area CRS's area of use, an earlier
    source's points, or at least inhabited land) while the values would fit read another way."""
    ref, weak = reference or _reference(cfg, src), False
    if ref is None:
        ref, weak = land_reference(), True
    if ok.sum() < 10:
        return None
    inside, what = ref
    av, bv, crs = raw_xy
    a, b = av[ok], bv[ok]
    share = _share(inside, lon[ok], lat[ok])
    if share >= (LAND_IMPOSSIBLE if weak else 0.5):
        return None
    names = f"{src.lon},{src.lat}" if src.lon is not None else f"{src.x},{src.y}"
    # swap the two coordinate columns and read them again in the configured CRS
    slon, slat = to_lonlat(b, a, crs)
    swapped = _share(inside, slon, slat)
    if swapped > (LAND_PLAUSIBLE if weak else 0.5):
        return _misplaced(src, "lat/lon look swapped", f"{1 - share:.0%} of its points fall outside {what}, "
                          f"{swapped:.0%} fit when the two coordinate columns ({names}) are exchanged (check lon/lat "
                          f"or x/y in its config; file {src.path})")
    candidates = {"EPSG:4326", "EPSG:3857", *(s.crs for s in cfg.sources)}
    if cfg.area.crs:
        candidates.add(cfg.area.crs)
    if weak:  # land is too large a target for a projected reading to prove anything; degrees it can
        candidates = {"EPSG:4326"}
    for other in sorted(candidates):
        other_crs = CRS.from_user_input(other)
        if other_crs.equals(crs):
            continue
        try:
            olon, olat = to_lonlat(a, b, other_crs)
            fits = _share(inside, olon, olat)
        except Exception:  # noqa: BLE001 - a candidate CRS that cannot take these values simply does not fit
            continue
        if fits > (LAND_PLAUSIBLE if weak else 0.5):
            return _misplaced(src, f"coordinates do not fit crs {src.crs}", f"{1 - share:.0%} of its points fall "
                              f"outside {what}; read as {other} {fits:.0%} fit (set crs for this source; file "
                              f"{src.path})")
    if crs.is_geographic and _looks_projected(a, b):
        lo_a, hi_a = np.nanpercentile(a, [1, 99])
        lo_b, hi_b = np.nanpercentile(b, [1, 99])
        return _misplaced(src, f"coordinates do not fit crs {src.crs}", f"{names} run from {lo_a:,.0f} to "
                          f"{hi_a:,.0f} and {lo_b:,.0f} to {hi_b:,.0f}, which look like projected metres or feet, "
                          f"not degrees; give them as x/y with the crs they are in (e.g. x = \"{names.split(',')[0]}\","
                          f" y = \"{names.split(',')[1]}\", crs = \"EPSG:....\"; file {src.path})")
    return None


def _misplaced(src: IncidentsConfig, cause: str, details: str) -> Misplaced:
    return Misplaced(cause, f"source '{src.name}': {cause}: {details}")


# ------------------------------------------------------------------ cross-source duplicates


def drop_cross_source_duplicates(cfg: StudyConfig, pool: pd.DataFrame, new: pd.DataFrame
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of `new` repeat a row of `pool` (another source): same offence group, within the time tolerance
    and the distance. Returns (mask over new, index into pool of the row each repeats, -1 if none)."""
    from scipy.spatial import cKDTree

    match = np.full(len(new), -1, dtype=np.int64)
    if pool.empty or new.empty or not cfg.dedupe.enabled:
        return match >= 0, match
    tol_s = max(cfg.dedupe.time_tolerance_minutes * 60.0, 1e-3)
    dist = max(cfg.dedupe.distance_m, 1e-3)
    lat0 = float(np.nanmean(pool["lat"]))
    lon0 = float(np.nanmean(pool["lon"]))

    def scaled(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = (frame["lon"].to_numpy() - lon0) * 111_320.0 * np.cos(np.radians(lat0))
        y = (frame["lat"].to_numpy() - lat0) * 110_540.0
        t = (frame["occurred_at"].to_numpy().astype("datetime64[s]").astype(np.int64)).astype(float)
        return np.column_stack([x / dist, y / dist, (t - t.min() if len(t) else t) / tol_s]), x, y, t

    pool_pts, px, py, pt = scaled(pool)
    new_pts, nx, ny, nt = scaled(new)
    new_pts[:, 2] = (nt - pt.min()) / tol_s
    pool_pts[:, 2] = (pt - pt.min()) / tol_s
    pool_off = pool["offense"].astype(str).to_numpy()
    new_off = new["offense"].astype(str).to_numpy()
    tree = cKDTree(pool_pts)
    near = tree.query_ball_point(new_pts, r=1.0 + 1e-9, p=np.inf)
    lengths = np.fromiter((len(v) for v in near), dtype=np.int64, count=len(near))
    if lengths.sum() == 0:
        return match >= 0, match
    rows = np.repeat(np.arange(len(new)), lengths)
    cols = np.fromiter((j for v in near for j in v), dtype=np.int64, count=int(lengths.sum()))
    good = (np.hypot(nx[rows] - px[cols], ny[rows] - py[cols]) <= cfg.dedupe.distance_m + 1e-6) & (
        new_off[rows] == pool_off[cols])
    rows, cols = rows[good], cols[good]
    order = np.lexsort((cols, rows))  # the earliest pool row for each repeated row
    rows, cols = rows[order], cols[order]
    first = np.unique(rows, return_index=True)[1]
    match[rows[first]] = cols[first]
    return match >= 0, match
