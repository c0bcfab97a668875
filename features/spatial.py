"""Spatial feature families: sums over the rings of neighbouring cells."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hotspot.features.grid import Grid


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


def gaussian_smooth(grid: Grid, values: np.ndarray, bandwidth_m: float) -> np.ndarray:
    """Gaussian-kernel smoothed values (..., C) with a bandwidth in metres (the cell itself included)."""
    raster = grid.to_raster(values.astype(np.float64))
    sigma = (0.0,) * (raster.ndim - 2) + (bandwidth_m / grid.cell_size_m,) * 2
    return grid.from_raster(ndimage.gaussian_filter(raster, sigma=sigma, mode="constant", cval=0.0, truncate=3.0))


def distance_weighted_sums(grid: Grid, values: np.ndarray, radius_cells: int = 3) -> np.ndarray:
    """Sum of neighbours' values weighted by 1 / distance (in cells) within `radius_cells`, the cell itself left out."""
    offsets = np.arange(-radius_cells, radius_cells + 1)
    dist = np.hypot(*np.meshgrid(offsets, offsets))
    kernel = np.where((dist > 0) & (dist <= radius_cells), 1.0 / np.where(dist > 0, dist, 1.0), 0.0)
    raster = grid.to_raster(values.astype(np.float64))
    kernel = kernel.reshape((1,) * (raster.ndim - 2) + kernel.shape)
    return grid.from_raster(ndimage.correlate(raster, kernel, mode="constant", cval=0.0))
