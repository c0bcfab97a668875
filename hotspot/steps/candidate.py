"""The tuned spec as a candidate: judged by the promotion gate on a backtest that already ran it beside the
champion, and trained on every week and registered only when the gate takes it (no fit of a model the gate would
not use)."""

from __future__ import annotations

import numpy as np

from hotspot.features.config import StudyConfig
from hotspot.steps.common import Prepared
from hotspot.training import tracking
from hotspot.training.backtest import BacktestResult, lightgbm_from_config

CHAMPION_NAME, CANDIDATE_NAME = "lightgbm", "lightgbm_tuned"
SAME_SPEC = ("params", "num_boost_round", "train_periods", "zero_row_fraction", "seed")


def _is_config_spec(cfg: StudyConfig, version: str) -> bool:
    """Whether a registered version was trained with the config's own LightGBM parameters (so the backtest's
    `lightgbm` model is that version's spec, refitted the same way)."""
    from hotspot.training.registry import version_spec

    spec, _ = version_spec(cfg, version)
    mine = lightgbm_from_config(cfg).spec()
    return all(spec.get(k) == mine.get(k) for k in SAME_SPEC)


def tuned_candidate_step(cfg: StudyConfig, prepared: Prepared, backtest: BacktestResult, periods: np.ndarray,
                         refit_every: int):
    """Gate the tuned spec against the champion with the weekly scores of `backtest` (which ran both on `periods`);
    when it wins, train it on every week, register it and promote it through the gate's records. Returns
    (decision, the new version's reference or None)."""
    from hotspot.steps.modelling import promote_step, train_step
    from hotspot.training.promotion import Decision, cache_weekly_scores, judge
    from hotspot.training.registry import champion_version

    models = backtest.metrics["models"]
    champion = champion_version(cfg)
    if CANDIDATE_NAME not in models or champion is None or not _is_config_spec(cfg, champion):
        return None, None
    pc = cfg.promotion
    weeks = backtest.metrics["weeks"]
    cand, champ = models[CANDIDATE_NAME]["weekly"], models[CHAMPION_NAME]["weekly"]
    promoted, reason, c_score, b_score, paired = judge(cand, champ, pc.metric, pc.margin, pc.require_significant)
    fingerprint = prepared.incidents.fingerprint
    if not promoted:
        decision = Decision("tuned spec", champion, False, f"{reason}; champion was v{champion}; the tuned spec was "
                            "not trained on every week", pc.metric, pc.margin, weeks, c_score, b_score, paired)
        with tracking.step_run(cfg, "promote", fingerprint, run_name="promote tuned spec (refused)"):
            import mlflow

            mlflow.set_tags({"decision": "refused", "candidate": "tuned spec"})
            mlflow.log_metrics({"candidate_score": c_score, "champion_score": b_score})
            mlflow.log_dict(decision.to_dict(), "promotion/decision.json")
        return decision, None
    _, ref = train_step(cfg, prepared, params="study")
    panel = prepared.panel
    cache_weekly_scores(cfg, panel, ref.version, periods, refit_every, fingerprint, cand)
    cache_weekly_scores(cfg, panel, champion, periods, refit_every, fingerprint, champ)
    end = str(panel.period_starts[periods[-1] + 1].date())
    return promote_step(cfg, ref.version, weeks=len(periods), end=end, prepared=prepared), ref
