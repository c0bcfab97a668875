"""Which model forecasts a week: `auto` by default, or a pinned registered version.

`auto` (the selection rule, training/selection.py) is fitted for the forecast week with only the weeks before it:
every `[selection]` candidate is backtested, rolling origin, on the `validation_weeks` weeks before the forecast week
and the best mean of the promotion metric forecasts (a fresh choice per forecast week, the rule's first fit: no
earlier choice to keep). Its `lightgbm` candidate takes the product's tuned spec when a study exists, as `hotspot
train` does. A pin is `champion` (the registry's alias) or a version number.

Provenance of an `auto` forecast (`forecast_provenance` with this module's `ForecastModel.ref`): `model` is "auto",
`model_version` the chosen candidate's name (e.g. "ewm_hl26"), `model_run_id` None (no registered version made it;
the forecast's or publication's own MLflow run logs the choice) and `model_data_fingerprint` the data it was fitted
on; `selection` holds the choice, the metric, the validation weeks and every candidate's mean. A pinned version
keeps the registered name, version and run, with `selection` None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.panel import Panel
from hotspot.models import Forecaster
from hotspot.training.registry import ModelRef

AUTO, CHAMPION_PIN = "auto", "champion"


@dataclass(frozen=True)
class ForecastModel:
    model: Forecaster  # fitted: its predict(panel.until(t)) forecasts the week (auto: the chosen candidate)
    ref: ModelRef
    selection: dict | None  # auto's choice and its validation scores; None for a pinned version
    seconds: float = 0.0

    @property
    def words(self) -> str:
        """What forecast, in one sentence."""
        if self.selection:
            return self.selection["sentence"]
        return f"version {self.ref.version} of the registered model {self.ref.name} (pinned)"

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
    """`auto chose X for the week of W: the best mean METRIC over the N weeks a..b before it (X 1.23, Y 1.20...)`."""
    from hotspot.training.promotion import metric_words

    weeks, scores = summary["validation_weeks"], summary["scores"]
    ranked = sorted(scores.items(), key=lambda kv: -kv[1] if np.isfinite(kv[1]) else np.inf,
                    reverse=summary["metric"] == "poisson_deviance")
    finite = [v for v in scores.values() if np.isfinite(v)]
    tie = len(finite) > 1 and len(set(finite)) == 1
    return (f"auto chose {summary['chosen']} for the week of {forecast_week}: the best mean "
            f"{metric_words(summary['metric'])} over the {len(weeks)} weeks {weeks[0]}..{weeks[-1]} before it, each "
            "forecast by candidates fitted only on earlier weeks ("
            + ", ".join(f"{n} {v:.3f}" for n, v in ranked if np.isfinite(v))
            + ("" if not tie else "; a tie, so the first candidate listed") + ")")


def auto_forecaster(cfg: StudyConfig) -> Forecaster:
    """The unfitted selection rule over the `[selection]` candidates (LightGBM with the tuned spec when one exists)."""
    from hotspot.training.backtest import training_model

    return training_model(cfg, AUTO)[0]


def first_auto_period(cfg: StudyConfig, panel: Panel) -> int:
    """The first period auto can forecast: the features' look-back, then its validation weeks."""
    return panel.min_history + 1 + cfg.selection.validation_weeks


def fit_auto(cfg: StudyConfig, panel: Panel, t: int, fingerprint: str | None) -> ForecastModel:
    """`auto` fitted for period t with only the periods before it; the chosen candidate forecasts."""
    first = first_auto_period(cfg, panel)
    if t < first:
        raise ValueError(
            f"auto cannot forecast {panel.period_starts[t].date()}: it chooses a model on the "
            f"{cfg.selection.validation_weeks} weeks before the forecast week, after the features' look-back, so its "
            f"forecasts start {panel.period_starts[first].date()} (forecastable weeks run "
            f"{panel.period_starts[first].date()} .. {panel.next_period_start.date()}); pin a model "
            "(--model champion or a version) for an earlier week")
    start = time.perf_counter()
    auto = auto_forecaster(cfg).fit(panel.until(t))
    week = str(panel.period_starts[t].date())
    summary = {**auto.fit_summary_, "candidates": [c.name for c in auto.candidates], "forecast_week": week,
               "fitted_through": str(panel.period_starts[t - 1].date())}
    summary["sentence"] = selection_sentence(summary, week)
    return ForecastModel(auto.model_, ModelRef(AUTO, auto.chosen_, None, fingerprint), summary,
                         time.perf_counter() - start)


def pinned_model(cfg: StudyConfig, pin: str) -> ForecastModel:
    """The registered version a pin names (`champion`: the alias)."""
    from hotspot.training.registry import load_version

    model, ref = load_version(cfg, None if pin == CHAMPION_PIN else pin)
    return ForecastModel(model, ref, None)


def forecast_model(cfg: StudyConfig, panel: Panel, t: int, fingerprint: str | None,
                   pin: str | None = None) -> ForecastModel:
    """The model that forecasts period t: auto (pin None or 'auto') or the pinned version."""
    return fit_auto(cfg, panel, t, fingerprint) if pin in (None, AUTO) else pinned_model(cfg, pin)
