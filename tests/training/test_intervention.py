"""Difference-in-differences on synthetic panels whose planted effect is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyproj import CRS

from hotspot.analysis.intervention import evaluate_intervention, read_cells_file, ring_cells
from hotspot.features.errors import HotspotError
from hotspot.features.grid import Grid

N = 30  # 30 x 30 raster of 250 m cells
T, START = 104, 78


def square_grid(n: int = N, size: float = 250.0) -> Grid:
    rows, cols = np.divmod(np.arange(n * n), n)
    x, y = 600_000 + (cols + 0.5) * size, 4_800_000 + (rows + 0.5) * size
    return Grid(crs=CRS.from_epsg(32617), cell_size_m=size, x0=600_000, y0=4_800_000, n_cols=n, n_rows=n,
                cell_id=((4_800_000 // size + rows) * 1_000_000 + 600_000 // size + cols).astype(np.int64),
                row=rows.astype(np.int32), col=cols.astype(np.int32), x=x, y=y, lon=x * 0, lat=y * 0,
                raster_index=np.arange(n * n, dtype=np.int32))


def treated_block(grid: Grid) -> np.ndarray:
    """20 cells: a 4 x 5 block in the middle of the raster."""
    return np.flatnonzero((grid.row >= 12) & (grid.row < 16) & (grid.col >= 12) & (grid.col < 17))


def synthetic_counts(grid: Grid, effect: float = 0.0, ring_effect: float = 0.0, seed: int = 0) -> np.ndarray:
    """Poisson weekly counts with cell levels, a shared season and trend; the treated block is hotter, and from week
    START its rate is multiplied by 1 + effect (its ring's by 1 + ring_effect)."""
    rng = np.random.default_rng(seed)
    level = rng.gamma(4.0, 0.5, grid.n_cells)
    treated = treated_block(grid)
    level[treated] *= 2.5
    t = np.arange(T)
    season = 1 + 0.25 * np.sin(2 * np.pi * t / 52) + 0.002 * t
    rate = season[:, None] * level[None, :]
    rate[START:, treated] *= 1 + effect
    rate[START:, ring_cells(grid, treated, 1)] *= 1 + ring_effect
    return rng.poisson(rate)


STARTS = pd.date_range("2019-01-07", periods=T + 1, freq="W-MON")


def test_planted_reduction_is_recovered():
    grid = square_grid()
    y = synthetic_counts(grid, effect=-0.30)
    result = evaluate_intervention(y, STARTS, grid, treated_block(grid), str(STARTS[START].date()))
    e = result.estimate
    assert e.pct_ci95[0] <= -30 <= e.pct_ci95[1], e
    assert e.pct_ci95[1] < 0 and not e.includes_zero
    assert abs(e.effect_pct + 30) < 8
    assert result.placebo.includes_zero, result.placebo
    assert e.cells == 20 and e.post_weeks == T - START and e.pre_weeks == 52


def test_no_effect_interval_includes_zero():
    grid = square_grid()
    y = synthetic_counts(grid, effect=0.0, seed=1)
    result = evaluate_intervention(y, STARTS, grid, treated_block(grid), str(STARTS[START].date()))
    assert result.estimate.includes_zero, result.estimate
    assert result.placebo.includes_zero
    assert result.displacement is not None and result.displacement.includes_zero


def test_displacement_into_the_ring_is_detected():
    grid = square_grid()
    y = synthetic_counts(grid, effect=-0.30, ring_effect=0.40, seed=2)
    result = evaluate_intervention(y, STARTS, grid, treated_block(grid), str(STARTS[START].date()), buffer_rings=1)
    d = result.displacement
    assert d is not None and d.ci95[0] > 0, d
    assert d.pct_ci95[0] <= 40 <= d.pct_ci95[1]
    # controls never come from the treated cells or their ring
    assert not set(result.ring_cells) & set(result.treated_cells)


def test_zero_counts_fall_back_to_the_additive_difference():
    grid = square_grid()
    # no incident at all in the treated cells after the start: no rate ratio, the least-squares difference instead
    y = synthetic_counts(grid, effect=-1.0, seed=3)
    e = evaluate_intervention(y, STARTS, grid, treated_block(grid), str(STARTS[START].date())).estimate
    assert e.treated_post_mean == 0 and e.effect_pct == -100.0
    assert e.effect_per_cell_week == pytest.approx(-e.treated_pre_mean * e.control_post_mean / e.control_pre_mean,
                                                   rel=0.1)
    assert -100.0 <= e.pct_ci95[0] <= e.pct_ci95[1] < 0 and e.ci95[1] < 0
    # nothing recorded anywhere: a zero effect with a zero-width interval, and no percentage of nothing
    result = evaluate_intervention(np.zeros_like(y), STARTS, grid, treated_block(grid), str(STARTS[START].date()))
    e = result.estimate
    assert e.effect_per_cell_week == 0 and e.ci95 == (0.0, 0.0) and np.isnan(e.effect_pct)
    assert result.to_dict()["estimate"]["pct_ci95"] == [None, None]


def test_few_treated_cells_are_flagged():
    grid = square_grid()
    y = synthetic_counts(grid, effect=-0.30)
    result = evaluate_intervention(y, STARTS, grid, treated_block(grid)[:3], str(STARTS[START].date()))
    assert any("only 3 treated cell(s)" in w for w in result.warnings)
    assert np.all(np.isfinite(result.estimate.pct_ci95))


def test_bad_inputs_are_refused(tmp_path):
    grid = square_grid()
    y = synthetic_counts(grid)
    cells = treated_block(grid)
    with pytest.raises(HotspotError, match="outside the data"):
        evaluate_intervention(y, STARTS, grid, cells, "2030-01-07")
    with pytest.raises(HotspotError, match="at least 8"):
        evaluate_intervention(y, STARTS, grid, cells, str(STARTS[3].date()))
    with pytest.raises(HotspotError, match="not after"):
        evaluate_intervention(y, STARTS, grid, cells, str(STARTS[80].date()), end=str(STARTS[70].date()))
    bad = tmp_path / "cells.csv"
    pd.DataFrame({"cell_id": [1, 2, 3]}).to_csv(bad, index=False)
    with pytest.raises(HotspotError, match="no known cells"):
        read_cells_file(bad, grid)
    good = tmp_path / "good.csv"
    pd.DataFrame({"cell_id": grid.cell_id[cells]}).to_csv(good, index=False)
    assert sorted(read_cells_file(good, grid)) == sorted(cells)
