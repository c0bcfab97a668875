"""Benchmark (issue 16): does LightGBM gain from the SEPP intensity as a feature? An ablation before it ships.

The feature is the grid self-exciting model's forecast (models/sepp.py) of every cell and period, without leakage:
the EM parameters (background rate per cell, theta, omega) are refitted every `--refit-every` periods on the
incidents before the block's first period (the last `train_days`), and within the block each period's intensity is
the background plus the excitation of every incident before the period starts, at its exact time (the same
integral as `SEPP.predict`). Two features are added to the panel: `sepp_intensity` (the expected count) and
`sepp_excitation` (its self-exciting part). LightGBM is backtested with and without them on the accuracy matrix's
weeks (26 weeks, refit every 4), beside the `sepp` baseline, and PAI@1% and deviance are printed with the paired
interval of the difference.

    python benchmarks/sepp_feature.py --cases all:2019,assault:2019 [--config configs/toronto.toml]

Needs ../shared/data (the Toronto config). A case takes about 6-8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENDS = {"2019": "2019-12-30", "2021": "2021-12-27"}


def sepp_features(panel, refit_every: int, train_days: float = 730.0, min_periods: int = 26,
                  iterations: int = 50, max_lag_days: float = 180.0) -> tuple[np.ndarray, np.ndarray, int]:
    """(intensity, excitation), each (T + 1, C) float32, NaN before `min_periods`; and the number of EM fits. Row
    t uses only the incidents before period t starts (the parameters those before its block's first period)."""
    from hotspot.models.sepp import fit_sepp

    days, cells = panel.event_days, panel.event_cell
    starts = np.array([panel.days_since_start(s) for s in panel.period_starts])  # T + 1 period starts, in days
    T, C = panel.n_periods, panel.grid.n_cells
    intensity = np.full((T + 1, C), np.nan, dtype=np.float32)
    excitation = np.full((T + 1, C), np.nan, dtype=np.float32)
    fits = 0
    for b0 in range(min_periods, T + 1, refit_every):
        end = starts[b0]
        first = max(0.0, end - train_days)
        keep = (days >= first) & (days < end)
        if keep.sum() < 2:
            continue
        mu, theta, omega, _ = fit_sepp(days[keep] - first, cells[keep], C, end - first, iterations=iterations,
                                       max_lag_days=max_lag_days)
        fits += 1
        for t in range(b0, min(b0 + refit_every, T + 1)):
            length = (starts[t + 1] - starts[t]) if t + 1 < len(starts) else (starts[t] - starts[t - 1])
            before = (days < starts[t]) & (days >= starts[t] - max(train_days, max_lag_days))
            age = starts[t] - days[before]
            carry = np.bincount(cells[before], weights=np.exp(-omega * age), minlength=C)
            excited = theta * (1.0 - np.exp(-omega * length)) * carry
            excitation[t] = excited
            intensity[t] = mu * length + excited
    return intensity, excitation, fits


def with_sepp(panel, refit_every: int) -> tuple[object, float, int]:
    """The panel with the two SEPP features appended (family 'temporal', the cell's own past), the seconds and
    fits it took."""
    start = time.perf_counter()
    intensity, excitation, fits = sepp_features(panel, refit_every)
    X = np.concatenate([panel.X, intensity[:, :, None], excitation[:, :, None]], axis=2)
    names = (*panel.feature_names, "sepp_intensity", "sepp_excitation")
    fam = {**panel.feature_families, "sepp_intensity": "temporal", "sepp_excitation": "temporal"}
    desc = {**panel.feature_descriptions, "sepp_intensity": "SEPP expected count", "sepp_excitation": "SEPP excitation"}
    units = {**panel.feature_units, "sepp_intensity": "incidents", "sepp_excitation": "incidents"}
    return (replace(panel, X=X, feature_names=names, feature_families=fam, feature_descriptions=desc,
                    feature_units=units), time.perf_counter() - start, fits)


def run_case(cfg, product: str, period: str, weeks: int, refit_every: int, feature_refit: int) -> dict:
    from hotspot.models import SEPP
    from hotspot.steps.common import prepare
    from hotspot.training.backtest import forecast_periods, lightgbm_from_config, run_backtest
    from hotspot.training.evaluation.stats import paired_comparison

    pcfg = cfg.for_product(product)
    panel = prepare(pcfg, quiet=True).panel
    periods = forecast_periods(panel, weeks, ENDS[period])
    extended, feature_s, fits = with_sepp(panel, feature_refit)
    start = time.perf_counter()
    plain = run_backtest(panel, [lightgbm_from_config(pcfg), SEPP(train_days=pcfg.backtest.sepp_train_days)],
                         periods, refit_every, [0.01])
    boosted = lightgbm_from_config(pcfg)
    boosted.name = "lightgbm_sepp"
    more = run_backtest(extended, [boosted], periods, refit_every, [0.01])
    seconds = time.perf_counter() - start
    weekly = {**plain.metrics["models"], **more.metrics["models"]}
    pai = {n: np.array([w["pai@1%"] for w in m["weekly"]]) for n, m in weekly.items()}
    comparison = paired_comparison(pai["lightgbm_sepp"], pai["lightgbm"])
    out = {"product": product, "period": period, "weeks": weeks, "feature_s": round(feature_s, 1),
           "feature_fits": fits, "backtest_s": round(seconds, 1),
           "models": {n: {"pai@1%": float(m["mean"]["pai@1%"]), "deviance": float(m["mean"]["poisson_deviance"])}
                      for n, m in weekly.items()},
           "with_vs_without": comparison}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "toronto.toml")
    parser.add_argument("--cases", default="all:2019,assault:2019", help="PRODUCT:PERIOD pairs (2019 or 2021)")
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--refit-every", type=int, default=4, help="LightGBM's refits in the backtest")
    parser.add_argument("--feature-refit", type=int, default=13, help="periods between the feature's EM fits")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    from hotspot.features.config import load_config

    cfg = load_config(args.config)
    results = []
    for case in args.cases.split(","):
        product, period = case.split(":")
        load = Path("/proc/loadavg").read_text().split()[0]
        r = run_case(cfg, product, period, args.weeks, args.refit_every, args.feature_refit)
        r["load"] = load
        results.append(r)
        m, c = r["models"], r["with_vs_without"]
        print(f"{product} {period}: PAI@1% LightGBM {m['lightgbm']['pai@1%']:.3f} -> with the SEPP features "
              f"{m['lightgbm_sepp']['pai@1%']:.3f} (difference {c['difference']:+.3f}, 95% interval "
              f"{c['ci95'][0]:+.3f}..{c['ci95'][1]:+.3f}); deviance "
              f"{m['lightgbm']['deviance']:.4f} -> {m['lightgbm_sepp']['deviance']:.4f}; sepp baseline "
              f"{m['sepp']['pai@1%']:.3f}; feature {r['feature_s']} s ({r['feature_fits']} EM fits), backtests "
              f"{r['backtest_s']} s, load {load}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
