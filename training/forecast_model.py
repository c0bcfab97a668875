"""Which model forecasts a week: `auto` by default, or a pinned registered version.

`auto` (the selection rule, training/selection.py) forecasting a week is fitted at the week's refit week with only
the weeks before that: every `[selection]` candidate is backtested, rolling origin, on the `validation_weeks` weeks
before the refit week and the best mean of the promotion metric forecasts (each refit a fresh choice, the rule's
first fit: no earlier choice to keep). Refit weeks are every `forecast_refit_every` weeks, counted from 1970-01-01 so
that every run refits on the same weeks, as a backtest refits every `refit_every` weeks: the weeks up to the next
refit are forecast by that fit with their own features (known before each starts). Fits are kept on disk
(training/auto_store.py). Its `lightgbm` candidate takes the product's tuned spec when a study exists, as `hotspot
train` does. A pin is `champion` (the registry's alias) or a version number.

Provenance of an `auto` forecast (`forecast_provenance` with this module's `ForecastModel.ref`): `model` is "auto",
`model_version` the chosen candidate's name (e.g. "ewm_hl26"), `model_run_id` None (no registered version made it;
the forecast's or publication's own MLflow run logs the choice) and `model_data_fingerprint` the data it was fitted
on; `selection` holds the choice, the metric, the validation weeks and every candidate's mean. A pinned version
keeps the registered name, version and run, with `selection` None.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.panel import Panel
from hotspot.models import Forecaster
from hotspot.training.registry import ModelRef

AUTO, CHAMPION_PIN = "auto", "champion"


class NotForecastable(ValueError):
    """auto asked for a week before its first forecastable week (the look-back, then its validation weeks)."""


@dataclass(frozen=True)
class ForecastModel:
    model: Forecaster  # fitted: its predict(panel.until(t)) forecasts the week (auto: the chosen candidate)
    ref: ModelRef
    selection: dict | None  # auto's choice and its validation scores; None for a pinned version
    seconds: float = 0.0
    champion: bool = False  # pinned by the alias 'champion'

    @property
    def words(self) -> str:
        """What forecast, in one sentence."""
        if self.selection:
            return self.selection["sentence"]
        return f"version {self.ref.version} of the registered model {self.ref.name} (pinned)"

    @property
    def label(self) -> str:
        """`auto: blend`, `auto: ewm_hl26` or `lightgbm v3`, for pages and reports."""
        return f"auto: {self.ref.version}" if self.selection else self.ref.label

    @property
    def provenance_words(self) -> str:
        """What forecast, for a page's provenance: auto's weights or choice and its refit cadence, or the version."""
        sel = self.selection
        if not sel:
            return f"{self.ref.label}{' (the champion)' if self.champion else ''}"
        weights = sel.get("weights") or {}
        what = (("blended its candidates (" + ", ".join(f"{n} {w:.2f}" for n, w in
                                                      sorted(weights.items(), key=lambda kv: -kv[1]) if w > 0) + ")")
                if weights else f"chose {sel['chosen']}")
        return (f"auto, the selection rule, {what} at its refit week {sel.get('refit_week')}, on the weeks before "
                f"it (refitted every {sel.get('refit_every')} weeks)")

    @property
    def run_label(self) -> str:
        """`auto:ewm_hl26` or `v3`, for run names and tables."""
        return f"auto:{self.ref.version}" if self.selection else f"v{self.ref.version}"


def pin_from(model: str | None = None, version: str | None = None) -> str | None:
    """The pin of `--model auto|champion` and `--version N` (a version wins); None means auto."""
    if version is not None:
        if not str(version).isdigit():
            raise HotspotError(f"--version: expected a registered version number, got {version!r}")
        return str(version)
    model = (model or AUTO).strip().lower()
    if model not in (AUTO, CHAMPION_PIN) and not model.isdigit():
        raise HotspotError(f"--model: expected 'auto', 'champion' or a version number, got {model!r}")
    return None if model == AUTO else model


def selection_sentence(summary: dict, forecast_week: str) -> str:
    """`auto chose X for the week of W: the best mean METRIC over the N weeks a..b before it (X 1.23, Y 1.20...)`,
    or for a blend its weights; "before its refit week R" when the fit was made at an earlier refit week."""
    from hotspot.training.promotion import metric_words

    weeks, scores = summary["validation_weeks"], summary["scores"]
    ranked = sorted(scores.items(), key=lambda kv: -kv[1] if np.isfinite(kv[1]) else np.inf,
                    reverse=summary["metric"] == "poisson_deviance")
    finite = [v for v in scores.values() if np.isfinite(v)]
    tie = len(finite) > 1 and len(set(finite)) == 1
    means = ", ".join(f"{n} {v:.3f}" for n, v in ranked if np.isfinite(v))
    refit = summary.get("refit_week")
    before = ("before it" if refit in (None, forecast_week) else
              f"before its refit week {refit} (auto is refitted every {summary['refit_every']} weeks)")
    if summary.get("weights"):  # a blend: what it weighed, then the candidates' own validation means
        weights = ", ".join(f"{n} {w:.2f}" for n, w in sorted(summary["weights"].items(), key=lambda kv: -kv[1])
                            if w > 0)
        how = ("weights minimising the Poisson deviance" if summary.get("combine", "blend") == "blend"
               else "equal shares brought to the recorded level")
        head = (f"auto blended its candidates for the week of {forecast_week} ({weights}): {how} over the "
                f"{len(weeks)} weeks {weeks[0]}..{weeks[-1]} {before}, each forecast by candidates fitted only on "
                f"earlier weeks (their mean {metric_words(summary['metric'])} there: {means})")
    else:
        head = (f"auto chose {summary['chosen']} for the week of {forecast_week}: the best mean "
                f"{metric_words(summary['metric'])} over the {len(weeks)} weeks {weeks[0]}..{weeks[-1]} {before}, "
                f"each forecast by candidates fitted only on earlier weeks ({means}"
                + ("" if not tie else "; a tie, so the first candidate listed") + ")")
    return head


def auto_forecaster(cfg: StudyConfig) -> Forecaster:
    """The unfitted selection rule over the `[selection]` candidates (LightGBM with the tuned spec when one exists)."""
    from hotspot.training.backtest import training_model

    return training_model(cfg, AUTO)[0]


def first_auto_period(cfg: StudyConfig, panel: Panel) -> int:
    """The first period auto can forecast: the features' look-back, then its validation weeks."""
    return panel.min_history + 1 + cfg.selection.validation_weeks


def forecast_refit_every(cfg: StudyConfig) -> int:
    """Weeks between auto's refits when it forecasts: selection.forecast_refit_every, else its refit_every, else
    the backtest's."""
    sc = cfg.selection
    return sc.forecast_refit_every or sc.refit_every or cfg.backtest.refit_every


def refit_period(cfg: StudyConfig, panel: Panel, t: int) -> int:
    """The period auto forecasting period t is fitted at: the latest refit week at or before t (a week whose number
    since 1970-01-01 is a multiple of `forecast_refit_every`, so every run, whatever its data's first week, refits
    on the same weeks), and never before auto's first forecastable week."""
    k = forecast_refit_every(cfg)
    week_number = int(panel.period_starts[t].value // (86_400 * 10**9)) // 7
    return max(t - week_number % k, first_auto_period(cfg, panel))


@dataclass(frozen=True)
class AutoFit:
    """auto fitted at one refit week: the forecasting model and the fit's summary (its choice and scores)."""
    model: Forecaster
    chosen: str
    summary: dict
    refit: int  # the period index it was fitted at (with periods [0, refit))
    how: str  # "fitted", "fitted from the previous refit's stored scores" or "stored"
    seconds: float


def auto_fit(cfg: StudyConfig, panel: Panel, r: int) -> AutoFit:
    """auto fitted at period r (on periods [0, r)), or the stored fit for the same data and settings
    (training/auto_store.py); a refit reuses the previous refit's stored scores and final fits when its data is
    unchanged. The result is the same either way."""
    from hotspot.training import auto_store

    start = time.perf_counter()
    auto = auto_forecaster(cfg)
    week = str(panel.period_starts[r].date())
    first = first_auto_period(cfg, panel)
    previous = refit_period(cfg, panel, r - 1) if r - 1 >= first else None
    keep = auto_store.folder(cfg.model_key) is not None
    digests = auto_store.panel_digests(panel, [r] + ([previous] if previous is not None else [])) if keep else {}
    spec = auto_store.spec_digest(auto) if keep else ""
    entry = auto_store.load(cfg.model_key, spec, week, digests[r]) if keep else None
    if entry is not None:
        return AutoFit(entry["model"], entry["chosen"], entry["summary"], r, "stored", time.perf_counter() - start)
    how = "fitted"
    if previous is not None and keep:
        before = auto_store.load(cfg.model_key, spec, str(panel.period_starts[previous].date()), digests[previous])
        if before is not None:
            auto.seed(before["scores"])
            how = "fitted from the previous refit's stored scores"
    auto.fit(panel.until(r))
    summary = {**auto.fit_summary_, "candidates": [c.name for c in auto.candidates]}
    if keep:
        auto_store.store(cfg.model_key, spec, week, digests[r], {"model": auto.model_, "chosen": auto.chosen_,
                                                                  "summary": summary,
                                                                  "scores": auto.stored_scores()})
    return AutoFit(auto.model_, auto.chosen_, summary, r, how, time.perf_counter() - start)


def fit_auto(cfg: StudyConfig, panel: Panel, t: int, fingerprint: str | None,
             fits: dict | None = None) -> ForecastModel:
    """`auto` for period t: fitted at t's refit week (`refit_period`) with only the periods before that, forecasting
    t with the features known when t starts; `fits`, when given, keeps the fits by (refit week, fingerprint) for the
    caller (weeks that share a refit week share the fit)."""
    first = first_auto_period(cfg, panel)
    if t < first:
        raise NotForecastable(
            f"auto cannot forecast {panel.period_starts[t].date()}: it chooses a model on the "
            f"{cfg.selection.validation_weeks} weeks before the forecast week, after the features' look-back, so its "
            f"forecasts start {panel.period_starts[first].date()} (forecastable weeks run "
            f"{panel.period_starts[first].date()} .. {panel.next_period_start.date()}); pin a model "
            "(--model champion or a version) for an earlier week")
    start = time.perf_counter()
    r = refit_period(cfg, panel, t)
    key = (str(panel.period_starts[r].date()), fingerprint)
    fit = None if fits is None else fits.get(key)
    if fit is None:
        fit = auto_fit(cfg, panel, r)
        if fits is not None:
            fits[key] = fit
    week = str(panel.period_starts[t].date())
    summary = {**fit.summary, "forecast_week": week,
               "fitted_through": str(panel.period_starts[r - 1].date()), "refit_week": key[0],
               "refit_every": forecast_refit_every(cfg), "fit": fit.how}
    summary["sentence"] = selection_sentence(summary, week)
    return ForecastModel(fit.model, ModelRef(AUTO, fit.chosen, None, fingerprint), summary,
                         time.perf_counter() - start)


def pinned_model(cfg: StudyConfig, pin: str) -> ForecastModel:
    """The registered version a pin names (`champion`: the alias)."""
    from hotspot.training.registry import load_version

    model, ref = load_version(cfg, None if pin == CHAMPION_PIN else pin)
    return ForecastModel(model, ref, None, champion=pin == CHAMPION_PIN)


def models_by_week(cfg: StudyConfig, panel: Panel, fingerprint: str | None,
                   pin: str | None = None) -> Callable[[int], ForecastModel]:
    """What forecasts each period t of the panel: auto (pin None or 'auto'; periods that share a refit week share
    its fit) or the pinned version (loaded once)."""
    if pin in (None, AUTO):
        fits: dict = {}
        return lambda t: fit_auto(cfg, panel, t, fingerprint, fits)
    pinned = pinned_model(cfg, pin)
    return lambda t: pinned


def forecast_model(cfg: StudyConfig, panel: Panel, t: int, fingerprint: str | None,
                   pin: str | None = None) -> ForecastModel:
    """The model that forecasts period t: auto (pin None or 'auto') or the pinned version."""
    return models_by_week(cfg, panel, fingerprint, pin)(t)
