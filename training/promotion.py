"""Promotion gate: a registered version becomes the champion only if its backtest beats the champion's on the same
weeks (config `[promotion]`: metric, relative margin, optionally a significant paired difference).

A version's backtest is the rolling-origin backtest of its spec (its hyper-parameters and features, refitted on the
weeks before each test week as in `hotspot backtest`), so both models are judged on weeks neither was fitted on.
Each version's weekly scores are cached in its MLflow run under `backtests/`, keyed by the weeks, the refit
interval and the data fingerprint, so a later comparison on the same weeks does not refit it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.panel import Panel
from hotspot.training.backtest import run_backtest
from hotspot.training.evaluation.stats import paired_comparison
from hotspot.training.registry import (
    append_to_description,
    champion_history,
    champion_version,
    registered_name,
    registry_client,
    set_champion,
    version_forecaster,
)
from hotspot.training.tuning import HIGHER_IS_BETTER


def _cache_key(panel: Panel, periods: np.ndarray, refit_every: int, fingerprint: str) -> str:
    first, last = (str(panel.period_starts[p].date()) for p in (periods[0], periods[-1]))
    return f"backtests/{first}_{last}_refit{refit_every}_{fingerprint[:16]}.json"


def version_weekly_scores(cfg: StudyConfig, panel: Panel, version: str, periods: np.ndarray, refit_every: int,
                          fingerprint: str, on_step: Callable[[str, int], None] | None = None) -> list[dict]:
    """Weekly metrics of a registered version's backtest on `periods` (from its run's cache, else computed and
    cached there)."""
    import mlflow

    model, ref = version_forecaster(cfg, version)
    key = _cache_key(panel, periods, refit_every, fingerprint)
    try:
        return mlflow.artifacts.load_dict(f"runs:/{ref.run_id}/{key}")["weekly"]
    except Exception:  # not cached yet
        pass
    result = run_backtest(panel, [model], periods, refit_every, cfg.backtest.coverages, on_step=on_step)
    weekly = result.metrics["models"][model.name]["weekly"]
    registry_client().log_dict(ref.run_id, {"version": ref.version, "refit_every": refit_every,
                                    "data_fingerprint": fingerprint, "weekly": weekly}, key)
    return weekly


@dataclass
class Decision:
    candidate: str
    champion: str | None
    promoted: bool
    reason: str
    metric: str
    margin: float
    weeks: list[str] = field(default_factory=list)
    candidate_score: float | None = None
    champion_score: float | None = None
    paired: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def judge(candidate: list[dict], champion: list[dict], metric: str, margin: float,
          require_significant: bool) -> tuple[bool, str, float, float, dict]:
    """Whether the candidate's weekly scores beat the champion's: (promoted, reason, cand mean, champ mean, paired)."""
    a = np.array([w[metric] for w in candidate], dtype=float)
    b = np.array([w[metric] for w in champion], dtype=float)
    higher = HIGHER_IS_BETTER.get(metric, True)
    cand, champ = float(np.nanmean(a)), float(np.nanmean(b))
    paired = paired_comparison(a if higher else -a, b if higher else -b)  # > 0 means the candidate is better
    better = cand > champ if higher else cand < champ
    need = champ * (1 + margin) if higher else champ * (1 - margin)
    enough = cand >= need if higher else cand <= need
    word = "higher" if higher else "lower"
    text = (f"{metric} {cand:.4f} vs champion {champ:.4f} over {len(a)} weeks ({word} is better; required "
            f"{need:.4f} with margin {margin:.1%}; paired difference {paired['difference']:+.4f} "
            f"[{paired['ci95'][0]:+.4f}, {paired['ci95'][1]:+.4f}], better in {paired['weeks_better']} of "
            f"{paired['weeks']} weeks)")
    if not (better and enough):
        return False, "refused: " + text, cand, champ, paired
    if require_significant and not paired["ci95"][0] > 0:
        return False, "refused (difference not significant): " + text, cand, champ, paired
    return True, "promoted: " + text, cand, champ, paired


def same_settings(cfg: StudyConfig, version: str, other: str) -> bool:
    """Whether two registered versions were made with the same model and settings (only their training weeks
    differ): the same class and parameters of the unfitted forecaster a backtest refits, its name aside."""
    a, b = version_forecaster(cfg, version)[0], version_forecaster(cfg, other)[0]

    def settings(model) -> str:
        params = {k: v for k, v in model.get_params(deep=False).items() if k != "name"}
        return json.dumps([type(model).__module__, type(model).__qualname__, params], sort_keys=True, default=repr)

    return settings(a) == settings(b)


def promote(cfg: StudyConfig, panel: Panel, fingerprint: str, version: str, periods: np.ndarray,
            on_step: Callable[[str, int], None] | None = None) -> Decision:
    """Judge `version` against the champion on `periods`; move the alias when it wins. The decision and its reason
    are recorded as tags on the candidate version (and the alias move in the champion history)."""
    pc = cfg.promotion
    refit = pc.refit_every or cfg.backtest.refit_every
    metric, margin = pc.metric, pc.margin
    weeks = [str(panel.period_starts[p].date()) for p in periods]
    current = champion_version(cfg)
    version_forecaster(cfg, version)  # fails clearly when the version does not exist
    if current is None:
        decision = Decision(version, None, True, "promoted: there was no champion", metric, margin, weeks)
    elif current == str(version):
        raise HotspotError(f"version {version} of '{registered_name(cfg)}' is already the champion")
    elif pc.renew_same_settings and same_settings(cfg, version, current):
        decision = Decision(version, current, True, f"renewed: v{version} has the champion v{current}'s settings "
                            "(model, hyper-parameters, features), fitted on later weeks; a backtest refits both "
                            "alike, so their scores on any weeks are identical", metric, margin, weeks)
    else:
        cand = version_weekly_scores(cfg, panel, version, periods, refit, fingerprint, on_step)
        champ = version_weekly_scores(cfg, panel, current, periods, refit, fingerprint, on_step)
        promoted, reason, c_score, b_score, paired = judge(cand, champ, metric, margin, pc.require_significant)
        decision = Decision(version, current, promoted, f"{reason}; champion was v{current}", metric, margin, weeks,
                            c_score, b_score, paired)
    client, name = registry_client(), registered_name(cfg)
    client.set_model_version_tag(name, str(version), "promotion_decision",
                                 "promoted" if decision.promoted else "refused")
    client.set_model_version_tag(name, str(version), "promotion_reason", decision.reason[:4000])
    client.set_model_version_tag(name, str(version), "promotion_detail", json.dumps(decision.to_dict())[:4900])
    append_to_description(cfg, str(version), decision_words(decision))
    if decision.promoted:
        set_champion(cfg, version, decision.reason)
    return decision


METRIC_WORDS = {"poisson_deviance": "Poisson deviance"}


def metric_words(metric: str) -> str:
    """A metric as a reader writes it: `pai@1%` -> `PAI@1%`, `poisson_deviance` -> `Poisson deviance`."""
    head, _, tail = metric.partition("@")
    return METRIC_WORDS.get(metric) or (f"{head.upper()}@{tail}" if tail else metric.replace("_", " "))


def decision_words(decision: Decision) -> str:
    """The promotion gate's decision and its reason in words (a paragraph of the version's description)."""
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    verdict = "**Promoted**" if decision.promoted else "**Not promoted**"
    if decision.reason.startswith("renewed:"):
        return f"Promotion gate, {today}: {verdict} ({decision.reason})."
    if decision.champion is None or decision.candidate_score is None or decision.champion_score is None:
        return f"Promotion gate, {today}: {verdict}: there was no champion to compare with."
    higher = HIGHER_IS_BETTER.get(decision.metric, True)
    cand, champ, margin = decision.candidate_score, decision.champion_score, decision.margin
    need = champ * (1 + margin) if higher else champ * (1 - margin)
    weeks = decision.weeks
    span = f"the {len(weeks)} weeks {weeks[0]}..{weeks[-1]}" if weeks else "the backtest weeks"
    what = metric_words(decision.metric)
    text = (f"Promotion gate, {today}: {verdict}. Backtested on {span} (refitted on the weeks before each test "
            f"week, as the champion was), its mean {what} was {cand:.3f} against {champ:.3f} for the champion "
            f"v{decision.champion} ({'higher' if higher else 'lower'} is better); the gate asked for "
            f"{'at least' if higher else 'at most'} {need:.3f} (a margin of {margin:.0%}).")
    paired = decision.paired or {}
    if paired:
        lo, hi = paired["ci95"]
        text += (f" Week by week it was better in {paired['weeks_better']} of {paired['weeks']} weeks; the mean "
                 f"paired difference was {paired['difference']:+.3f} (95% interval {lo:+.3f} to {hi:+.3f}, in the "
                 "direction where positive favours this version).")
    if decision.promoted:
        text += " It became the champion."
    elif "not significant" in decision.reason:
        text += " Its lead was not significant (the interval includes zero), which this area's gate requires."
    else:
        text += f" It did not clear the required {need:.3f}, so v{decision.champion} stays the champion."
    return text


def rollback(cfg: StudyConfig, to: str | None = None, why: str = "") -> tuple[str, str]:
    """Move the champion alias back to the previous champion (or to version `to`); returns (from, to)."""
    current = champion_version(cfg)
    if current is None:
        raise HotspotError(f"'{registered_name(cfg)}' has no champion to roll back")
    if to is None:
        history = champion_history(cfg)
        # the champion before the current one was *promoted* (rollbacks are undone with --to, not stacked)
        made = [h for h in reversed(history) if h["version"] == current and not h.get("rollback")]
        earlier = [made[0]["previous"]] if made and made[0].get("previous") else []
        if not earlier:
            raise HotspotError(f"v{current} is the first champion of '{registered_name(cfg)}'; there is no earlier "
                               "one to roll back to (name one with --to)")
        to = earlier[0]
    if str(to) == current:
        raise HotspotError(f"version {to} is already the champion")
    version_forecaster(cfg, str(to))  # fails clearly when the version does not exist
    set_champion(cfg, str(to), f"rollback from v{current}" + (f": {why}" if why else ""), rollback=True)
    return current, str(to)


def cache_weekly_scores(cfg: StudyConfig, panel: Panel, version: str, periods: np.ndarray, refit_every: int,
                        fingerprint: str, weekly: list[dict]) -> None:
    """Store weekly scores already computed for a version's spec on `periods` (by a backtest that ran the same spec
    with the same refits) in its run's cache, so the gate judges it without fitting it again."""
    _, ref = version_forecaster(cfg, version)
    registry_client().log_dict(ref.run_id, {"version": ref.version, "refit_every": refit_every,
                                            "data_fingerprint": fingerprint, "weekly": weekly},
                               _cache_key(panel, periods, refit_every, fingerprint))
