"""Benchmark (issue 5): tune LightGBM on full Toronto, then judge the tuned model against every baseline.

1. A `--trials`-trial Optuna study (config `[tune]`: rolling-origin folds ending before 2019-07-01, the first week
   of the judged window, so tuning never sees it), timed: the cost target is 30 trials in under 20 minutes.
2. Rolling backtests (refit every 4 weeks) of the tuned spec, the config's default LightGBM and every baseline on the
   26 weeks ending 2019-12-30 and 2021-12-27, for all offences and for Break and Enter. Printed: PAI@1% with 95%
   intervals, the ratio to the best baseline, the worst ratio over coverages 0.5%..10% (0.5% steps), deviance.
3. The share of empty cell-weeks kept when fitting the tuned spec (0.1, 0.3, 1.0) on the first case: PAI and time.

Usage: python benchmarks/tuning.py [--trials 30] [--out outputs/bench/tuning] [--cases all|2019-12-30:all,...]
Needs ../shared/data. Takes about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

CASES = [("2019-12-30", None), ("2019-12-30", "Break and Enter"), ("2021-12-27", None),
         ("2021-12-27", "Break and Enter")]
CURVE = np.round(np.arange(0.005, 0.1001, 0.005), 4)


def curve_means(predictions: pd.DataFrame, model: str) -> np.ndarray:
    """Mean PAI over weeks at each coverage of CURVE."""
    from hotspot.training.evaluation.metrics import pai_at

    rows = []
    for _, week in predictions[predictions["model"] == model].groupby("period_start", observed=True):
        risk, obs = week["risk"].to_numpy(), week["observed"].to_numpy()
        rows.append([pai_at(risk, obs, c) for c in CURVE])
    return np.nanmean(np.array(rows), axis=0)


def judge(result, tuned: str, baselines: list[str]) -> dict:
    from hotspot.training.evaluation.stats import bootstrap_mean, paired_comparison

    weekly = {name: pd.DataFrame(m["weekly"]) for name, m in result.metrics["models"].items()}
    summary = {}
    for name, frame in weekly.items():
        mean, lo, hi = bootstrap_mean(frame["pai@1%"])
        summary[name] = {"pai@1%": mean, "ci95": [lo, hi], "pai@5%": float(frame["pai@5%"].mean()),
                         "deviance": float(frame["poisson_deviance"].mean()),
                         "fit_predict_s": result.seconds[name]}
    best = max(baselines, key=lambda b: summary[b]["pai@1%"])
    curves = {name: curve_means(result.predictions, name) for name in [tuned, *baselines]}
    best_curve = np.max(np.vstack([curves[b] for b in baselines]), axis=0)
    ratio_curve = curves[tuned] / best_curve
    return {"models": summary, "best_baseline": best,
            "ratio_pai@1%": summary[tuned]["pai@1%"] / summary[best]["pai@1%"],
            "paired_vs_best": paired_comparison(weekly[tuned]["pai@1%"], weekly[best]["pai@1%"]),
            "worst_curve_ratio": float(ratio_curve.min()),
            "worst_curve_coverage": float(CURVE[int(ratio_curve.argmin())]),
            "deviance_below_every_baseline": all(summary[tuned]["deviance"] < summary[b]["deviance"]
                                                 for b in baselines),
            "best_baseline_deviance": min(summary[b]["deviance"] for b in baselines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "toronto.toml")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--before", default="2019-07-01", help="tuning folds end before this week")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/tuning"))
    parser.add_argument("--cases", default="all", help="comma-separated END:TARGET (TARGET 'all' = all offences)")
    parser.add_argument("--storage", help="Optuna storage [default: OUT/optuna.db]")
    parser.add_argument("--skip-zero-rows", action="store_true")
    args = parser.parse_args()
    if not (REPO_ROOT.parent / "shared" / "data" / "toronto").exists():
        raise SystemExit("benchmark needs ../shared/data/toronto")
    import os

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    from hotspot.features.config import TuneConfig, load_config
    from hotspot.models import LightGBMForecaster
    from hotspot.steps import prepare, with_overrides
    from hotspot.training.backtest import forecast_periods, make_models, run_backtest
    from hotspot.training.tuning import tune

    args.out.mkdir(parents=True, exist_ok=True)
    base = load_config(args.config)
    storage = args.storage or f"sqlite:///{args.out.resolve() / 'optuna.db'}"
    cfg = base.model_copy(update={"tune": TuneConfig.model_validate({**base.tune.model_dump(), "storage": storage})})
    report: dict = {"trials": args.trials, "before": args.before}

    start = time.perf_counter()
    prepared = prepare(cfg, quiet=True)
    print(f"panel: {prepared.panel.grid.n_cells:,} cells x {prepared.panel.n_periods} periods "
          f"({time.perf_counter() - start:.0f} s)", flush=True)

    def on_trial(trial) -> None:
        value = "pruned" if trial.value is None else f"{trial.value:.3f}"
        print(f"  trial {trial.number:>3} {trial.state.name:<9} {value:>8} {trial.params.get('objective', 'config')}"
              f" ({(trial.duration.total_seconds() if trial.duration else 0):.0f} s)", flush=True)

    result = tune(cfg, prepared.panel, args.trials, args.before, on_trial=on_trial)
    states = pd.Series([t.state.name for t in result.study.trials]).value_counts().to_dict()
    report["tuning"] = {"seconds": result.seconds, "trials_run": result.trials_run, "states": states,
                        "best_value": result.best_value, "best_spec": result.best_spec, "metric": cfg.tune.metric}
    print(f"tuning: {result.trials_run} trials in {result.seconds / 60:.1f} min ({states}); best "
          f"{cfg.tune.metric} {result.best_value:.3f}: {json.dumps(result.best_spec)}", flush=True)
    spec = {**result.best_spec, "zero_row_fraction": cfg.model.lightgbm.zero_row_fraction}

    cases = CASES if args.cases == "all" else [
        (c.split(":")[0], None if c.split(":")[1] == "all" else c.split(":")[1]) for c in args.cases.split(",")]
    report["cases"] = []
    for end, target in cases:
        case_cfg = with_overrides(cfg, targets=[target] if target else None)
        panel = prepared.panel if target is None else prepare(case_cfg, quiet=True,
                                                              incidents=prepared.incidents).panel
        periods = forecast_periods(panel, 26, end)
        baselines = [m for m in make_models(case_cfg, ["all"]) if not m.name.startswith("lightgbm")]
        default = make_models(case_cfg, ["lightgbm"])[0]
        default.name = "lightgbm_default"
        tuned = LightGBMForecaster.from_spec(spec, name="lightgbm_tuned")
        models = [tuned, default, *baselines]
        if not args.skip_zero_rows and (end, target) == cases[0]:
            for share in (0.1, 1.0):
                models.append(LightGBMForecaster.from_spec({**spec, "zero_row_fraction": share},
                                                           name=f"lightgbm_tuned_zero{share:g}"))
        start = time.perf_counter()
        bt = run_backtest(panel, models, periods, 4, case_cfg.backtest.coverages)
        verdict = judge(bt, "lightgbm_tuned", [m.name for m in baselines])
        verdict.update({"end": end, "target": target or "all offences", "wall_s": time.perf_counter() - start,
                        "weeks": f"{bt.metrics['weeks'][0]} .. {bt.metrics['weeks'][-1]}"})
        report["cases"].append(verdict)
        print(f"\n26 weeks {verdict['weeks']}, {verdict['target']} ({verdict['wall_s']:.0f} s): tuned / best "
              f"baseline ({verdict['best_baseline']}) PAI@1% = {verdict['ratio_pai@1%']:.3f}; worst ratio over "
              f"0.5-10% = {verdict['worst_curve_ratio']:.3f} at {verdict['worst_curve_coverage']:.1%}; paired "
              f"{verdict['paired_vs_best']['difference']:+.2f} {verdict['paired_vs_best']['ci95']}; deviance below "
              f"every baseline: {verdict['deviance_below_every_baseline']}")
        print(f"{'model':<26}{'PAI@1% [95%]':>24}{'PAI@5%':>8}{'deviance':>10}{'fit+pred s':>12}")
        for name, r in sorted(verdict["models"].items(), key=lambda kv: -kv[1]["pai@1%"]):
            print(f"{name:<26}{r['pai@1%']:>8.2f} [{r['ci95'][0]:5.2f},{r['ci95'][1]:6.2f}]{r['pai@5%']:>8.2f}"
                  f"{r['deviance']:>10.4f}{r['fit_predict_s']:>12.1f}", flush=True)
        (args.out / "tuning_benchmark.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
