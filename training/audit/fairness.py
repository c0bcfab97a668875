"""Demographic groups on grid cells: the fairness areas apportioned onto cells by area-weighted interpolation.

Each polygon's residents are shared among the cells it overlaps in proportion to the overlapping area (geopandas
overlay in the grid's projected CRS), which assumes residents are spread evenly within a polygon: the standard
areal interpolation of an extensive count. A group definition gives every polygon one label (the largest of some
share columns, a population-weighted quantile of a column, or a bin of it), so each cell carries an estimated
number of residents per group. Cell-level figures (flag rates) use each cell's dominant group; population figures
use the residents themselves. Demographics are audit inputs here, never model features.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from hotspot.features.config import PLACES_DEFINITION, FairnessConfig, GroupDefinition
from hotspot.features.errors import HotspotError, InputError
from hotspot.features.grid import Grid
from hotspot.features.places import Places

ALL_CELLS = "all cells"
PLACES_METHOD = ("each cell belongs to the area whose name it carries (features/places.py); no residents are known, so "
                 "flag shares are compared with shares of cells and of recorded incidents only")
METHOD = ("area-weighted interpolation: each polygon's residents are shared among the cells it overlaps in "
          "proportion to the overlapping area (geopandas overlay in the grid CRS); residents are assumed to be "
          "spread evenly within each polygon")


@dataclass(frozen=True, eq=False)
class CellGroups:
    """One group definition applied to the cells."""

    name: str
    kind: str
    labels: tuple[str, ...]
    reference: str | None  # None: every group is compared with all its cells together (place names)
    population: np.ndarray  # (C, G) estimated residents of each group's polygons in each cell (zero: none known)
    label: np.ndarray  # (C,) int32 dominant group of the cell (most residents, else most area), -1 = none
    describe: dict[str, str] = field(default_factory=dict)  # label -> how the group is defined
    left_out: tuple[str, ...] = ()  # configured groups without a cell in the study area

    @property
    def n_groups(self) -> int:
        return len(self.labels)

    @property
    def reference_index(self) -> int | None:
        return None if self.reference is None else self.labels.index(self.reference)

    @property
    def reference_label(self) -> str:
        """What flag-rate ratios are taken against, in words."""
        return self.reference if self.reference is not None else ALL_CELLS

    @property
    def has_population(self) -> bool:
        return bool(self.population.sum() > 0)

    def onehot(self) -> np.ndarray:
        """(C, G) 0/1 membership of each cell in its dominant group (rows of unassigned cells are zero)."""
        out = np.zeros((len(self.label), self.n_groups))
        ok = self.label >= 0
        out[np.flatnonzero(ok), self.label[ok]] = 1.0
        return out


@dataclass(frozen=True, eq=False)
class CellDemography:
    population: np.ndarray  # (C,) estimated residents per cell (zeros where no residents are known)
    groups: list[CellGroups]
    residents: dict[str, np.ndarray]  # share column -> estimated residents of that group per cell
    source: Path | str
    population_column: str | None
    areas_population: float  # residents of every polygon
    covered: np.ndarray  # (C,) share of each cell's area covered by some polygon
    groups_from: str = "areas"  # "areas" (demographic polygons) or "places" (the cells' place names)
    statement: str = ""  # which groups the audit uses and why, for the report

    def definition(self, name: str) -> CellGroups:
        return next(g for g in self.groups if g.name == name)

    def cell_table(self, cell_id: np.ndarray) -> pd.DataFrame:
        """Each cell's group under every definition, one row per definition and cell (grid order): definition,
        cell_id, group (empty where the cell lies in no group) and whether that group is the reference. With the
        audit's predictions this is all a reader needs to recompute the per-group figures."""
        frames = []
        for g in self.groups:
            labels = np.array(["", *g.labels], dtype=object)[g.label + 1]
            frames.append(pd.DataFrame({"definition": g.name, "cell_id": np.asarray(cell_id), "group": labels,
                                        "reference": (labels == g.reference) if g.reference is not None
                                        else np.zeros(len(labels), dtype=bool)}))
        return pd.concat(frames, ignore_index=True)

    def summary(self) -> dict:
        if self.groups_from == "places":
            return {"groups_from": "places", "source": str(self.source), "method": PLACES_METHOD,
                    "population_column": None, "cells": int(len(self.population)), "statement": self.statement}
        grid_pop = float(self.population.sum())
        return {"groups_from": "areas", "statement": self.statement,
                "source": str(self.source), "population_column": self.population_column, "method": METHOD,
                "areas_population": self.areas_population, "population_on_grid": grid_pop,
                "share_of_population_on_grid": grid_pop / self.areas_population if self.areas_population else None,
                "cells": int(len(self.population)), "cells_outside_areas": int((self.covered <= 0).sum()),
                "cells_without_residents": int((self.population <= 0).sum())}


def read_areas(fairness: FairnessConfig) -> gpd.GeoDataFrame:
    """Read the fairness areas and check every configured column; errors name the file and the column."""
    path = Path(fairness.areas)
    if not path.exists():
        raise InputError(f"fairness.areas: file not found: {path}")
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types
        raise InputError(f"{path}: cannot read the fairness areas ({exc})") from None
    if gdf.empty or gdf.geometry.isna().all():
        raise InputError(f"{path}: the fairness areas file has no geometries")
    if gdf.crs is None:
        raise InputError(f"{path}: the fairness areas file has no CRS")
    kinds = set(gdf.geom_type.dropna())
    if not kinds <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"{path}: the fairness areas must be polygons, found {sorted(kinds)}")
    wanted = [("fairness.population", fairness.population)]
    for d in fairness.groups:
        wanted += [(f"fairness.groups '{d.name}'", c) for c in (d.columns or [d.column])]
    for key, column in wanted:
        if column not in gdf.columns:
            raise InputError(f"{path}: no column '{column}' (named by {key}); columns: "
                             f"{[c for c in gdf.columns if c != 'geometry']}")
        values = pd.to_numeric(gdf[column], errors="coerce")
        if values.notna().sum() == 0:
            raise InputError(f"{path}: column '{column}' (named by {key}) holds no numbers")
        gdf[column] = values
    return gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)].reset_index(drop=True)


def weighted_quantile_edges(values: np.ndarray, weights: np.ndarray, q: int) -> np.ndarray:
    """The q-1 inner edges that split `values` into q bins holding about equal weight each."""
    ok = np.isfinite(values) & (weights > 0)
    order = np.argsort(values[ok], kind="stable")
    v, w = values[ok][order], weights[ok][order]
    if len(v) == 0:
        return np.full(q - 1, np.nan)
    cum = np.cumsum(w) / w.sum()
    idx = np.searchsorted(cum, np.arange(1, q) / q - 1e-9, side="left")
    return v[np.minimum(idx, len(v) - 1)]


def polygon_labels(areas: pd.DataFrame, definition: GroupDefinition,
                   population: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """Group index of each polygon (-1 where its values are missing) and a description of each group; quantiles
    weight each polygon by `population` (its residents inside the study area, so no quantile is empty there)."""
    labels = definition.group_labels
    if definition.kind == "majority":
        shares = areas[definition.columns].to_numpy(dtype=float)
        has = np.isfinite(shares).any(axis=1)
        label = np.where(has, np.nanargmax(np.where(np.isfinite(shares), shares, -np.inf), axis=1), -1)
        others = ", ".join(definition.columns)
        describe = {lab: f"polygons where {col} is the largest of {others}"
                    for lab, col in zip(labels, definition.columns)}
        return label.astype(np.int32), describe
    values = areas[definition.column].to_numpy(dtype=float)
    ok = np.isfinite(values)
    if definition.kind == "quantile":
        edges = weighted_quantile_edges(values, population, definition.quantiles)
        label = np.searchsorted(edges, values, side="left")
        describe = {}
        for i, lab in enumerate(labels):
            members = values[ok & (label == i) & (population > 0)]
            span = f"{members.min():.4g} to {members.max():.4g}" if len(members) else "no polygon"
            describe[lab] = (f"{definition.column}, quantile {i + 1} of {definition.quantiles} weighted by the "
                             f"residents of the study area ({span})")
    else:
        edges = np.asarray(definition.edges, dtype=float)
        label = np.searchsorted(edges, values, side="right") - 1
        label[values == edges[-1]] = len(edges) - 2  # the last bin includes its right edge
        label[(values < edges[0]) | (values > edges[-1])] = -1
        describe = {lab: f"{definition.column} from {a:g} to {b:g}" for lab, a, b in zip(labels, edges, edges[1:])}
    return np.where(ok, label, -1).astype(np.int32), describe


def cell_demography(fairness: FairnessConfig, grid: Grid) -> CellDemography:
    """Apportion the fairness areas' residents onto the grid's cells, for every group definition."""
    areas = read_areas(fairness)
    path = Path(fairness.areas)
    projected = areas.to_crs(grid.crs)
    projected["geometry"] = shapely.make_valid(projected.geometry.values)
    projected["polygon"] = np.arange(len(projected))
    cells = grid.polygons()[["geometry"]].assign(cell=np.arange(grid.n_cells))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # overlay warns when it drops slivers of other geometry types
        pieces = gpd.overlay(cells, projected[["polygon", "geometry"]], how="intersection", keep_geom_type=True)
    if pieces.empty:
        raise HotspotError(f"{path}: no polygon of the fairness areas overlaps the study area's grid "
                           f"({grid.n_cells:,} cells in {grid.crs.to_string()}); check the file and area.boundary")
    population = areas[fairness.population].fillna(0).clip(lower=0).to_numpy(dtype=float)
    if areas[fairness.population].isna().any():
        warnings.warn(f"{path}: {int(areas[fairness.population].isna().sum())} polygon(s) have no "
                      f"'{fairness.population}'; counted as 0 residents", stacklevel=2)
    polygon = pieces["polygon"].to_numpy()
    cell = pieces["cell"].to_numpy()
    piece_area = pieces.geometry.area.to_numpy()
    polygon_area = projected.geometry.area.to_numpy()
    residents = population[polygon] * piece_area / polygon_area[polygon]
    C = grid.n_cells
    cell_pop = np.bincount(cell, weights=residents, minlength=C)
    covered = np.bincount(cell, weights=piece_area, minlength=C) / grid.cell_size_m ** 2

    on_grid = np.bincount(polygon, weights=residents, minlength=len(areas))  # each polygon's residents in the area
    groups = [_cell_groups(d, *polygon_labels(areas, d, on_grid), polygon, cell, residents, piece_area, C)
              for d in fairness.groups]
    share_columns = sorted({c for d in fairness.groups if d.kind == "majority" for c in d.columns})
    shares = {c: np.nan_to_num(areas[c].to_numpy(dtype=float)) for c in share_columns}
    by_share = {c: np.bincount(cell, weights=residents * s[polygon], minlength=C) for c, s in shares.items()}
    statement = (f"Groups are demographic: the {len(areas)} polygons of {path.name} (residents from "
                 f"'{fairness.population}') apportioned onto the cells, in {len(groups)} definition(s): "
                 + "; ".join(f"{g.name} ({len(g.labels)} groups)" for g in groups) + ".")
    return CellDemography(cell_pop, groups, by_share, path, fairness.population, float(population.sum()), covered,
                          "areas", statement)


def _cell_groups(d: GroupDefinition, plabel: np.ndarray, describe: dict[str, str], polygon: np.ndarray,
                 cell: np.ndarray, residents: np.ndarray, piece_area: np.ndarray, C: int) -> CellGroups:
    """One definition on the cells; groups that hold no cell of the study area are left out (and named)."""
    lab, G = plabel[polygon], len(d.group_labels)
    ok = lab >= 0
    index = cell[ok] * G + lab[ok]
    pop = np.bincount(index, weights=residents[ok], minlength=C * G).reshape(C, G)
    area = np.bincount(index, weights=piece_area[ok], minlength=C * G).reshape(C, G)
    dominant = np.where(pop.sum(1) > 0, pop.argmax(1), np.where(area.sum(1) > 0, area.argmax(1), -1))
    present = np.bincount(dominant[dominant >= 0], minlength=G) > 0
    labels = [lab for lab, p in zip(d.group_labels, present) if p]
    # default reference: the largest group of a majority split, the lowest bin of a quantile or bins split
    kept_pop = pop[:, present]
    reference = d.reference if d.reference in labels else (
        labels[int(kept_pop.sum(0).argmax()) if d.kind == "majority" else 0])
    remap = np.cumsum(present) - 1
    dominant = np.where(dominant >= 0, remap[np.maximum(dominant, 0)], -1)
    return CellGroups(d.name, d.kind, tuple(labels), reference, kept_pop, dominant.astype(np.int32),
                      {k: v for k, v in describe.items() if k in labels},
                      tuple(lab for lab, p in zip(d.group_labels, present) if not p))


def place_demography(places: Places | None, n_cells: int) -> CellDemography:
    """Groups from the cells' place names: one group per named area, each compared with all cells together."""
    if places is None:
        raise HotspotError("the fairness audit has no groups: the config has no demographic areas "
                           "([fairness] areas, population, groups) and no place names ([places] areas or "
                           "incidents.place) to group the cells by")
    names, label = np.unique(places.cell_place.astype(str), return_inverse=True)
    label = label.astype(np.int32)
    counts = np.bincount(label, minlength=len(names))
    group = CellGroups(PLACES_DEFINITION, "places", tuple(str(n) for n in names), None,
                       np.zeros((n_cells, len(names))), label,
                       {str(n): f"{c} cells named {n}" for n, c in zip(names, counts)})
    origin = places.origin.replace(" (", ", ", 1).rstrip(")")
    statement = (f"No demographic areas are configured, so the groups are the {len(names)} named areas of the study "
                 f"area, from the {origin}. Residents are not known, so population shares are not claimed: each "
                 "area's share of flagged cells is compared with its share of cells and of recorded incidents, and "
                 "its flag rate with the flag rate of all cells.")
    return CellDemography(np.zeros(n_cells), [group], {}, places.origin, None, 0.0, np.ones(n_cells), "places",
                          statement)


def audit_demography(fairness: FairnessConfig, grid: Grid, places: Places | None) -> CellDemography:
    """The groups the audit compares: demographic areas (groups_from = 'areas') or the place names."""
    if fairness.groups_from == "places":
        return place_demography(places, grid.n_cells)
    return cell_demography(fairness, grid)
