"""Trends: counts and rates per offence group and area over time, with a seasonally adjusted change.

Weekly and yearly counts come straight from the panel's (period, cell, group) counts, for the whole study area
and for each area unit of `[trends] areas` (a cell belongs to the unit containing its centre). Rates are per
1,000 residents of the unit when `[trends] population` names a column.

Seasonally adjusted change, kept simple on purpose (no STL): the last 52 weeks against the 52 before them (a year
against a year, so the seasons cancel), and the last `recent_weeks` weeks against the same weeks a year earlier.
Each is a ratio of two Poisson counts a/b; its 95% interval is exp(log(a/b) +- 1.96 sqrt(1/a + 1/b)) (statsmodels'
`confint_poisson_2indep`, method "wald-log"), shown as a percentage change.

Public view (`--public`, `[privacy] public = true`, the API's `public` role): no grid cell, only area units and
blocks of `[privacy] public_cell_size_m` (whole grid cells merged), and every published count below
`[privacy] min_count_k` shown as the string "< k"; rates and changes built on a suppressed count are withheld.
No output here ever holds an incident's coordinates: counts are per cell, block or area.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from statsmodels.stats.rates import confint_poisson_2indep

from hotspot.analysis.disclosure import Relations, complementary_suppression
from hotspot.features.area import WGS84
from hotspot.features.config import StudyConfig
from hotspot.features.errors import InputError
from hotspot.features.grid import Grid
from hotspot.features.locking import savefig_atomically
from hotspot.features.panel import Panel

ALL_GROUPS = "All offences"
WHOLE_AREA = "Whole area"
METHOD = ("Seasonally adjusted change: the last 52 weeks against the 52 weeks before them (year over year, so the "
          "seasons cancel), and the last N weeks against the same N weeks a year earlier; 95% intervals of the "
          "Poisson rate ratio exp(log(a/b) +- 1.96 sqrt(1/a + 1/b)). Recorded incidents are policing data, not "
          "ground truth.")


@dataclass
class Trends:
    """Trend tables; in the public view count columns hold ints or the string '< k'."""

    weekly: pd.DataFrame  # area, group, period_start, count[, rate_per_1000]
    yearly: pd.DataFrame  # area, group, year, weeks, count[, rate_per_1000]
    change: pd.DataFrame  # area, group, last_52w, previous_52w, change_pct, ci95 ..., recent_* ...
    cells: gpd.GeoDataFrame  # one row per grid cell (or public block), WGS84 squares, counts per year
    areas: gpd.GeoDataFrame | None  # area units with their latest year-over-year change (WGS84)
    meta: dict = field(default_factory=dict)

    def to_dict(self, weekly_area: str | None = None) -> dict:
        """JSON-ready dict; `weekly_area` keeps only that area's weekly rows (the API's default is the whole area)."""
        weekly = self.weekly if weekly_area is None else self.weekly[self.weekly["area"] == weekly_area]
        return {**self.meta,
                "weekly": _records(weekly), "yearly": _records(self.yearly), "change": _records(self.change),
                "cells": _geo(self.cells), "areas": _geo(self.areas) if self.areas is not None else None}


def _records(frame: pd.DataFrame) -> list[dict]:
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d")
    out = out.astype(object).where(pd.notna(out), None)
    return [{k: _plain(v) for k, v in row.items()} for row in out.to_dict(orient="records")]


def _plain(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _geo(gdf: gpd.GeoDataFrame) -> dict:
    collection = gdf.to_geo_dict(drop_id=True)
    for feature in collection["features"]:
        feature["properties"] = {k: _plain(v) for k, v in feature["properties"].items()}
    return collection


def slug(text: str) -> str:
    """A name reduced to lower-case letters, digits and underscores (for file and column names)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


# --- area units -----------------------------------------------------------------------------------------------------

def area_units(cfg: StudyConfig, grid: Grid) -> tuple[np.ndarray, list[str], np.ndarray | None,
                                                        gpd.GeoDataFrame | None]:
    """Unit index of each cell (-1 = in no unit), unit names, residents per unit (or None) and the unit polygons."""
    tc = cfg.trends
    if tc.areas is None:
        return np.full(grid.n_cells, -1, dtype=np.int32), [], None, None
    try:
        gdf = gpd.read_file(tc.areas)
    except Exception as exc:  # pyogrio raises several types
        raise InputError(f"{tc.areas}: cannot read the trends areas ({exc})") from None
    columns = [c for c in gdf.columns if c != "geometry"]
    for key, column in (("trends.name_column", tc.name_column), ("trends.population", tc.population)):
        if column is not None and column not in gdf.columns:
            raise InputError(f"{tc.areas}: no column '{column}' (named by {key}); columns: {columns}")
    if gdf.crs is None:
        raise InputError(f"{tc.areas}: the trends areas file has no CRS")
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    gdf = gdf.assign(_name=gdf[tc.name_column].astype(str))
    if tc.population:  # a unit split over several polygons counts its residents once per polygon
        gdf[tc.population] = pd.to_numeric(gdf[tc.population], errors="coerce")
        units = gdf[["_name", tc.population, "geometry"]].dissolve(by="_name", aggfunc="sum")
    else:
        units = gdf[["_name", "geometry"]].dissolve(by="_name")
    units = units.reset_index()
    names = units["_name"].tolist()
    population = (pd.to_numeric(units[tc.population], errors="coerce").to_numpy(dtype=float)
                  if tc.population else None)
    projected = units.to_crs(grid.crs)
    centres = gpd.GeoDataFrame(geometry=gpd.points_from_xy(grid.x, grid.y), crs=grid.crs)
    joined = gpd.sjoin(centres, projected[["geometry"]], predicate="within", how="left")
    joined = joined[~joined.index.duplicated(keep="first")]
    label = joined["index_right"].fillna(-1).to_numpy().astype(np.int32)
    # units with no cell centre lie outside the study area: left out rather than reported as zero
    used = np.unique(label[label >= 0])
    remap = np.full(len(units) + 1, -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    label = remap[label]  # -1 stays -1 (the extra last slot)
    units = units.iloc[used].reset_index(drop=True)
    names = [names[i] for i in used]
    population = None if population is None else population[used]
    shapes = units[["_name", "geometry"]].rename(columns={"_name": "area"}).to_crs(WGS84)
    return label, names, population, shapes


# --- counting -------------------------------------------------------------------------------------------------------

def _by_label(counts: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    """Sum (T, C, G) counts over cells with the same label 0..n-1 -> (T, n, G)."""
    T, _, G = counts.shape
    flat = np.moveaxis(counts, 1, 0).reshape(counts.shape[1], T * G)
    out = np.zeros((n, T * G), dtype=np.int64)
    ok = label >= 0
    np.add.at(out, label[ok], flat[ok])
    return np.moveaxis(out.reshape(n, T, G), 0, 1)


def _with_all(counts: np.ndarray) -> np.ndarray:
    """Append the all-offences total as the last group."""
    return np.concatenate([counts, counts.sum(axis=-1, keepdims=True)], axis=-1)


def rate_ratio(a: float, b: float) -> tuple[float, float, float]:
    """Percentage change a/b - 1 with its 95% Poisson interval (NaN when either count is 0)."""
    if a <= 0 or b <= 0:  # the log-scale interval needs both counts: a fall to 0 is -100% without an interval
        return (math.nan if b <= 0 else -100.0), math.nan, math.nan
    # "wald-log" is the interval METHOD publishes, exp(log(a/b) +- z sqrt(1/a + 1/b)); the windows compared are of
    # equal length, so the exposures are 1
    lo, hi = confint_poisson_2indep(a, 1, b, 1, method="wald-log", compare="ratio", alpha=0.05)
    return 100 * (a / b - 1), 100 * (float(lo) - 1), 100 * (float(hi) - 1)


def _change_rows(series: np.ndarray, recent: int) -> dict:
    """Year-over-year and recent-vs-a-year-earlier figures of one weekly series."""
    T = len(series)
    row: dict = {"last_52w": None, "previous_52w": None, "change_pct": None, "change_ci95_lo": None,
                 "change_ci95_hi": None, f"last_{recent}w": None, f"same_{recent}w_year_before": None,
                 "recent_change_pct": None, "recent_change_ci95_lo": None, "recent_change_ci95_hi": None}
    if T >= 104:
        a, b = int(series[-52:].sum()), int(series[-104:-52].sum())
        pct, lo, hi = rate_ratio(a, b)
        row.update(last_52w=a, previous_52w=b, change_pct=pct, change_ci95_lo=lo, change_ci95_hi=hi)
    if T >= 52 + recent:
        a, b = int(series[-recent:].sum()), int(series[-52 - recent:-52].sum())
        pct, lo, hi = rate_ratio(a, b)
        row.update({f"last_{recent}w": a, f"same_{recent}w_year_before": b, "recent_change_pct": pct,
                    "recent_change_ci95_lo": lo, "recent_change_ci95_hi": hi})
    return row


def _block_of_cells(grid: Grid, block_m: float) -> tuple[np.ndarray, gpd.GeoDataFrame, float]:
    """Merge grid cells into square blocks of about `block_m` (a whole number of cells): label per cell, blocks."""
    factor = max(1, math.ceil(block_m / grid.cell_size_m - 1e-9))
    size = factor * grid.cell_size_m
    bcol, brow = np.floor(grid.x / size).astype(np.int64), np.floor(grid.y / size).astype(np.int64)
    uniq, label = np.unique(np.stack([brow, bcol], axis=1), axis=0, return_inverse=True)
    label = np.asarray(label).reshape(-1)
    rows, cols = uniq[:, 0], uniq[:, 1]
    cx, cy = (cols + 0.5) * size, (rows + 0.5) * size
    boxes = shapely.box(cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    blocks = gpd.GeoDataFrame({"block_id": [f"{r}_{c}" for r, c in zip(rows, cols)]}, geometry=boxes,
                              crs=grid.crs)
    return label.astype(np.int32), blocks, size


def _cells_layer(counts_all: np.ndarray, starts: pd.DatetimeIndex, shapes: gpd.GeoDataFrame, groups: list[str],
                 size_m: float) -> gpd.GeoDataFrame:
    """Per cell/block: all-offence counts per calendar year and the last and previous 52 weeks per group."""
    T = counts_all.shape[0]
    years = starts[:T].year
    layer = shapes.copy()
    layer["cell_size_m"] = size_m
    for year in sorted(set(years)):
        layer[f"count_{year}"] = counts_all[years == year, :, -1].sum(axis=0).astype(np.int64)
    if T >= 52:
        for g, name in enumerate(groups):
            layer[f"last_52w_{slug(name)}"] = counts_all[-52:, :, g].sum(axis=0).astype(np.int64)
    if T >= 104:
        layer["previous_52w_all_offences"] = counts_all[-104:-52, :, -1].sum(axis=0).astype(np.int64)
    layer = layer.to_crs(WGS84)
    layer.geometry = shapely.transform(layer.geometry.values, lambda c: np.round(c, 6))
    return layer


# --- the tables -----------------------------------------------------------------------------------------------------

def compute_trends(cfg: StudyConfig, panel: Panel, public: bool | None = None) -> Trends:
    """Weekly, yearly and change tables per offence group and area, the cell (or public block) layer and the area
    units; `public` (default `[privacy] public`) applies the public view."""
    public = cfg.privacy.public if public is None else public
    recent = cfg.trends.recent_weeks
    T = panel.n_periods
    starts = panel.period_starts[:T]
    groups = [*panel.groups, ALL_GROUPS]
    counts = _with_all(panel.counts.astype(np.int64))  # (T, C, G+1)
    label, names, population, shapes = area_units(cfg, panel.grid)
    whole = counts.sum(axis=1, keepdims=True)  # (T, 1, G+1)
    per_unit = _by_label(counts, label, len(names)) if names else np.zeros((T, 0, len(groups)), dtype=np.int64)
    series = np.concatenate([whole, per_unit], axis=1)  # (T, U+1, G+1)
    area_names = [WHOLE_AREA, *names]
    pop = None
    if population is not None:
        covered = np.bincount(label[label >= 0], minlength=len(names)) > 0
        pop = np.concatenate([[np.nansum(population[covered])], population])

    U, G = len(area_names), len(groups)
    weekly = pd.DataFrame({
        "area": np.tile(np.repeat(area_names, G), T), "group": np.tile(groups, T * U),
        "period_start": np.repeat(starts.to_numpy(dtype="datetime64[ns]"), U * G),
        "count": series.reshape(-1)})
    years = starts.year
    year_rows = []
    for year in sorted(set(years)):
        sel = years == year
        totals = series[sel].sum(axis=0)
        for u, area in enumerate(area_names):
            for g, group in enumerate(groups):
                year_rows.append({"area": area, "group": group, "year": int(year), "weeks": int(sel.sum()),
                                  "count": int(totals[u, g])})
    yearly = pd.DataFrame(year_rows)
    change = pd.DataFrame([{"area": area, "group": group, **_change_rows(series[:, u, g], recent)}
                           for u, area in enumerate(area_names) for g, group in enumerate(groups)])
    if pop is not None:
        per_1000 = pd.Series(pop, index=area_names) / 1000.0
        for frame, col in ((weekly, "count"), (yearly, "count"), (change, "last_52w")):
            denom = frame["area"].map(per_1000).to_numpy(dtype=float)
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            frame["rate_per_1000" if col == "count" else "last_52w_rate_per_1000"] = np.where(
                denom > 0, np.round(values / np.where(denom > 0, denom, 1), 4), np.nan)

    if public:
        block_label, blocks, size = _block_of_cells(panel.grid, cfg.privacy.public_cell_size_m)
        cell_counts = _by_label(counts, block_label, len(blocks))
        cells = _cells_layer(cell_counts, starts, blocks, groups, size)
    else:
        size = panel.grid.cell_size_m
        cells = _cells_layer(counts, starts, panel.grid.polygons()[["cell_id", "geometry"]], groups, size)
    areas = None
    if shapes is not None:
        latest = change[(change["group"] == ALL_GROUPS) & (change["area"] != WHOLE_AREA)]
        areas = shapes.merge(latest.drop(columns="group"), on="area", how="left")
        for year in sorted(set(years)):
            y = yearly[(yearly["group"] == ALL_GROUPS) & (yearly["year"] == year)].set_index("area")["count"]
            areas[f"count_{year}"] = areas["area"].map(y).astype("Int64")
    meta = {"area": cfg.area.name, "view": "public" if public else "full", "groups": groups, "areas": area_names,
            "first_week": str(starts[0].date()), "last_week": str(starts[-1].date()), "weeks": T,
            "cell_size_m": float(size), "recent_weeks": recent, "method": METHOD,
            "area_units": str(cfg.trends.areas) if cfg.trends.areas else None,
            "population_column": cfg.trends.population}
    trends = Trends(weekly, yearly, change, cells, areas, meta)
    if public:
        trends = suppress(trends, cfg.privacy.min_count_k)
    return trends


COUNT_COLUMNS = re.compile(r"^(count(_\d{4})?|last_\d+w(_.*)?|previous_52w(_.*)?|same_\d+w_year_before)$")


def _sources(col: str, columns: list[str]) -> list[str] | None:
    """The count columns a derived column (rate, change) is computed from; None = unknown (any count of the row)."""
    if col.startswith("recent_change"):
        return [c for c in columns if re.match(r"^(last_\d+w|same_\d+w_year_before)$", c) and c != "last_52w"]
    if col.startswith("change"):
        return ["last_52w", "previous_52w"]
    if col == "last_52w_rate_per_1000":
        return ["last_52w"]
    if col == "rate_per_1000":
        return ["count"]
    return None


def _suppress_frame(frame: pd.DataFrame, k: int, also: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Counts below k, and those in `also` (complementary suppressions), become '< k'; a rate or change computed
    from a suppressed count is withheld."""
    out = frame.copy()
    columns = list(out.columns)
    count_cols = [c for c in columns if COUNT_COLUMNS.match(c) and "rate_per_1000" not in c]
    hidden: dict[str, pd.Series] = {}
    for col in count_cols:
        values = pd.to_numeric(out[col], errors="coerce")
        hide = values.notna() & (values < k)
        if also is not None and col in also:
            hide |= pd.Series(also[col], index=out.index) & values.notna()
        hidden[col] = hide
        shown = values.astype(object).where(values.isna(), values.fillna(0).astype(np.int64).astype(object))
        out[col] = shown.where(~hide, f"< {k}").where(values.notna() | hide, None)
    any_hidden = pd.Series(False, index=out.index)
    for hide in hidden.values():
        any_hidden |= hide
    for col in [c for c in columns if "rate_per_1000" in c or "change" in c]:
        sources = _sources(col, columns)
        mask = any_hidden if sources is None else pd.Series(False, index=out.index)
        for source in sources or []:
            if source in hidden:
                mask = mask | hidden[source]
        out[col] = out[col].astype(object).where(~mask, None)
    return out


def suppress(trends: Trends, k: int) -> Trends:
    """The public view of already aggregated trends: small-count suppression on every published table, and
    complementary suppression so that no hidden count can be recovered from the totals (analysis.disclosure)."""
    also, extra_hidden = _complementary(trends, k)
    meta = {**trends.meta, "view": "public", "min_count_k": k,
            "suppression": (f"counts below {k} are shown as '< {k}', and so are as many others as needed so that "
                            "none can be worked out from a total (complementary suppression); rates and changes "
                            "built on a hidden count are withheld"),
            "complementary_suppressions": extra_hidden}
    return Trends(_suppress_frame(trends.weekly, k, also.get("weekly")),
                  _suppress_frame(trends.yearly, k, also.get("yearly")),
                  _suppress_frame(trends.change, k, also.get("change")),
                  _suppress_frame(trends.cells, k, also.get("cells")),
                  None if trends.areas is None else _suppress_frame(trends.areas, k, also.get("areas")), meta)


def published_relations(trends: Trends) -> tuple[np.ndarray, dict[tuple[str, str], slice], Relations]:
    """Every published count of the trend tables in one flat vector (values, where each table column lies in it)
    and the additive relations among them: offence groups add up to all offences, area units to the whole area
    (conservatively: cells outside every unit are treated as known), weeks to their year and to the change
    windows, and public blocks to the whole area."""
    meta = trends.meta
    groups, areas = list(meta["groups"]), list(meta["areas"])
    G, U = len(groups), len(areas)
    recent = meta["recent_weeks"]
    pieces: list[np.ndarray] = []
    where: dict[tuple[str, str], slice] = {}
    offset = 0

    def take(name: str, frame: pd.DataFrame, col: str) -> np.ndarray | None:
        """Positions of a column's rows in the flat vector (None when the column is not fully published)."""
        nonlocal offset
        if col not in frame.columns:
            return None
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        if np.isnan(values).any():
            return None
        pieces.append(values)
        where[(name, col)] = slice(offset, offset + len(values))
        offset += len(values)
        return np.arange(where[(name, col)].start, where[(name, col)].stop)

    def grid_of(frame: pd.DataFrame, pos: np.ndarray, key: str) -> tuple[np.ndarray, list]:
        """Positions arranged as (key value, area, group)."""
        keys = sorted(frame[key].unique())
        k = pd.Categorical(frame[key], categories=keys).codes
        u = pd.Categorical(frame["area"], categories=areas).codes
        g = pd.Categorical(frame["group"], categories=groups).codes
        out = np.full((len(keys), U, G), -1, dtype=np.int64)
        out[k, u, g] = pos
        if (out < 0).any():
            raise RuntimeError(f"trend table by {key} is not complete")  # built here, so a bug if it happens
        return out, keys

    relations = Relations()
    wpos = take("weekly", trends.weekly, "count")
    ypos = take("yearly", trends.yearly, "count")
    weekly, weeks = grid_of(trends.weekly, wpos, "period_start")
    yearly, years = grid_of(trends.yearly, ypos, "year")
    week_years = np.array([pd.Timestamp(w).year for w in weeks])
    T = len(weeks)
    change_cols = {"last_52w": (T - 52, T), "previous_52w": (T - 104, T - 52), f"last_{recent}w": (T - recent, T),
                   f"same_{recent}w_year_before": (T - 52 - recent, T - 52)}
    change: dict[str, np.ndarray] = {}
    ch = trends.change.reset_index(drop=True)
    cu = pd.Categorical(ch["area"], categories=areas).codes
    cg = pd.Categorical(ch["group"], categories=groups).codes
    for col in change_cols:
        pos = take("change", ch, col)
        if pos is not None:
            change[col] = np.full((U, G), -1, dtype=np.int64)
            change[col][cu, cg] = pos

    # offence groups -> all offences (the last group), and area units -> the whole area (the first area)
    for table in (weekly, yearly, *[c[None] for c in change.values()]):
        relations.add(table.reshape(-1, G))
        if U > 1:
            relations.add(table.transpose(0, 2, 1).reshape(-1, U))
    # weeks -> their calendar year, and weeks -> each change window
    for y, year in enumerate(years):
        sel = weekly[week_years == year]  # (weeks, U, G)
        relations.add(np.concatenate([sel.reshape(len(sel), -1).T, yearly[y].reshape(-1, 1)], axis=1))
    for col, (lo, hi) in change_cols.items():
        if col in change and lo >= 0:
            window = weekly[lo:hi]
            relations.add(np.concatenate([window.reshape(len(window), -1).T, change[col].reshape(-1, 1)], axis=1))
    # public blocks (or cells) -> the whole area
    cells = trends.cells.reset_index(drop=True)
    for y, year in enumerate(years):
        pos = take("cells", cells, f"count_{year}")
        if pos is not None:
            relations.add(np.r_[pos, yearly[y, 0, G - 1]])
    block_groups = []
    for g, group in enumerate(groups):
        pos = take("cells", cells, f"last_52w_{slug(group)}")
        block_groups.append(pos)
        if pos is not None and "last_52w" in change:
            relations.add(np.r_[pos, change["last_52w"][0, g]])
    if all(p is not None for p in block_groups):
        relations.add(np.stack(block_groups, axis=1))
    pos = take("cells", cells, "previous_52w_all_offences")
    if pos is not None and "previous_52w" in change:
        relations.add(np.r_[pos, change["previous_52w"][0, G - 1]])
    values = np.concatenate(pieces) if pieces else np.zeros(0)
    return values, where, relations


def _complementary(trends: Trends, k: int) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Per table and column, the counts to hide besides those below k; and how many there are."""
    values, where, relations = published_relations(trends)
    primary = values < k
    final = complementary_suppression(values, primary, relations)
    extra = final & ~primary
    also: dict[str, dict[str, np.ndarray]] = {}
    for (name, col), span in where.items():
        also.setdefault(name, {})[col] = extra[span]
    if trends.areas is not None:  # the area layer repeats the all-offences rows of the yearly and change tables
        final_of = {key: final[span] for key, span in where.items()}
        areas: dict[str, np.ndarray] = {}
        all_rows = trends.change["group"] == ALL_GROUPS
        for col in [c for c in trends.areas.columns if ("change", c) in final_of]:
            by_area = pd.Series(final_of[("change", col)][all_rows.to_numpy()],
                                index=trends.change.loc[all_rows, "area"].to_numpy())
            areas[col] = trends.areas["area"].map(by_area).fillna(False).to_numpy(dtype=bool)
        yearly_all = (trends.yearly["group"] == ALL_GROUPS).to_numpy()
        for col in [c for c in trends.areas.columns if re.fullmatch(r"count_\d{4}", c)]:
            if ("yearly", "count") not in final_of:
                continue
            sel = yearly_all & (trends.yearly["year"] == int(col[6:])).to_numpy()
            by_area = pd.Series(final_of[("yearly", "count")][sel], index=trends.yearly.loc[sel, "area"].to_numpy())
            areas[col] = trends.areas["area"].map(by_area).fillna(False).to_numpy(dtype=bool)
        also["areas"] = areas
    return also, int(extra.sum())


# --- plots ----------------------------------------------------------------------------------------------------------

def plot_trends(trends: Trends, out_dir: Path, area: str = WHOLE_AREA) -> dict[str, Path]:
    """Weekly counts of one area (default the whole area) per group (13-week mean) and each group's year-over-year
    change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    whole = trends.weekly[trends.weekly["area"] == area]
    fig, ax = plt.subplots(figsize=(9, 4))
    for group, rows in whole.groupby("group", sort=False):
        values = pd.to_numeric(rows["count"], errors="coerce")
        ax.plot(rows["period_start"], values.rolling(13, min_periods=1).mean(), label=group)
    ax.set_ylabel("incidents per week (13-week mean)")
    where = trends.meta["area"] if area == WHOLE_AREA else f"{area} ({trends.meta['area']})"
    ax.set_title(f"{where}: recorded incidents per week ({trends.meta['view']} view)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    paths["weekly_png"] = out_dir / "trends_weekly.png"
    savefig_atomically(fig, paths["weekly_png"], dpi=110)
    plt.close(fig)

    change = trends.change[trends.change["area"] == area]
    pct = pd.to_numeric(change["change_pct"], errors="coerce")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if pct.notna().any():
        lo = pct - pd.to_numeric(change["change_ci95_lo"], errors="coerce")
        hi = pd.to_numeric(change["change_ci95_hi"], errors="coerce") - pct
        ax.barh(change["group"], pct.fillna(0), xerr=[lo.fillna(0), hi.fillna(0)], color="tab:blue", alpha=0.7)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("change, last 52 weeks vs the 52 before (%), 95% interval")
    else:
        ax.text(0.5, 0.5, "fewer than 104 weeks: no year-over-year change", ha="center", transform=ax.transAxes)
    ax.set_title("Seasonally adjusted change (year over year)")
    fig.tight_layout()
    paths["change_png"] = out_dir / "trends_change.png"
    savefig_atomically(fig, paths["change_png"], dpi=110)
    plt.close(fig)
    return paths


# --- the HTML page (the API's /v1/trends?format=html) ---------------------------------------------------------------

def _pct(value) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "" if pd.isna(number) else f"{number:+.1f}%"


def _interval(lo, hi) -> str:
    lo, hi = pd.to_numeric(lo, errors="coerce"), pd.to_numeric(hi, errors="coerce")
    return "" if pd.isna(lo) or pd.isna(hi) else f"[{lo:+.1f}%, {hi:+.1f}%]"


def _count(value) -> str:
    if isinstance(value, str):  # the public view's "< k"
        return value
    number = pd.to_numeric(value, errors="coerce")
    return "" if pd.isna(number) else f"{int(number):,}"


def trends_page(trends: Trends, area: str = WHOLE_AREA) -> str:
    """The trends as one HTML page (figures inlined as data: PNGs): the change per offence group in `area`, the
    change of every area unit (all offences) and the yearly counts of `area`."""
    import base64
    import tempfile

    from hotspot.training.pages import render

    recent = trends.meta["recent_weeks"]
    with tempfile.TemporaryDirectory(prefix="hotspot-trends-") as folder:
        paths = plot_trends(trends, Path(folder), area)
        figures = {key.removesuffix("_png"): "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
                   for key, path in paths.items()}

    def change_row(row, first: str) -> list[str]:
        return [first, _count(row["last_52w"]), _count(row["previous_52w"]), _pct(row["change_pct"]),
                _interval(row["change_ci95_lo"], row["change_ci95_hi"]), _count(row[f"last_{recent}w"]),
                _count(row[f"same_{recent}w_year_before"]), _pct(row["recent_change_pct"]),
                _interval(row["recent_change_ci95_lo"], row["recent_change_ci95_hi"])]

    change = trends.change
    by_group = [change_row(r, r["group"]) for _, r in change[change["area"] == area].iterrows()]
    units = change[(change["group"] == ALL_GROUPS) & (change["area"] != WHOLE_AREA)]
    by_area = [change_row(r, r["area"]) for _, r in units.iterrows()]
    yearly = trends.yearly[trends.yearly["area"] == area]
    years = sorted(set(yearly["year"]))
    counts = {(r["group"], r["year"]): r["count"] for _, r in yearly.iterrows()}
    weeks = {r["year"]: r["weeks"] for _, r in yearly.iterrows()}
    yearly_rows = [[g, *(_count(counts.get((g, y))) for y in years)] for g in trends.meta["groups"]]
    head = ["", "last 52 weeks", "52 weeks before", "change", "95% interval", f"last {recent} weeks",
            "same weeks a year before", "change", "95% interval"]
    has_change = pd.to_numeric(change.loc[change["area"] == area, "change_pct"], errors="coerce").notna().any()
    title = f"Trends: {trends.meta['area']}" + ("" if area == WHOLE_AREA else f", {area}")
    return render("trends.html.j2", has_change=bool(has_change), title=title,
                  meta=trends.meta, area=area, whole_area=area == WHOLE_AREA, figures=figures,
                  change_head=head, by_group=by_group, by_area=by_area,
                  yearly_head=["offence group", *(f"{y} ({weeks[y]} wk)" for y in years)], yearly_rows=yearly_rows)
