"""Reporting-rate sensitivity (after Akpinar et al. 2021, "The effect of differential victim crime reporting on
predictive policing systems"): how many flagged cells move between groups under assumed reporting rates."""

from __future__ import annotations

import numpy as np

from hotspot.training.audit.fairness import CellGroups
from hotspot.training.audit.flags import Forecasts
from hotspot.training.evaluation.metrics import flag_weights


def cell_rates(groups: CellGroups, rates: dict[str, float]) -> np.ndarray:
    """Each cell's assumed recording rate: its residents' groups' rates, weighted by residents (1 where unknown)."""
    r = np.array([rates.get(label, 1.0) for label in groups.labels])
    pop = groups.population.sum(1)
    by_label = np.where(groups.label >= 0, r[np.maximum(groups.label, 0)], 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mixed = np.where(pop > 0, (groups.population @ r) / pop, by_label)
    return np.round(mixed, 12)  # equal rates give exactly equal cell rates, so they cannot reorder cells


def reporting_sensitivity(forecasts: Forecasts, groups: CellGroups, k: int, rates: dict[str, float],
                          relative_rates: list[float]) -> dict:
    """Flagged cells that change group when each group's recorded incidents are divided by its reporting rate.

    After Akpinar et al. (2021): if group g's incidents are recorded at rate r_g, a forecast of recorded incidents
    divided by r_g is a first-order forecast of all incidents. Only ratios between the rates matter.
    """
    scenarios = {"equal rates": dict.fromkeys(groups.labels, 1.0)}
    if rates:
        scenarios["configured rates"] = {label: rates.get(label, 1.0) for label in groups.labels}
    for label in groups.labels:
        for x in relative_rates:
            scenarios[f"{label} recorded at {x:g}x the others"] = {lab: (x if lab == label else 1.0)
                                                                    for lab in groups.labels}
    L = groups.onehot()
    out = {"definition": groups.name, "method": reporting_sensitivity.__doc__.split("\n\n")[1].strip(),
           "scenarios": {}}
    before = {m: flag_weights(forecasts.risk[i], k) for i, m in enumerate(forecasts.models)}
    for name, r in scenarios.items():
        rate_c = cell_rates(groups, r)
        models = {}
        for i, m in enumerate(forecasts.models):
            after = flag_weights(forecasts.risk[i] / rate_c, k)
            moved = np.maximum(after - before[m], 0).sum(1)
            # used within this iteration only, so the loop variable it reads is the current one
            share = lambda f: dict(zip(groups.labels, ((f @ L).sum(0) / (moved.size * k)).tolist()))  # noqa: E731,B023
            models[m] = {"cells_moved_per_week": float(moved.mean()), "share_of_flagged_moved": float(moved.mean() / k),
                         "net_cells_per_week": dict(zip(groups.labels, ((after - before[m]) @ L).mean(0).tolist())),
                         "flag_share_before": share(before[m]), "flag_share_after": share(after)}
        out["scenarios"][name] = {"rates": r, "models": models}
    return out
