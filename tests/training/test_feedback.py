"""The feedback-loop simulation on a synthetic city where one group was over-policed in the past."""

from __future__ import annotations

import numpy as np
import pytest

from hotspot.features.config import FeedbackSimulationConfig
from hotspot.training.audit.fairness import CellGroups
from hotspot.training.audit.feedback import ARMS, simulate_feedback

C = 200  # cells 0-99 in group A, 100-199 in group B, with the same true rates


def setup(seed: int = 0):
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 0.5, size=100)
    true = np.concatenate([rates, rates])
    history = rng.poisson(np.tile(true, (52, 1))).astype(float)
    history[:, :100] *= 2  # A's past incidents were recorded twice as often (more patrols there)
    label = np.repeat([0, 1], 100).astype(np.int32)
    pop = np.zeros((C, 2))
    pop[np.arange(C), label] = 1.0
    return history, CellGroups("ab", "majority", ("A", "B"), "A", pop, label, {})


def test_without_mitigation_the_loop_keeps_the_over_flagged_group_and_reported_only_drifts_less():
    history, groups = setup()
    # true rates: the recorded history with A's doubling undone; residents report 30%, patrols find most of the rest
    settings = FeedbackSimulationConfig(rounds=60, replications=3, true_rate_multipliers={"A": 0.5},
                                        report_rate=0.3, detection_rate=0.9)
    out = simulate_feedback(history, groups, 20, settings, halflife=8.0)
    assert out["true_flag_share"]["A"] == pytest.approx(0.5, abs=0.1)
    none, reported = out["arms"]["no mitigation"], out["arms"]["reported only"]
    assert none["flag_share_start"]["A"] > 0.9  # the model starts from the biased record
    assert none["flag_share_end"]["A"] > 0.75  # and patrols keep recording A: the loop locks in
    assert none["drift_end"]["A"] > 0.25
    assert reported["distance_end"] < none["distance_end"] - 0.2  # reported-only drifts back toward the truth
    assert reported["flag_share_end"]["A"] < none["flag_share_end"]["A"]
    assert reported["distance_end"] < reported["distance_start"]
    assert out["arms"]["down-weight discovered"]["distance_end"] <= none["distance_end"]
    assert set(out["arms"]) == set(ARMS)


def test_without_patrol_discovery_recording_does_not_depend_on_patrols():
    history, groups = setup(1)
    settings = FeedbackSimulationConfig(rounds=20, replications=2, detection_rate=0.0)
    out = simulate_feedback(history, groups, 20, settings, halflife=8.0)
    assert out["arms"]["no mitigation"]["distance_by_round"] == out["arms"]["reported only"]["distance_by_round"]


def test_seeded_and_deterministic():
    history, groups = setup(2)
    settings = FeedbackSimulationConfig(rounds=10, replications=2)
    a = simulate_feedback(history, groups, 20, settings, halflife=8.0)
    b = simulate_feedback(history, groups, 20, settings, halflife=8.0)
    assert a == b
    c = simulate_feedback(history, groups, 20, settings.model_copy(update={"seed": 5}), halflife=8.0)
    assert c["arms"]["no mitigation"]["distance_by_round"] != a["arms"]["no mitigation"]["distance_by_round"]
