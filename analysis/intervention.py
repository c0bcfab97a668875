"""Impact of an intervention in a set of cells: difference-in-differences against matched control cells.

Method (on weekly cell counts of the panel):
- pre-period: the `pre_weeks` weeks before the start; post-period: the start to the end (default the end of data);
- controls: cells outside the treated cells and their `buffer_rings` rings (the rings are where displaced crime
  would go, so they cannot be controls); each treated cell is matched to its `k` nearest candidates in standardised
  (pre-period mean, pre-period trend), with replacement, on the even weeks of the pre-period, while the baseline
  levels come from its odd weeks (cross-fitting: a control chosen for a lucky high count would otherwise fall back
  afterwards, regression to the mean, and fake an effect);
- estimate: a Poisson regression (statsmodels GLM) of the cell-week counts of the treated cells and their matched
  controls (a control matched to several treated cells counts once for each) on treated, post and treated x post:
  exp(treated x post) is the rate ratio of the treated cells against the counterfactual of their pre-period level
  moved as their controls moved, proportionally, because seasons and trends in crime are multiplicative (a busy
  cell gains more incidents in summer than a quiet one, which an additive difference would misread as an effect);
  shown as a percentage change, and in incidents per cell-week as the treated post-period mean less that
  counterfactual. Where a group has no incident in a period the ratio is not defined, and the same regression is
  fitted by least squares (an additive difference);
- 95% interval: cluster-robust by cell (every week of a cell shares its level, and a control's noise is shared by
  every treated cell it serves), with t quantiles on clusters - 1 degrees of freedom; with fewer than 10 treated
  cells the result warns that the interval leans on few clusters;
- placebo: the same on the pre-period alone, pretending the start was halfway through it; its interval should hold 0;
- displacement: the same for the ring cells (rings 1..buffer_rings around the treated cells, excluding them) against
  their own matched controls: a rise there suggests crime moved next door.
Recorded incidents are policing data: an intervention that changes patrols can change recording as well as crime.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import ndimage

from hotspot.features.errors import HotspotError, InputError
from hotspot.features.grid import Grid
from hotspot.features.locking import locked, savefig_atomically, write_text_atomically

MIN_PRE_WEEKS = 8
FEW_CELLS = 10  # below this many treated cells a cluster-robust interval rests on too few clusters to trust
INTERVAL = ("cluster-robust by cell (statsmodels Poisson GLM; least squares where a group has no incident), "
            "t quantiles on clusters - 1 degrees of freedom")


@dataclass(frozen=True)
class DidEstimate:
    effect_per_cell_week: float
    ci95: tuple[float, float]
    effect_pct: float
    pct_ci95: tuple[float, float]
    cells: int
    controls: int
    pre_weeks: int
    post_weeks: int
    treated_pre_mean: float
    treated_post_mean: float
    control_pre_mean: float
    control_post_mean: float

    @property
    def includes_zero(self) -> bool:
        return self.ci95[0] <= 0 <= self.ci95[1]


def read_cells_file(path: Path, grid: Grid) -> np.ndarray:
    """Compact indices of the cells named by a CSV (column cell_id) or a GeoJSON/GPKG of polygons or points."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--cells: file not found: {path}")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        if "cell_id" not in frame.columns:
            raise InputError(f"{path}: no column 'cell_id'; columns: {list(frame.columns)}")
        ids = pd.to_numeric(frame["cell_id"], errors="coerce").dropna().astype(np.int64).to_numpy()
        index = pd.Index(grid.cell_id)
        found = index.get_indexer(ids)
        unknown = ids[found < 0]
        cells = np.unique(found[found >= 0])
        what = f"{len(unknown)} of {len(ids)} cell ids are not cells of this grid (e.g. {unknown[:3].tolist()})"
    else:
        import geopandas as gpd

        try:
            shapes = gpd.read_file(path)
        except Exception as exc:  # pyogrio raises several types
            raise InputError(f"{path}: cannot read the cells file ({exc})") from None
        if shapes.crs is None:
            raise InputError(f"{path}: the cells file has no CRS")
        shapes = shapes.to_crs(grid.crs)
        cells_gdf = grid.polygons()
        if set(shapes.geom_type.dropna()) <= {"Point", "MultiPoint"}:
            pts = shapes.geometry.explode(index_parts=False)
            found = grid.locate(pts.x.to_numpy(), pts.y.to_numpy())
        else:  # polygons: the cells whose centre lies inside
            centres = gpd.GeoDataFrame(geometry=gpd.points_from_xy(cells_gdf["x"], cells_gdf["y"]), crs=grid.crs)
            hit = gpd.sjoin(centres, shapes[["geometry"]], predicate="within", how="inner")
            found = np.asarray(hit.index.unique(), dtype=np.int64)
        cells = np.unique(found[found >= 0])
        what = f"no geometry of {path} covers a cell centre of the grid"
    if len(cells) == 0:
        raise InputError(f"{path}: no known cells ({what})")
    return cells.astype(np.int64)


def ring_cells(grid: Grid, cells: np.ndarray, rings: int) -> np.ndarray:
    """Cells within `rings` cells (queen moves) of `cells`, excluding them."""
    mask = np.zeros(grid.n_cells, dtype=bool)
    mask[cells] = True
    raster = grid.to_raster(mask)
    grown = ndimage.binary_dilation(raster, structure=np.ones((3, 3), bool), iterations=rings)
    near = grid.from_raster(grown) & ~mask
    return np.flatnonzero(near)


def _level_and_trend(y: np.ndarray) -> np.ndarray:
    """(C, 2) mean and OLS slope per cell of a (T, C) series."""
    T = y.shape[0]
    t = np.arange(T, dtype=float) - (T - 1) / 2
    slope = (t @ y) / max((t ** 2).sum(), 1e-12)
    return np.stack([y.mean(axis=0), slope], axis=1)


def match_controls(pre: np.ndarray, units: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """(len(units), k) indices of the pool cells nearest each unit in standardised pre-period level and trend."""
    if len(pool) < k:
        raise HotspotError(f"only {len(pool)} candidate control cells outside the treated cells and their rings; "
                           f"need at least {k}")
    feats = _level_and_trend(pre)
    scale = feats[pool].std(axis=0)
    scale[scale <= 0] = 1.0
    z = feats / scale
    d = ((z[units][:, None, :] - z[pool][None, :, :]) ** 2).sum(axis=2)
    nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
    return pool[nearest]


def did(y: np.ndarray, units: np.ndarray, pool: np.ndarray, pre: slice, post: slice,
        k: int = 5) -> tuple[DidEstimate, np.ndarray]:
    """Difference-in-differences of `units` against their matched controls from `pool` on (T, C) counts.

    Returns the estimate and the matched controls (len(units), k)."""
    y_pre, y_post = y[pre].astype(float), y[post].astype(float)
    # cross-fitting: match on the even weeks of the pre-period, take the baseline from the odd ones; cells picked
    # for a high count by chance would otherwise fall back afterwards (regression to the mean) and fake an effect
    controls = match_controls(y_pre[0::2], units, pool, k)
    weeks_pre = y_pre.shape[0]
    y_pre = y_pre[1::2]
    unit_pre, unit_post = y_pre[:, units].mean(axis=0), y_post[:, units].mean(axis=0)
    ctrl_pre = y_pre[:, controls].mean(axis=(0, 2))
    ctrl_post = y_post[:, controls].mean(axis=(0, 2))

    # one row per cell-week: the treated cells, then each one's k controls (stacked, so a control matched twice
    # counts twice, as in the matching); clusters are cells, a control keeping one cluster however often it serves
    cells = np.concatenate([units, controls.ravel()])
    treated = np.repeat([1.0, 0.0], [len(units), controls.size])
    counts = np.concatenate([y_pre[:, cells], y_post[:, cells]]).ravel()  # (weeks, cells) row-major
    is_post = np.repeat([0.0, 1.0], [y_pre.shape[0], y_post.shape[0]])
    rows_post = np.repeat(is_post, len(cells))
    rows_treated = np.tile(treated, len(is_post))
    X = np.column_stack([np.ones_like(rows_post), rows_treated, rows_post, rows_treated * rows_post])
    groups = np.tile(cells, len(is_post))
    means = (unit_pre.mean(), unit_post.mean(), ctrl_pre.mean(), ctrl_post.mean())
    post_mean = means[1]
    robust = {"cov_type": "cluster", "cov_kwds": {"groups": groups}, "use_t": True}
    if min(means) > 0:  # every group has incidents in both periods: the ratio is defined
        fit = sm.GLM(counts, X, family=sm.families.Poisson()).fit(**robust)
        ratio, (ratio_lo, ratio_hi) = np.exp(fit.params[3]), np.exp(fit.conf_int()[3])
        # the counterfactual is the treated post-period mean / ratio, so the effect per cell-week is monotone in it
        effect, lo, hi = (post_mean * (1 - 1 / r) for r in (ratio, ratio_lo, ratio_hi))
        effect_pct, pct_lo, pct_hi = (100.0 * (r - 1) for r in (ratio, ratio_lo, ratio_hi))
    else:  # a group without incidents: no ratio (the log-linear fit would diverge), the additive difference
        fit = sm.OLS(counts, X).fit(**robust)
        effect, (lo, hi) = fit.params[3], fit.conf_int()[3]
        counterfactual = post_mean - effect
        # in percent of the (fixed) counterfactual; the symmetric interval can pass below -100%, which no count can
        effect_pct, pct_lo, pct_hi = ((max(100.0 * v / counterfactual, -100.0) if counterfactual > 0 else np.nan)
                                      for v in (effect, lo, hi))
    est = DidEstimate(
        effect_per_cell_week=float(effect), ci95=(float(lo), float(hi)), effect_pct=float(effect_pct),
        pct_ci95=(float(pct_lo), float(pct_hi)), cells=int(len(units)), controls=int(len(np.unique(controls))),
        pre_weeks=int(weeks_pre), post_weeks=int(y_post.shape[0]),
        treated_pre_mean=float(unit_pre.mean()), treated_post_mean=float(post_mean),
        control_pre_mean=float(ctrl_pre.mean()), control_post_mean=float(ctrl_post.mean()))
    return est, controls


@dataclass(frozen=True)
class InterventionResult:
    start: str
    end: str
    estimate: DidEstimate
    placebo: DidEstimate
    displacement: DidEstimate | None
    treated_cells: list[int]
    ring_cells: list[int]
    series: pd.DataFrame  # period_start, treated, controls (mean per cell-week), phase
    settings: dict
    warnings: list[str]

    def to_dict(self) -> dict:
        def finite(v):
            if isinstance(v, (tuple, list)):
                return [finite(x) for x in v]
            return None if isinstance(v, float) and not np.isfinite(v) else v

        def est(e: DidEstimate | None):
            return None if e is None else {**{k: finite(v) for k, v in asdict(e).items()},
                                           "ci95_includes_zero": e.includes_zero}

        return {"start": self.start, "end": self.end, "estimate": est(self.estimate), "placebo": est(self.placebo),
                "displacement": est(self.displacement), "treated_cells": self.treated_cells,
                "ring_cells": self.ring_cells, "settings": self.settings, "warnings": self.warnings,
                "method": (__doc__ or "").split("Method (on weekly cell counts of the panel):")[-1].strip(),
                "series": [{"period_start": str(r.period_start.date()), "treated": float(r.treated),
                            "controls": float(r.controls), "phase": r.phase} for r in self.series.itertuples()]}


def evaluate_intervention(y: np.ndarray, period_starts: pd.DatetimeIndex, grid: Grid, treated: np.ndarray,
                          start: str, end: str | None = None, pre_weeks: int = 52, k: int = 5,
                          buffer_rings: int = 2) -> InterventionResult:
    """DiD estimate, placebo and displacement check for an intervention in `treated` cells from `start`.

    y: (T, C) weekly counts; period_starts: at least T starts (the panel's)."""
    T = y.shape[0]
    starts = period_starts[:T]
    first, last = starts[0], starts[-1]
    s = int(starts.searchsorted(pd.Timestamp(start), side="right") - 1)
    if pd.Timestamp(start) > last or s <= 0:
        raise HotspotError(f"--start {start} is outside the data (weeks {first.date()} .. {last.date()}) or leaves no "
                           "week before it")
    e = T if end is None else int(starts.searchsorted(pd.Timestamp(end), side="right"))
    if e <= s:
        raise HotspotError(f"--end {end} is not after --start {start}")
    e = min(e, T)
    pre0 = max(0, s - pre_weeks)
    if s - pre0 < MIN_PRE_WEEKS:
        raise HotspotError(f"only {s - pre0} week(s) of data before {start}; the comparison needs at least "
                           f"{MIN_PRE_WEEKS} (ideally {pre_weeks})")
    treated = np.unique(np.asarray(treated, dtype=np.int64))
    ring = ring_cells(grid, treated, buffer_rings)
    excluded = np.zeros(grid.n_cells, dtype=bool)
    excluded[treated] = True
    excluded[ring] = True
    pool = np.flatnonzero(~excluded)
    estimate, controls = did(y, treated, pool, slice(pre0, s), slice(s, e), k)
    mid = pre0 + (s - pre0) // 2
    placebo, _ = did(y, treated, pool, slice(pre0, mid), slice(mid, s), k)
    displacement = did(y, ring, pool, slice(pre0, s), slice(s, e), k)[0] if len(ring) else None
    window = slice(pre0, e)
    ctrl = y[window][:, controls].astype(float).mean(axis=(1, 2))
    series = pd.DataFrame({"period_start": starts[window], "treated": y[window][:, treated].mean(axis=1),
                           "controls": ctrl,
                           "phase": np.where(np.arange(pre0, e) < s, "pre", "post")})
    warnings = []
    if len(pool) < 10 * k:
        warnings.append(f"only {len(pool)} candidate control cells outside the treated cells and their "
                        f"{buffer_rings} ring(s): the controls may not be comparable")
    if len(treated) < FEW_CELLS:
        warnings.append(f"only {len(treated)} treated cell(s): the interval leans on few clusters and is likely too "
                        "narrow; read it as a rough guide")
    lvl_t, lvl_c = estimate.treated_pre_mean, estimate.control_pre_mean
    if lvl_t > 0 and not 0.5 <= lvl_c / lvl_t <= 2.0:
        warnings.append(f"the matched controls' pre-period level ({lvl_c:.2f} per cell-week) is far from the "
                        f"treated cells' ({lvl_t:.2f}): few comparable cells; read the estimate with care")
    if not placebo.includes_zero:
        warnings.append("the placebo interval excludes 0: treated and control cells already moved apart before the "
                        "start, so the estimate may reflect that rather than the intervention")
    return InterventionResult(
        warnings=warnings,
        start=str(starts[s].date()), end=str(starts[e - 1].date()), estimate=estimate, placebo=placebo,
        displacement=displacement, treated_cells=[int(c) for c in grid.cell_id[treated]],
        ring_cells=[int(c) for c in grid.cell_id[ring]], series=series,
        settings={"pre_weeks": pre_weeks, "k_controls": k, "buffer_rings": buffer_rings, "interval": INTERVAL,
                  "placebo_start": str(starts[mid].date())})


def write_intervention(result: InterventionResult, out_dir: Path) -> dict[str, Path]:
    """intervention.json and intervention.png (treated vs matched controls, per cell-week)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "intervention.json", "png": out_dir / "intervention.png"}
    with locked(paths["json"], what="writing the intervention estimate"):  # json and plot from one run
        write_text_atomically(paths["json"], json.dumps(result.to_dict(), indent=2, default=float))
        _plot_intervention(result, paths["png"], plt)
    return paths


def _plot_intervention(result: InterventionResult, path: Path, plt) -> None:
    s = result.series
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(s["period_start"], s["treated"].rolling(4, min_periods=1).mean(), label="treated cells")
    ax.plot(s["period_start"], s["controls"].rolling(4, min_periods=1).mean(), label="matched controls")
    ax.axvline(pd.Timestamp(result.start), color="black", ls="--", lw=1, label="start")
    e = result.estimate
    ax.set_title(f"DiD {e.effect_pct:+.1f}% [{e.pct_ci95[0]:+.1f}, {e.pct_ci95[1]:+.1f}] "
                 f"({e.effect_per_cell_week:+.3f} incidents per cell-week)")
    ax.set_ylabel("incidents per cell-week (4-week mean)")
    ax.legend(loc="best")
    fig.tight_layout()
    savefig_atomically(fig, path, dpi=110)
    plt.close(fig)
