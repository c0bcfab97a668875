"""Registry and promotion: specs with every version, a gate on the same weeks, recorded reasons, rollback."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from hotspot.features.config import load_config
from hotspot.features.errors import HotspotError
from hotspot.steps import forecast_step, prepare, promote_step, rollback_step, train_step
from hotspot.training.promotion import judge
from hotspot.training.registry import (
    champion_history,
    champion_version,
    list_versions,
    load_version,
    registered_name,
    version_forecaster,
)
from tests.conftest import write_config

# a model that has learned next to nothing (1 tiny step from the mean) and one that has
WEAK = "[model.lightgbm]\nnum_boost_round = 1\nlearning_rate = 0.001\nmin_data_in_leaf = 20\n"
STRONG = "[model.lightgbm]\nnum_boost_round = 40\nmin_data_in_leaf = 20\n"


def week(pai: float, dev: float = 0.5) -> dict:
    return {"pai@1%": pai, "poisson_deviance": dev}


def test_judge_needs_a_better_mean_by_the_margin():
    champ = [week(10.0), week(10.0), week(10.0)]
    ok, reason, cand, best, paired = judge([week(11.0)] * 3, champ, "pai@1%", 0.05, False)
    assert ok and cand == 11.0 and best == 10.0 and reason.startswith("promoted")
    ok, reason, *_ = judge([week(10.4)] * 3, champ, "pai@1%", 0.05, False)
    assert not ok and "required 10.5000" in reason
    ok, *_ = judge([week(10.0)] * 3, champ, "pai@1%", 0.0, False)
    assert not ok  # a tie is not a win


def test_judge_deviance_is_lower_is_better():
    champ = [week(10, 0.50)] * 4
    assert judge([week(10, 0.45)] * 4, champ, "poisson_deviance", 0.05, False)[0]
    assert not judge([week(10, 0.49)] * 4, champ, "poisson_deviance", 0.05, False)[0]
    assert not judge([week(10, 0.55)] * 4, champ, "poisson_deviance", 0.0, False)[0]


def test_judge_can_require_a_significant_paired_difference():
    champ = [week(10.0), week(10.0), week(10.0), week(10.0)]
    noisy = [week(14.0), week(7.0), week(13.0), week(7.0)]  # mean 10.25, interval spans 0
    assert judge(noisy, champ, "pai@1%", 0.0, False)[0]
    ok, reason, *_ = judge(noisy, champ, "pai@1%", 0.0, True)
    assert not ok and "not significant" in reason


@pytest.fixture
def two_configs(tmp_path):
    paths = {}
    for name, block in (("weak", WEAK), ("strong", STRONG)):
        path = write_config(tmp_path / name)
        text = path.read_text().replace("[model.lightgbm]\nnum_boost_round = 30\nmin_data_in_leaf = 20\n", block)
        # on a 100-cell grid PAI@1% is one cell, which both find: judge on deviance, where they differ
        path.write_text(text + '\n[promotion]\nmetric = "poisson_deviance"\n')
        paths[name] = load_config(path)
    return paths


def test_train_registers_spec_features_and_fingerprint_and_first_is_champion(two_configs):
    cfg = two_configs["weak"]
    model, ref = train_step(cfg, params="config")
    assert ref.version == "1" and champion_version(cfg) == "1"
    fresh, fresh_ref = version_forecaster(cfg, "1")
    assert fresh.num_boost_round == 1 and fresh.params["learning_rate"] == 0.001
    assert list(fresh.features) == list(model.feature_names_)
    assert fresh_ref.data_fingerprint and len(fresh_ref.data_fingerprint) >= 8
    client = MlflowClient()
    mv = client.get_model_version(registered_name(cfg), "1")
    assert mv.tags["data_fingerprint"] == fresh_ref.data_fingerprint and mv.tags["objective"] == "poisson"
    assert mv.tags["champion_reason"].startswith("first registered version")
    model_info = client.get_model_version_download_uri(registered_name(cfg), "1")
    assert model_info
    loaded, _ = load_version(cfg, "1")
    assert loaded.feature_names_ == model.feature_names_
    history = champion_history(cfg)
    assert [h["version"] for h in history] == ["1"] and history[0]["previous"] is None


def test_promotion_gate_rollback_and_forecasts_follow_the_champion(two_configs, tmp_path):
    weak, strong = two_configs["weak"], two_configs["strong"]
    prepared = prepare(strong, quiet=True)
    train_step(weak, prepared, params="config")  # v1, champion
    train_step(strong, prepared, params="config")  # v2
    train_step(weak, prepared, params="config")  # v3, as weak as v1
    assert champion_version(strong) == "1"

    decision = promote_step(strong, "2", weeks=6, prepared=prepared)
    assert decision.promoted and decision.champion == "1"
    assert decision.candidate_score < decision.champion_score  # deviance: lower is better
    assert len(decision.weeks) == 6
    assert champion_version(strong) == "2"
    client = MlflowClient()
    tags = client.get_model_version(registered_name(strong), "2").tags
    assert tags["promotion_decision"] == "promoted" and "champion was v1" in tags["promotion_reason"]
    detail = json.loads(tags["promotion_detail"])
    assert detail["weeks"] == decision.weeks

    # the weak one does not beat the strong champion on the same weeks: refused, recorded, alias unchanged
    refused = promote_step(strong, "3", weeks=6, prepared=prepared)
    assert not refused.promoted and champion_version(strong) == "2"
    assert refused.champion_score == pytest.approx(decision.candidate_score)  # v2's scores reused from its run
    assert client.get_model_version(registered_name(strong), "3").tags["promotion_decision"] == "refused"

    # each version's description says in words how it was trained and what the gate decided, and why
    described = {v: client.get_model_version(registered_name(strong), v).description for v in ("2", "3")}
    assert described["2"].startswith("LightGBM, Poisson objective") and "parameters from the config" in described["2"]
    assert "40 boosting rounds" in described["2"] and f"{len(decision.weeks)} weeks" in described["2"]
    assert "**Promoted**" in described["2"] and "It became the champion" in described["2"]
    assert f"{decision.candidate_score:.3f} against {decision.champion_score:.3f}" in described["2"]
    assert "**Not promoted**" in described["3"] and "so v2 stays the champion" in described["3"]
    assert "Poisson deviance" in described["3"] and "lower is better" in described["3"]

    _, meta = forecast_step(strong, "2021-07-19", tmp_path / "f2.geojson", prepared,
                            pin="champion")
    assert meta["model_version"] == "2"

    assert rollback_step(strong, why="drill") == ("2", "1")
    assert champion_version(strong) == "1"
    _, meta = forecast_step(strong, "2021-07-19", tmp_path / "f1.geojson", prepared,
                            pin="champion")
    assert meta["model_version"] == "1"
    history = champion_history(strong)
    assert [h["version"] for h in history] == ["1", "2", "1"]
    assert history[-1]["reason"] == "rollback from v2: drill"
    # the registered model's description shows the same history as readable lines, newest first
    lines = [line for line in client.get_registered_model(registered_name(strong)).description.splitlines()
             if line.startswith("- ")]
    assert len(lines) == 3
    assert "v1 champion again (rolled back from v2): rollback from v2: drill" in lines[0]
    assert "v2 became champion (was v1): promoted: " in lines[1] and "v1 became champion: first" in lines[2]
    with pytest.raises(HotspotError, match="no earlier one"):
        rollback_step(strong)
    with pytest.raises(HotspotError, match="already the champion"):
        promote_step(strong, "1", weeks=6, prepared=prepared)
    with pytest.raises(HotspotError, match="no version 9"):
        promote_step(strong, "9", weeks=6, prepared=prepared)
    versions = list_versions(strong)
    assert [v["version"] for v in versions] == ["3", "2", "1"] and versions[2]["champion"]


def test_a_retrain_with_the_champions_settings_renews_it_without_a_backtest(two_configs, monkeypatch):
    import hotspot.training.promotion as promotion

    weak = two_configs["weak"]
    prepared = prepare(weak, quiet=True)
    train_step(weak, prepared, params="config")  # v1, champion
    train_step(weak, prepared, params="config")  # v2: the same settings, as a scheduled retrain makes
    with monkeypatch.context() as mp:
        mp.setattr(promotion, "version_weekly_scores", lambda *a, **k: pytest.fail("the gate backtested"))
        decision = promote_step(weak, "2", weeks=6, prepared=prepared)
    assert decision.promoted and decision.reason.startswith("renewed: v2 has the champion v1's settings")
    assert champion_version(weak) == "2"
    described = MlflowClient().get_model_version(registered_name(weak), "2").description
    assert "**Promoted** (renewed: v2 has the champion v1's settings" in described

    # without renewal the gate backtests both, and the same settings refitted alike tie: the older fit stays
    train_step(weak, prepared, params="config")  # v3
    strict = weak.model_copy(update={"promotion": weak.promotion.model_copy(update={"renew_same_settings": False})})
    refused = promote_step(strict, "3", weeks=6, prepared=prepared)
    assert not refused.promoted and refused.candidate_score == refused.champion_score
    assert champion_version(weak) == "2"
