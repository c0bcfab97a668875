"""Spatial feature families: sums over the rings of neighbouring cells."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from features.grid import Grid


def ring_kernel(rings: int) -> np.ndarray:
    """A (2r+1) x (2r+1) kernel of ones with the centre cell left out (the cell's own count is a separate feature)."""
    size = 2 * rings + 1
    kernel = np.ones((size, size), dtype=np.float64)
    kernel[rings, rings] = 0.0
    return kernel


def neighbour_sums(grid: Grid, values: np.ndarray, rings: int = 1) -> np.ndarray:
    """Sum of `values` (..., C) over the cells within `rings` cells of each cell, excluding the cell itself.

    Cells outside the study area count as zero. Works on the full raster with scipy.ndimage, so the cost is
    one correlation per call, not a loop over cells.
    """
    raster = grid.to_raster(values.astype(np.float64))
    kernel = ring_kernel(rings).reshape((1,) * (raster.ndim - 2) + (2 * rings + 1,) * 2)
    summed = ndimage.correlate(raster, kernel, mode="constant", cval=0.0)
    return grid.from_raster(summed)
