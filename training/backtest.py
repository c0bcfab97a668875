"""Rolling-origin backtest: for each test week, fit only on the weeks before it and forecast that week.

The loop itself lives in training/rolling.py (re-exported here); this module builds the models a backtest can run
from a config, `auto` among them (training/selection.py), and writes the contract files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.config import StudyConfig
from hotspot.features.locking import locked, replace_atomically, write_text_atomically
from hotspot.models import (
    SEPP,
    EWMCounts,
    FlatRate,
    Forecaster,
    HistoryCounts,
    KernelDensity,
    LightGBMForecaster,
    ProspectiveHotspots,
    RecentCounts,
    RiskTerrain,
)
from hotspot.training.rolling import PREDICTION_COLUMNS, BacktestResult, forecast_periods, run_backtest, summarise
from hotspot.training.selection import AutoSelect, selection_rows

__all__ = ["PREDICTION_COLUMNS", "BacktestResult", "forecast_periods", "run_backtest", "summarise",
           "lightgbm_from_config", "available_models", "make_models", "write_backtest", "summary_table",
           "selection_candidates", "SELECTION_NAME", "FLAT", "REFERENCE_ONLY", "COUNT_BASELINES",
           "lightgbm_for_training", "training_model", "model_family"]


def lightgbm_from_config(cfg: StudyConfig) -> LightGBMForecaster:
    """The LightGBM forecaster the config's [model.lightgbm] parameters describe."""
    lc = cfg.model.lightgbm
    params = lc.model_dump(exclude={"num_boost_round", "zero_row_fraction"})
    return LightGBMForecaster(params=params, num_boost_round=lc.num_boost_round, train_periods=cfg.model.train_periods,
                              zero_row_fraction=lc.zero_row_fraction, seed=lc.seed)


SELECTION_NAME = "auto"  # the model that chooses among the others (training/selection.py)
FLAT = "flat"  # every cell the same rate (models.naive.FlatRate): a floor, registered only when asked for by name
COUNT_BASELINES = ("naive_", "history", "ewm_")  # name prefixes of the count baselines (cheap to refit)
REFERENCE_ONLY = (FLAT,)  # models never in "all", never auto's candidates, never a baseline a forecast is judged by


def lightgbm_for_training(cfg: StudyConfig, params: str = "auto") -> tuple[LightGBMForecaster, str]:
    """The LightGBM forecaster `hotspot train` fits: the tuned study's best spec ('study', or 'auto' when a study
    exists), else the config's own parameters ('config'). Returns (forecaster, where its parameters came from)."""
    from hotspot.features.errors import HotspotError
    from hotspot.training.tuning import best_spec

    if params not in ("auto", "study", "config"):
        raise ValueError(f"--params must be auto, study or config, not {params!r}")
    found = best_spec(cfg) if params != "config" else None
    if params == "study" and found is None:
        raise HotspotError(f"no tuned study for this config in {cfg.tune.storage}; run `hotspot tune --config "
                           f"{cfg.source_path}` first or use --params config")
    if found:
        spec, name = found
        # train with the config's share of empty cell-periods (tuning may have used a smaller one to save time)
        spec = {**spec, "zero_row_fraction": cfg.model.lightgbm.zero_row_fraction}
        return LightGBMForecaster.from_spec(spec), f"study:{name}"
    return lightgbm_from_config(cfg), "config"


def training_model(cfg: StudyConfig, name: str = "lightgbm", params: str = "auto") -> tuple[Forecaster, str]:
    """The unfitted forecaster `hotspot train --model NAME` fits (any model of `make_models`) and where its
    parameters came from. `lightgbm`, and the `lightgbm` candidate of `auto`, take the tuned study's best spec when
    one exists (`params`, as lightgbm_for_training); the others are built from the config."""
    if name == "lightgbm":
        return lightgbm_for_training(cfg, params)
    (model,) = make_models(cfg, [name])
    if isinstance(model, AutoSelect):
        tuned, source = lightgbm_for_training(cfg, params)
        model.candidates = [tuned if c.name == "lightgbm" else c for c in model.candidates]
        return model, (source if any(c.name == "lightgbm" for c in model.candidates) else "config")
    return model, "config"


def model_family(model: Forecaster) -> str:
    """`lightgbm` (a LightGBM booster), `auto` (the selection rule) or `baseline` (every other forecaster)."""
    if isinstance(model, LightGBMForecaster):
        return "lightgbm"
    return SELECTION_NAME if isinstance(model, AutoSelect) else "baseline"


def available_models(cfg: StudyConfig) -> dict[str, Callable[[], Forecaster]]:
    """Every model a backtest can run, by name, built from the config; `auto` last (it chooses among the others)."""
    from hotspot.training.tuning import best_spec

    factories: dict[str, Callable[[], Forecaster]] = {"lightgbm": lambda: lightgbm_from_config(cfg)}
    tuned = best_spec(cfg)
    if tuned:  # the tuned study's best spec, trained with the config's share of empty cell-periods
        spec = {**tuned[0], "zero_row_fraction": cfg.model.lightgbm.zero_row_fraction}
        factories["lightgbm_tuned"] = lambda: LightGBMForecaster.from_spec(spec, name="lightgbm_tuned")
    for w in cfg.backtest.naive_weeks:
        factories[f"naive_{w}w"] = lambda w=w: RecentCounts(weeks=w)
    factories["history"] = HistoryCounts
    bc = cfg.backtest
    factories[f"ewm_hl{bc.ewm_halflife:g}"] = lambda: EWMCounts(halflife=bc.ewm_halflife)
    counts = ["lightgbm", *(n for n in factories if n.startswith(COUNT_BASELINES))]
    factories[FLAT] = FlatRate  # a floor, never a baseline nor a candidate; not in "all" (REFERENCE_ONLY)
    factories[f"kde_{bc.kde_bandwidth_m:g}m"] = lambda: KernelDensity(bandwidth_m=bc.kde_bandwidth_m)
    factories["prospective"] = lambda: ProspectiveHotspots(bc.prospective_bandwidth_cells, bc.prospective_weeks)
    factories["sepp"] = lambda: SEPP(train_days=bc.sepp_train_days)
    if cfg.context:
        factories["rtm"] = RiskTerrain
    sc, others = cfg.selection, {n: f for n, f in factories.items() if n not in REFERENCE_ONLY}
    # candidates checked when auto is built, so that a slip in [selection] stops only the runs that use it
    factories[SELECTION_NAME] = lambda: AutoSelect(
        candidates=[others[n]() for n in selection_candidates(cfg, list(others), default=counts)],
        validation_weeks=sc.validation_weeks, refit_every=sc.refit_every or bc.refit_every,
        metric=cfg.promotion.metric, sticky=sc.sticky, combine=sc.combine)
    return factories


def selection_candidates(cfg: StudyConfig, available: list[str], default: list[str]) -> list[str]:
    """The models `auto` chooses among: selection.candidates, else `default`; an unknown name is a ValueError."""
    names = list(cfg.selection.candidates) if cfg.selection.candidates is not None else default
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        where = f"{cfg.source_path}: " if cfg.source_path else ""
        raise ValueError(f"{where}selection.candidates: {'unknown model(s) ' + str(unknown) if unknown else 'empty'}"
                         f"; choose from {available}")
    return names


def make_models(cfg: StudyConfig, names: list[str]) -> list[Forecaster]:
    """The named forecasters; "all" stands for every available one but `auto` (which refits every candidate at each
    of its refits: name it to run it, e.g. ["all", "auto"]); an unknown name is a ValueError."""
    factories = available_models(cfg)
    expanded: list[str] = []
    for name in names:
        for n in ([f for f in factories if f not in (SELECTION_NAME, *REFERENCE_ONLY)] if name == "all" else [name]):
            if n not in expanded:
                expanded.append(n)
    unknown = [n for n in expanded if n not in factories]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(factories)} or 'all' (every model but "
                         f"{SELECTION_NAME})")
    return [factories[n]() for n in expanded]


def write_backtest(result: BacktestResult, out_dir: Path, limit: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write predictions.parquet, metrics.json and plots into out_dir (each file replaced atomically), the
    clairvoyant limit as limit.parquet beside them when given, and what `auto` chose at each refit as selection.csv
    when it ran (a stale limit or selection removed when not)."""
    from hotspot.training.evaluation.plots import plot_backtest

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"predictions": out_dir / "predictions.parquet", "metrics": out_dir / "metrics.json"}
    with locked(paths["metrics"], what="writing the backtest"):  # predictions, metrics and plots from one run
        replace_atomically(paths["predictions"], lambda tmp: result.predictions.to_parquet(tmp, index=False))
        if limit is not None:
            paths["limit"] = out_dir / "limit.parquet"
            replace_atomically(paths["limit"], lambda tmp: limit.to_parquet(tmp, index=False))
        else:  # an earlier run's limit would be read as this run's
            (out_dir / "limit.parquet").unlink(missing_ok=True)
        write_text_atomically(paths["metrics"], json.dumps(result.metrics, indent=2, allow_nan=True))
        selection = selection_rows(result.metrics)
        if not selection.empty:
            paths["selection"] = out_dir / "selection.csv"
            write_text_atomically(paths["selection"], selection.to_csv(index=False))
        else:  # an earlier run's choices would be read as this run's
            (out_dir / "selection.csv").unlink(missing_ok=True)
        paths.update(plot_backtest(result.metrics, out_dir))
    return paths


def summary_table(metrics: dict, keys: list[str] | None = None) -> pd.DataFrame:
    """Mean of each headline metric per model, best PAI@1% first."""
    keys = keys or ["pai@1%", "pai@5%", "hit_rate@1%", "pei@1%", "poisson_deviance"]
    table = pd.DataFrame({name: {k: m["mean"].get(k, np.nan) for k in keys} for name, m in metrics["models"].items()}).T
    return table.sort_values(keys[0], ascending=False)
