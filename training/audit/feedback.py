"""Feedback-loop simulation (after Ensign et al. 2018, "Runaway feedback loops in predictive policing").

On the real cells: each cell's true weekly rate is its mean recorded count over the history before the audit, times
an optional multiplier per group (a hypothesis that a group's crime is under- or over-recorded). The model starts
from the recorded history, as the real one would. Each round:
1. patrols go to the flagged cells (the top `coverage` share by the model's current estimate);
2. true incidents happen (Poisson at the true rates); residents report a share of them (`report_rate`, per group
   when reporting rates are configured); patrols discover a share of the unreported ones in the cells they patrol
   (`detection_rate`; `base_detection_rate` elsewhere);
3. the model learns from what was recorded: an exponentially weighted mean of the training counts, a stand-in for
   any model that learns from recorded counts (the count baselines exactly; LightGBM would be refitted dozens of
   times per arm, too slow to simulate, and learns the same recorded counts).
Arms: no mitigation (train on everything recorded); reported only (ignore what patrols discovered); down-weighting
(discovered incidents count `discovered_weight`); decay (everything recorded, a short memory so old records fade).
Tracked: each group's share of the flagged cells against its share when the true rates are flagged, and the total
variation distance between the two allocations (half the sum of absolute differences). Seeded and deterministic;
every arm sees the same true incidents and reports.
"""

from __future__ import annotations

import numpy as np

from hotspot.features.config import FeedbackSimulationConfig
from hotspot.training.audit.fairness import CellGroups
from hotspot.training.audit.flags import top_k

ARMS = ("no mitigation", "reported only", "down-weight discovered", "decay")


def _ewm(history: np.ndarray, halflife: float) -> np.ndarray:
    age = np.arange(len(history) - 1, -1, -1, dtype=float)
    weights = 0.5 ** (age / halflife)
    return weights @ history / weights.sum()


def _shares(mask: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    counts = mask @ onehot
    return counts / max(counts.sum(), 1e-12)


def simulate_feedback(history: np.ndarray, groups: CellGroups, k: int, settings: FeedbackSimulationConfig,
                      halflife: float, reporting_rates: dict[str, float] | None = None) -> dict:
    """Run every arm for `settings.rounds` rounds and `settings.replications` replications; history is (H, C)."""
    history = np.asarray(history, dtype=float)
    onehot = groups.onehot()
    label = groups.label
    mult = np.array([settings.true_rate_multipliers.get(lab, 1.0) for lab in groups.labels])
    true_rate = history.mean(0) * np.where(label >= 0, mult[np.maximum(label, 0)], 1.0)
    rates = reporting_rates or {}
    report = np.array([rates.get(lab, settings.report_rate) for lab in groups.labels])
    report_c = np.where(label >= 0, report[np.maximum(label, 0)], settings.report_rate)
    true_share = _shares(top_k(true_rate, k), onehot)
    start = _ewm(history, halflife)
    a_main, a_decay = 1 - 0.5 ** (1 / halflife), 1 - 0.5 ** (1 / settings.decay_halflife_weeks)
    R, T = settings.replications, settings.rounds
    shares = np.zeros((len(ARMS), R, T + 1, groups.n_groups))
    overlap = np.zeros((len(ARMS), R, T + 1))
    caught = np.zeros((len(ARMS), R, T))
    true_top = top_k(true_rate, k)
    for rep in range(R):
        world = np.random.default_rng([settings.seed, rep, 0])
        patrol_rngs = [np.random.default_rng([settings.seed, rep, 1 + a]) for a in range(len(ARMS))]
        estimates = [start.copy() for _ in ARMS]
        for t in range(T + 1):
            flagged = [top_k(e, k) for e in estimates]
            for a, mask in enumerate(flagged):
                shares[a, rep, t] = _shares(mask, onehot)
                overlap[a, rep, t] = (mask & true_top).sum() / k
            if t == T:
                break
            incidents = world.poisson(true_rate)
            reported = world.binomial(incidents, report_c)
            for a, (arm, mask) in enumerate(zip(ARMS, flagged)):
                detect = np.where(mask, settings.detection_rate, settings.base_detection_rate)
                discovered = patrol_rngs[a].binomial(incidents - reported, detect)
                caught[a, rep, t] = incidents[mask].sum() / max(incidents.sum(), 1)
                train = {"reported only": reported,
                         "down-weight discovered": reported + settings.discovered_weight * discovered}.get(
                    arm, reported + discovered)
                alpha = a_decay if arm == "decay" else a_main
                estimates[a] += alpha * (train - estimates[a])
    tvd = 0.5 * np.abs(shares - true_share).sum(-1)  # (arms, R, T + 1)
    mean_shares = shares.mean(1)
    arms = {}
    for a, arm in enumerate(ARMS):
        arms[arm] = {
            "distance_by_round": tvd[a].mean(0).tolist(),
            "distance_start": float(tvd[a, :, 0].mean()), "distance_end": float(tvd[a, :, -1].mean()),
            "distance_end_range": [float(tvd[a, :, -1].min()), float(tvd[a, :, -1].max())],
            "flag_share_start": dict(zip(groups.labels, mean_shares[a, 0].tolist())),
            "flag_share_end": dict(zip(groups.labels, mean_shares[a, -1].tolist())),
            "drift_end": dict(zip(groups.labels, (mean_shares[a, -1] - true_share).tolist())),
            "flag_share_by_round": {lab: mean_shares[a, :, g].tolist() for g, lab in enumerate(groups.labels)},
            "overlap_with_true_top_end": float(overlap[a, :, -1].mean()),
            "share_of_true_incidents_in_flagged_cells": float(caught[a].mean()),
        }
    return {"definition": groups.name, "method": __doc__.split("\n\n", 1)[1].strip(), "model": f"exponentially "
            f"weighted mean of recorded counts, half-life {halflife:g} weeks (decay arm: "
            f"{settings.decay_halflife_weeks:g})", "settings": settings.model_dump(mode="json"),
            "history_weeks": int(len(history)), "flagged_cells": k, "true_flag_share": dict(zip(groups.labels,
            true_share.tolist())), "arms": arms}
