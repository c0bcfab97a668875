"""Benchmark (issue 16): is the SEPP baseline of the accuracy matrix a fair one, or a handicapped one?

The matrix's `sepp` fits its EM with at most 50 iterations, and on Toronto the decay rate omega ends near 1e14 per
day: records of one cell at the same recorded time (several offences of one event; times are recorded to the hour)
are the pairs closest in time, and EM explains them as instant self-excitation. The excitation then covers only
those coincident records and the forecast is the cell's background rate. This backtests, on the matrix's weeks
(26 weeks, refit every 4), the shipped fit beside:

- `converged`: the same model, 500 iterations (EM stops at its tolerance);
- `no_coincident`: pairs at the same recorded time are not parent and child (`min_gap_days = 0`), 500 iterations;
- `gap_1d`: only pairs more than a day apart are (`min_gap_days = 1`), 500 iterations.

For each it prints PAI@1% and Poisson deviance over the weeks and the EM's theta, omega and iterations at the first
refit, beside the best baseline of the matrix (`benchmarks/results/accuracy_matrix.json`, when it is there).

    python benchmarks/sepp_fit.py [--cases all:2019,break-and-enter:2021] [--json FILE]

Needs ../shared/data (the Toronto config). A case takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import accuracy_matrix  # noqa: E402 (the matrix's own cases, periods and load reading)

ENDS = accuracy_matrix.DEFAULT_PERIODS
config_products, product_config = accuracy_matrix.config_products, accuracy_matrix.product_config
load, parse_cases = accuracy_matrix.load, accuracy_matrix.parse_cases

VARIANTS = {"shipped": {}, "converged": {"iterations": 500},
            "no_coincident": {"iterations": 500, "min_gap_days": 0.0},
            "gap_1d": {"iterations": 500, "min_gap_days": 1.0}}


def run_case(cfg, panel, product: str, period: str, weeks: int, refit_every: int) -> dict:
    """Every variant of SEPP backtested on the case's weeks, and its EM's parameters at the first refit."""
    from hotspot.models.sepp import SEPP, fit_sepp
    from hotspot.training.backtest import forecast_periods, run_backtest

    periods = forecast_periods(panel, weeks, ENDS[period])
    models = []
    for name, kw in VARIANTS.items():
        model = SEPP(train_days=cfg.backtest.sepp_train_days, **kw)
        model.name = name
        models.append(model)
    t0 = time.perf_counter()
    metrics = run_backtest(panel, models, periods, refit_every, [0.01]).metrics["models"]
    seconds = time.perf_counter() - t0
    end = panel.days_since_start(panel.period_starts[periods[0]])
    first = max(0.0, end - cfg.backtest.sepp_train_days)
    keep = (panel.event_days >= first) & (panel.event_days < end)
    rows = {}
    for model in models:
        _, theta, omega, used = fit_sepp(panel.event_days[keep] - first, panel.event_cell[keep], panel.grid.n_cells,
                                         end - first, iterations=model.iterations, max_lag_days=model.max_lag_days,
                                         min_gap_days=model.min_gap_days)
        mean = metrics[model.name]["mean"]
        rows[model.name] = {"pai@1%": mean["pai@1%"], "deviance": mean["poisson_deviance"], "theta": theta,
                            "omega": omega, "iterations": used}
    return {"product": product, "period": period, "weeks": len(periods), "variants": rows,
            "seconds": seconds, "load": load()}


def matrix_best(path: Path) -> dict:
    """(product, period) -> (best baseline, its PAI@1%) from a kept accuracy-matrix JSON."""
    if not path.exists():
        return {}
    cases = json.loads(path.read_text())["cases"]
    return {(c["product"], c["period"]): (c["best_baseline"], c["models"][c["best_baseline"]]["pai@1%"])
            for c in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "toronto.toml")
    parser.add_argument("--cases", help="PRODUCT:PERIOD pairs, comma-separated (PERIOD 2019 or 2021) "
                                        "[default: every product of the config, both periods]")
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--refit-every", type=int, default=4)
    parser.add_argument("--matrix", type=Path, default=REPO / "benchmarks" / "results" / "accuracy_matrix.json",
                        help="a kept accuracy-matrix JSON, for each case's best baseline")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    from hotspot.features.config import load_config
    from hotspot.steps.common import prepare

    base = load_config(args.config)
    products = config_products(base)
    cases = parse_cases(args.cases, list(products), list(ENDS))
    best = matrix_best(args.matrix)
    began, results = time.perf_counter(), []
    print(f"{len(cases)} case(s); load {load()}", flush=True)
    for product in dict.fromkeys(p for p, _ in cases):
        cfg = product_config(base, product, products[product])
        panel = prepare(cfg, quiet=True).panel
        for period in [y for p, y in cases if p == product]:
            res = run_case(cfg, panel, product, period, args.weeks, args.refit_every)
            results.append(res)
            ref = best.get((product, period))
            print(f"\n{product} {period}: {res['weeks']} weeks in {res['seconds']:.0f} s (load {res['load']})"
                  + (f"; the matrix's best baseline {ref[0]} {ref[1]:.3f}" if ref else ""))
            print(f"  {'variant':<14} {'PAI@1%':>8} {'deviance':>9} {'theta':>7} {'omega /day':>11} {'EM its':>6}")
            for name, v in res["variants"].items():
                print(f"  {name:<14} {v['pai@1%']:8.3f} {v['deviance']:9.4f} {v['theta']:7.4f} {v['omega']:11.4g} "
                      f"{v['iterations']:6d}", flush=True)
    if results:
        shipped = np.array([r["variants"]["shipped"]["pai@1%"] for r in results])
        print(f"\nmean PAI@1% ratio to the shipped fit over {len(results)} case(s): "
              + ", ".join(f"{n} {np.mean([r['variants'][n]['pai@1%'] for r in results] / shipped):.4f}"
                          for n in VARIANTS if n != "shipped"))
    print(f"{len(results)} case(s) in {time.perf_counter() - began:.0f} s (load {load()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
