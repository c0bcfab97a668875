"""Honest model selection: `auto` chooses among candidate forecasters using only the weeks it is fitted on.

At `fit(panel)` every candidate is backtested, rolling origin, on the last `validation_weeks` observed weeks of that
panel (each week forecast by the candidate fitted only on the weeks before it, refitted every `refit_every` weeks;
training/rolling.py's loop, the same one the backtest runs), scored by the promotion metric; the candidate with the
best mean is fitted on the whole panel and forecasts. In a backtest of `auto` this happens at every refit, so its
score is what a user of `auto` would have got: the week forecast, and every later one, never enter the choice.

The rule: the best mean over the validation weeks wins (deviance is minimised); an exact tie goes to the candidate
listed first (the config's order). With `sticky` (the default), a refit keeps the previous fit's choice unless the
best candidate beats it distinguishably: the 95% bootstrap interval of their paired weekly difference over the
validation weeks excludes 0 (the accuracy report's definition). The first fit, and a fit for a week not after the
previous one's, choose by the mean alone. Why sticky: the candidates differ by less than the weeks' noise, so the best
mean of 8 weeks flips between them and the flips cost accuracy. On Toronto's count baselines, 2016-2021 in 26-week
blocks, refit every 4 weeks, PAI@1% against each block's best baseline: all offences 0.996 by the mean alone, 0.998
sticky; break and enter 0.980 and 0.990.
A week without incidents has no PAI; means skip it, and with no scorable week at all the first candidate is kept.

With `combine = "blend"` auto forecasts with a weighted sum of the candidates instead of one of them: the weights,
non-negative, minimise the Poisson deviance of the candidates' forecasts over the same validation weeks (each
forecast made, as above, by a fit on the weeks before it), and every candidate with a positive weight is fitted on
the whole panel. The weights fix the level (a deviance fit matches the recorded total) and average the candidates'
rankings; they are chosen with the validation weeks only, so the blend is as honest as the choice.

Cost: each fit backtests every candidate over ceil(validation_weeks / refit_every) blocks. Blocks are counted back
from the panel's end, and a block's weekly scores are kept (`reuse_scores`) and reused by the next fit on a longer
prefix of the same panel (`panel.until` views of one array, as a backtest makes them): the data before a block and
the block's own weeks are then the same, so the scores are too. With the backtest refitting as often as the
validation, each refit costs one new validation fit per candidate plus the chosen one's final fit.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hotspot.features.panel import Panel
from hotspot.models.base import Forecaster, named_clone  # noqa: F401  (named_clone: used here and by the registry)
from hotspot.training.rolling import forecast_periods, run_backtest
from hotspot.training.tuning import HIGHER_IS_BETTER

# auto forecasts with the candidate it chooses, or with a weighted sum of them all: weights fitted by deviance
# ("blend") or equal shares of each candidate brought to the recorded level ("average")
COMBINE = ("choose", "blend", "average")
BLEND_NAME = "blend"


def metric_coverage(metric: str) -> float:
    """The coverage a metric is taken at ("pai@1%" -> 0.01); 0.01 for a metric without one (deviance)."""
    if "@" not in metric:
        return 0.01
    label = metric.split("@", 1)[1]
    if not label.endswith("%"):
        raise ValueError(f"metric {metric!r}: expected a coverage in percent after '@', such as 'pai@1%'")
    return float(label[:-1]) / 100


def choose(means: dict[str, float], metric: str) -> str:
    """The candidate with the best mean (first listed on an exact tie; the first one when none has a score)."""
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    best, best_value = next(iter(means)), -math.inf
    for name, value in means.items():
        if math.isfinite(value) and sign * value > best_value:
            best, best_value = name, sign * value
    return best


def beats(a: np.ndarray, b: np.ndarray, metric: str) -> bool:
    """Whether weekly scores `a` are distinguishably better than `b` (the 95% paired interval of their difference
    excludes 0, on the metric's better side): the test a sticky refit makes before leaving its previous choice."""
    from hotspot.training.evaluation.stats import paired_comparison

    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    return bool(paired_comparison(sign * np.asarray(a, float), sign * np.asarray(b, float))["ci95"][0] > 0)


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


class AutoSelect(Forecaster):
    """Chooses among `candidates` by a rolling-origin backtest on the fitted panel's last weeks; forecasts with the
    choice (see the module's docstring for the rule)."""

    # a refit keeps the previous choice (sticky) and reuses the previous fit's scores: a backtest refits it in
    # order, never its blocks as separate tasks (training/rolling.py on the Dask engine)
    sequential_refits = True

    def __init__(self, candidates: list[Forecaster], validation_weeks: int = 8, refit_every: int = 4,
                 metric: str = "pai@1%", sticky: bool = True, reuse_scores: bool = True, combine: str = "choose"):
        self.candidates = candidates
        self.validation_weeks = validation_weeks
        self.refit_every = refit_every
        self.metric = metric
        self.sticky = sticky
        self.reuse_scores = reuse_scores
        self.combine = combine

    def _default_name(self) -> str:
        return "auto"

    def _check(self) -> list[str]:
        names = [c.name for c in self.candidates]
        if not names:
            raise ValueError("auto: no candidates to choose from (selection.candidates is empty)")
        if len(set(names)) != len(names):
            raise ValueError(f"auto: candidate names must be unique, got {names}")
        if self.validation_weeks < 1 or self.refit_every < 1:
            raise ValueError(f"auto: validation_weeks and refit_every must be at least 1, got "
                             f"{self.validation_weeks} and {self.refit_every}")
        metric_coverage(self.metric)
        if self.combine not in COMBINE:
            raise ValueError(f"auto: combine must be one of {list(COMBINE)}, got {self.combine!r}")
        return names

    def _blocks(self, periods: np.ndarray) -> list[np.ndarray]:
        """The validation periods in blocks of refit_every counted back from the end (the oldest may be shorter),
        so that consecutive fits of a backtest share their blocks."""
        stop, blocks = len(periods), []
        while stop > 0:
            blocks.append(periods[max(0, stop - self.refit_every):stop])
            stop -= self.refit_every
        return blocks[::-1]

    def _cache(self, panel: Panel) -> dict:
        """Earlier fits' weekly scores when this panel is a prefix of the same one (see the module's docstring)."""
        root = _root(panel.target)
        previous = getattr(self, "score_cache_", None)
        same = (self.reuse_scores and previous is not None and previous["root"] is root
                and previous["metric"] == self.metric and previous["candidates"] == [repr(c) for c in self.candidates]
                and panel.target.__array_interface__["data"][0] == root.__array_interface__["data"][0])
        if same:
            return previous
        if (self.reuse_scores and previous is not None and previous.get("seeded")
                and previous["metric"] == self.metric and previous["candidates"] == [repr(c) for c in self.candidates]):
            return {**previous, "root": root, "seeded": False}  # a stored fit's scores, checked by the caller
        return {"root": root, "metric": self.metric, "candidates": [repr(c) for c in self.candidates], "scores": {},
                "forecasts": {}, "fitted": {}}

    def seed(self, stored: dict) -> AutoSelect:
        """Reuse the weekly scores and final fits of an earlier fit (`stored_scores()` of it, e.g. read back from
        disk) in the next `fit`. The caller vouches that the panel this object is fitted on next starts with the
        same data as the one the earlier fit saw (training/forecast_model.py checks a digest of it)."""
        self.score_cache_ = {**stored, "root": None, "seeded": True}
        return self

    def stored_scores(self) -> dict:
        """What `seed` takes: this fit's weekly scores, forecasts and final fits, without the panel's array."""
        return {k: v for k, v in self.score_cache_.items() if k not in ("root", "seeded")}

    def fit(self, panel: Panel) -> AutoSelect:
        """Backtest every candidate on the panel's last validation weeks, then fit the best one on the whole panel."""
        names = self._check()
        try:
            periods = forecast_periods(panel, self.validation_weeks)
        except ValueError as exc:
            raise ValueError(f"auto: cannot validate on the last {self.validation_weeks} weeks before "
                             f"{panel.next_period_start.date()}: {exc}") from None
        cache = self._cache(panel)
        scores = cache["scores"]  # (candidate, block origin, week) -> the metric that week
        forecasts = cache["forecasts"]  # the same -> the candidate's forecast that week (kept for a blend)
        blend = self.combine in ("blend", "average")
        coverage = metric_coverage(self.metric)
        by_name = dict(zip(names, self.candidates, strict=True))
        for block in self._blocks(periods):
            origin = int(block[0])
            missing = [n for n in names if any((n, origin, int(t)) not in scores
                                               or (blend and (n, origin, int(t)) not in forecasts) for t in block)]
            if not missing:
                continue
            models = [self._fitted_at(cache, n, origin) or named_clone(by_name[n]) for n in missing]
            result = run_backtest(panel, models, block, len(block), [coverage])
            risk = result.predictions["risk"].to_numpy()
            for m, name in enumerate(missing):  # predictions: model-major, then week, then cell
                for w, (t, row) in enumerate(zip(block, result.metrics["models"][name]["weekly"], strict=True)):
                    scores[(name, origin, int(t))] = float(row[self.metric])
                    if blend:
                        C = panel.grid.n_cells
                        at = (m * len(block) + w) * C
                        forecasts[(name, origin, int(t))] = risk[at:at + C].astype(np.float32)
        origins = {int(t): int(b[0]) for b in self._blocks(periods) for t in b}
        weeks = panel.period_starts[periods]
        weekly = pd.DataFrame({n: [scores[(n, origins[int(t)], int(t))] for t in periods] for n in names}, index=weeks)
        means = {n: float(weekly[n].mean(skipna=True)) if weekly[n].notna().any() else float("nan") for n in names}
        best = choose(means, self.metric)
        previous = self._previous(names, weeks)
        weights = None
        if blend:
            stacked = np.stack([[forecasts[(n, origins[int(t)], int(t))] for t in periods] for n in names])
            fit_weights = blend_weights if self.combine == "blend" else average_weights
            weights = dict(zip(names, fit_weights(stacked, panel.target[periods]).tolist(), strict=True))
            fitted = {n: named_clone(by_name[n]).fit(panel) for n, w in weights.items() if w > 0}
            self.chosen_ = BLEND_NAME
            self.model_ = _Blend([fitted[n] for n in fitted], [weights[n] for n in fitted])
        else:
            self.chosen_ = previous if previous is not None and not self._beats(weekly, best, previous) else best
            self.model_ = fitted_one = named_clone(by_name[self.chosen_]).fit(panel)
            fitted = {self.chosen_: fitted_one}
        # the next fit's newest block may start here, and reuse these fits
        cache["fitted"] = {n: (panel.n_periods, m) for n, m in fitted.items()}
        self.weights_ = weights
        self.scores_ = means
        self.best_mean_ = best
        self.weekly_scores_ = weekly
        self.validation_weeks_ = weeks
        self.score_cache_ = cache
        self.fit_summary_ = {
            "chosen": self.chosen_, "best_mean": best, "previous": previous, "metric": self.metric,
            "validation_weeks": [str(w.date()) for w in weeks],
            "scores": means,
        }
        if weights is not None:
            self.fit_summary_.update({"combine": self.combine, "weights": weights})
        return self

    @staticmethod
    def _fitted_at(cache: dict, name: str, origin: int) -> Forecaster | None:
        """The previous fit's final model when it is `name` fitted on the weeks before `origin` (the same fit a
        validation block starting at `origin` would make), wrapped so that the block does not fit it again."""
        fitted = cache.get("fitted", {}).get(name)
        if fitted is None or fitted[0] != origin:
            return None
        return _AlreadyFitted(fitted[1])

    def _previous(self, names: list[str], weeks: pd.DatetimeIndex) -> str | None:
        """The previous fit's choice when a sticky refit may keep it: a candidate still, chosen for an earlier week."""
        previous, before = getattr(self, "chosen_", None), getattr(self, "validation_weeks_", None)
        if not self.sticky or previous not in names or before is None or not len(before) or before[-1] >= weeks[-1]:
            return None
        return previous

    def _beats(self, weekly: pd.DataFrame, best: str, previous: str) -> bool:
        """Whether `best` is distinguishably better than `previous` on the validation weeks (95% paired interval)."""
        return best != previous and beats(weekly[best].to_numpy(), weekly[previous].to_numpy(), self.metric)

    def predict(self, panel: Panel) -> np.ndarray:
        """The chosen candidate's (or the blend's) forecast for the panel's next period."""
        if not hasattr(self, "model_"):
            raise ValueError("auto: fit it on a panel before predicting")
        return self.model_.predict(panel)

    def explain(self, panel: Panel) -> tuple[list[str], np.ndarray] | None:
        """The contributions of what it forecasts with (the chosen candidate or the blend)."""
        if not hasattr(self, "model_"):
            raise ValueError("auto: fit it on a panel before explaining")
        return self.model_.explain(panel)


def average_weights(forecasts: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Equal shares of K forecasts, (K, ...), each scaled so that its total matches the observed total: the plain
    average of the candidates' rankings, at the recorded level."""
    K = forecasts.shape[0]
    totals = np.asarray(forecasts, dtype=np.float64).reshape(K, -1).sum(axis=1)
    observed_total = float(np.sum(observed))
    return np.where(totals > 0, observed_total / np.maximum(totals, 1e-12), 0.0) / K


def blend_weights(forecasts: np.ndarray, observed: np.ndarray, floor: float = 1e-9) -> np.ndarray:
    """Non-negative weights of K forecasts, (K, ...), whose weighted sum has the least Poisson deviance against
    `observed` (shaped like one forecast); L-BFGS-B from equal weights. A forecast that adds nothing gets 0."""
    from scipy.optimize import minimize

    K = forecasts.shape[0]
    F = np.asarray(forecasts, dtype=np.float64).reshape(K, -1)
    y = np.asarray(observed, dtype=np.float64).reshape(-1)
    if F.shape[1] != y.size:
        raise ValueError(f"blend: {F.shape[1]} forecast values per candidate for {y.size} observed ones")
    n = max(y.size, 1)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        mu = np.maximum(w @ F, floor)
        return float(mu.sum() - y @ np.log(mu)) / n, (F.sum(axis=1) - F @ (y / mu)) / n

    result = minimize(objective, np.full(K, 1.0 / K), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * K)
    weights = np.where(result.x > 1e-6 * max(result.x.max(), 1e-12), result.x, 0.0)
    return weights if weights.sum() > 0 else np.full(K, 1.0 / K)


class _Blend(Forecaster):
    """A weighted sum of fitted forecasters (auto's `combine = "blend"`)."""

    def __init__(self, models: list[Forecaster], weights: list[float]):
        self.models = models
        self.weights = weights

    def _default_name(self) -> str:
        return BLEND_NAME

    def fit(self, panel: Panel) -> _Blend:
        """Nothing to do: the models are fitted and the weights chosen by `AutoSelect.fit`."""
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        """The weighted sum of the models' forecasts."""
        return sum(w * np.asarray(m.predict(panel), dtype=np.float64) for m, w in zip(self.models, self.weights,
                                                                                        strict=True))

    def explain(self, panel: Panel) -> tuple[list[str], np.ndarray] | None:
        """Each part's contributions weighted by its share of each cell's forecast (w_k x forecast_k / the blend):
        a cell the LightGBM part drives is told by LightGBM's own reasons, one a count baseline drives by the count
        it reads. The shares make this a weighted average of the parts' explanations, exact for each part, an
        approximation of the sum's own log (which no part-wise split gives exactly). None when no part can say."""
        parts = [(w * np.asarray(m.predict(panel), dtype=np.float64), m.explain(panel))
                 for m, w in zip(self.models, self.weights, strict=True) if w > 0]
        total = sum(f for f, _ in parts)
        if not parts or all(e is None for _, e in parts):
            return None
        names: list[str] = []
        for _, e in parts:
            names += [n for n in (e[0] if e else []) if n not in names]
        position = {n: i for i, n in enumerate(names)}
        contrib = np.zeros((len(total), len(names)))
        share_of = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
        for forecast, e in parts:
            if e is not None:
                contrib[:, [position[n] for n in e[0]]] += (forecast * share_of)[:, None] * e[1]
        return names, contrib


class _AlreadyFitted(Forecaster):
    """A fitted forecaster whose `fit` does nothing: a validation block reusing the previous fit's final model."""

    def __init__(self, model: Forecaster):
        self.model = model

    def _default_name(self) -> str:
        return self.model.name

    def fit(self, panel: Panel) -> _AlreadyFitted:
        """Nothing to do: the model was fitted on the same weeks."""
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        """The wrapped model's forecast."""
        return self.model.predict(panel)

    def explain(self, panel: Panel) -> tuple[list[str], np.ndarray] | None:
        """The wrapped model's contributions."""
        return self.model.explain(panel)


def selection_rows(metrics: dict) -> pd.DataFrame:
    """One row per refit of each selecting model in a backtest's metrics: the week it first forecast, the weeks it
    validated on, the candidate it chose ("blend" for a blend), the one with the best mean and the previous choice
    (they differ when a sticky refit kept the previous one), every candidate's validation mean (one column each) and,
    for a blend, each candidate's weight (columns `weight_NAME`)."""
    rows = []
    for model, m in metrics.get("models", {}).items():
        for refit in m.get("refits", []):
            if "chosen" not in refit:
                continue
            valid = refit.get("validation_weeks") or [""]
            rows.append({"model": model, "refit_week": refit["refit_week"], "validation_from": valid[0],
                         "validation_to": valid[-1], "metric": refit["metric"], "chosen": refit["chosen"],
                         "best_mean": refit.get("best_mean"), "previous": refit.get("previous"), **refit["scores"],
                         **({"combine": refit["combine"]} if "combine" in refit else {}),
                         **{f"weight_{k}": v for k, v in (refit.get("weights") or {}).items()}})
    return pd.DataFrame(rows)


def describe_selection(metrics: dict, best_baseline: str | None, reps: int = 2000) -> dict:
    """What each selecting model chose at its refits, in words, and how it stands against the best baseline on the
    same weeks (PAI@1%, with the paired interval)."""
    from hotspot.training.evaluation.stats import paired_comparison

    out: dict = {"models": {}, "sentences": []}
    table = selection_rows(metrics)
    if table.empty:
        return out
    models = metrics["models"]
    for model, frame in table.groupby("model", sort=False):
        counts = frame["chosen"].value_counts()
        n = len(frame)
        parts = [f"{name} at {count} of {n} refits" if i == 0 else f"{name} at {count}"
                 for i, (name, count) in enumerate(counts.items())]
        kept = int((frame["chosen"] != frame["best_mean"]).sum()) if "best_mean" in frame else 0
        n_valid = len(models[model]["refits"][0]["validation_weeks"])
        weight_columns = [c for c in frame.columns if c.startswith("weight_")]
        if weight_columns and (frame["chosen"] == BLEND_NAME).all():
            kept = 0
            mean_weights = frame[weight_columns].fillna(0.0).mean().sort_values(ascending=False)
            shown = ", ".join(f"{c.removeprefix('weight_')} {w:.2f}" for c, w in mean_weights.items() if w > 0)
            how = (f"the non-negative weights minimising the Poisson deviance over the {n_valid} weeks before each "
                   f"refit" if frame.get("combine", pd.Series(["blend"])).iloc[0] == "blend" else
                   f"equal shares, each candidate brought to the total recorded over the {n_valid} weeks before "
                   f"each refit")
            sentence = (f"{model} blended its candidates at each of its {n} refits: a weighted sum of their forecasts, "
                        f"{how} (mean weights {shown})")
        else:
            sentence = (f"{model} chose {', '.join(parts)}: the best mean {frame['metric'].iloc[0].upper()} over the "
                        f"{n_valid} weeks before each refit" + (
                            f", except at {kept} where it kept its previous choice, the best mean not being "
                            f"distinguishably better" if kept else ""))
        entry: dict = {"choices": {str(k): int(v) for k, v in counts.items()}, "refits": n, "kept_previous": kept}
        if best_baseline and best_baseline in models:
            a = [w.get("pai@1%", np.nan) for w in models[model]["weekly"]]
            b = [w.get("pai@1%", np.nan) for w in models[best_baseline]["weekly"]]
            pair = paired_comparison(a, b, reps)
            diff = np.asarray(a, float) - np.asarray(b, float)
            worse = int((diff[np.isfinite(diff)] < 0).sum())
            mean_a, mean_b = float(np.nanmean(a)), float(np.nanmean(b))
            ratio = mean_a / mean_b if mean_b else float("nan")
            entry["vs_best_baseline"] = {"baseline": best_baseline, "metric": "pai@1%", "ratio": ratio,
                                         "weeks_worse": worse, **pair}
            lo, hi = pair["ci95"]
            sentence += (f". Against the best baseline, {model} reached PAI@1% {mean_a:.2f}, {best_baseline} "
                         f"{mean_b:.2f} (ratio {ratio:.3f}); {model} minus {best_baseline}: {pair['difference']:+.2f} "
                         f"[95% interval {lo:+.2f}, {hi:+.2f}], {model} better in {pair['weeks_better']} and worse in "
                         f"{worse} of {pair['weeks']} weeks (the same in the others)")
        out["models"][model] = entry
        out["sentences"].append(sentence + ".")
    return out
