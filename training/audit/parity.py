"""The fairness-accuracy trade-off: re-ranking the flagged cells under a parity constraint on flag rates.

At strength s each group's number of flagged cells moves a share s of the way from the model's own allocation to
an allocation proportional to the group's cells (s = 1: equal flag rates, demographic parity); within each group the
highest-risk cells are kept (ties broken by cell order). Cells in no group keep their own flags. The curve pairs PAI
at the audit's coverage with the largest ratio between two groups' flag rates, as the constraint tightens.
"""

from __future__ import annotations

import numpy as np

from hotspot.training.audit.fairness import CellGroups
from hotspot.training.audit.flags import Forecasts, top_k


def parity_allocation(counts: np.ndarray, n_cells: np.ndarray, k: int, strength: float) -> np.ndarray:
    """Flagged cells per group: `strength` of the way from `counts` to parity, summing to k, at most n_cells each."""
    parity = k * n_cells / n_cells.sum()
    want = np.minimum((1 - strength) * counts + strength * parity, n_cells)
    alloc = np.floor(want + 1e-9).astype(np.int64)
    for g in np.argsort(-(want - alloc), kind="stable"):  # largest remainders first
        if alloc.sum() >= k:
            break
        if alloc[g] < n_cells[g]:
            alloc[g] += 1
    while alloc.sum() < k and (alloc < n_cells).any():  # groups at capacity pass their slots on
        g = int(np.argmax(n_cells - alloc))
        alloc[g] += min(k - alloc.sum(), n_cells[g] - alloc[g])
    return alloc


def parity_rerank(risk: np.ndarray, label: np.ndarray, n_groups: int, k: int, strength: float) -> np.ndarray:
    """Boolean mask of the k flagged cells after re-ranking at `strength` (0 = the model's own top k)."""
    top = top_k(risk, k)
    grouped = label >= 0
    counts = np.bincount(label[top & grouped], minlength=n_groups)
    n_cells = np.bincount(label[grouped], minlength=n_groups)
    fixed = int((top & ~grouped).sum())
    alloc = np.append(parity_allocation(counts, n_cells, k - fixed, strength), fixed)
    key = np.where(grouped, label, n_groups)  # cells in no group form one more block keeping `fixed` flags
    order = np.lexsort((np.arange(len(risk)), -risk, key))
    sorted_key = key[order]
    first = np.searchsorted(sorted_key, np.arange(n_groups + 1), side="left")
    rank = np.arange(len(risk)) - first[sorted_key]
    mask = np.zeros(len(risk), dtype=bool)
    mask[order[rank < alloc[sorted_key]]] = True
    return mask


def tradeoff_curve(forecasts: Forecasts, groups: CellGroups, k: int, steps: int) -> dict:
    """PAI and the largest flag-rate ratio between groups at each strength of the parity constraint, per model."""
    L = groups.onehot()
    n_cells = L.sum(0)
    has = n_cells > 0
    C = forecasts.risk.shape[-1]
    out = {"definition": groups.name, "method": __doc__.split("\n\n")[1].replace("\n", " "), "models": {}}
    for m, model in enumerate(forecasts.models):
        points = []
        for s in np.linspace(0.0, 1.0, steps):
            masks = np.array([parity_rerank(r, groups.label, groups.n_groups, k, s) for r in forecasts.risk[m]])
            obs = forecasts.observed
            with np.errstate(divide="ignore", invalid="ignore"):
                hit = (masks * obs).sum(1) / obs.sum(1)
                rates = (masks @ L).sum(0) / (len(masks) * n_cells)
                # the smallest rate floored at half a flagged cell-week, so a group never flagged gives a bound
                floor = 0.5 / (len(masks) * n_cells[has])
                lowest = np.maximum(rates[has], floor).min()
                largest = float(rates[has].max() / lowest)
            points.append({"strength": float(s), "pai": float(np.nanmean(hit) / (k / C)),
                           "hit_rate": float(np.nanmean(hit)), "largest_flag_rate_ratio": largest,
                           "largest_flag_rate_ratio_floored": bool((rates[has] < floor).any()),
                           "smallest_to_largest_flag_rate": float(rates[has].min() / rates[has].max()),
                           "flag_rates": dict(zip(groups.labels, rates.tolist()))})
        out["models"][model] = points
    return out
