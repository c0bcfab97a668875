"""Benchmark (issue 2): panel build time and the 26-week backtest of every model on full Toronto.

Targets on a 2-core machine: panel + features for 2014-2019 under 15 s; `hotspot backtest --weeks 26 --model all
--end 2019-12-30` under 5 minutes with peak memory under 4 GB. Prints PAI@1% of every model on those weeks.

Usage: python benchmarks/panel_backtest.py [--config configs/toronto.toml] [--out outputs/bench]
Needs ../shared/data (exits with a message when it is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_panel(config: Path) -> dict:
    from hotspot.features.config import load_config
    from hotspot.features.ingest import validate
    from hotspot.features.panel import build_panel

    cfg = load_config(config)
    cfg = cfg.model_copy(update={"period": cfg.period.model_copy(update={"data_end": date(2019, 12, 31)})})
    start = time.perf_counter()
    result = validate(cfg)
    validate_s = time.perf_counter() - start
    start = time.perf_counter()
    panel = build_panel(cfg, result.accepted, result.grid)
    panel_s = time.perf_counter() - start
    cell_weeks = (panel.n_periods + 1) * panel.grid.n_cells
    return {"rows_read": result.n_read, "cells": panel.grid.n_cells, "periods": panel.n_periods,
            "features": len(panel.feature_names), "validate_s": round(validate_s, 2),
            "panel_features_s": round(panel_s, 2), "cell_weeks_per_s": round(cell_weeks / panel_s),
            "feature_cube_mb": round(panel.X.nbytes / 2**20), "peak_rss_mb": round(rss_mb())}


def bench_backtest(config: Path, out: Path, weeks: int, end: str) -> dict:
    hotspot = Path(sys.executable).with_name("hotspot")
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI",
                                                                f"sqlite:///{tempfile.mkdtemp()}/bench.db")}
    start = time.perf_counter()
    proc = subprocess.run([str(hotspot), "backtest", "--config", str(config), "--weeks", str(weeks), "--end", end,
                           "--model", "all", "--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"backtest failed:\n{proc.stderr[-3000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb),
            "weeks": f"{metrics['weeks'][0]} .. {metrics['weeks'][-1]}",
            "pai@1%": {name: round(m["mean"]["pai@1%"], 2) for name, m in metrics["models"].items()},
            "pai@5%": {name: round(m["mean"]["pai@5%"], 2) for name, m in metrics["models"].items()},
            "poisson_deviance": {name: round(m["mean"]["poisson_deviance"], 4)
                                 for name, m in metrics["models"].items()},
            "limit": metrics.get("limit", {}), "verdict": metrics.get("verdict", {}).get("sentences", []),
            "headroom": metrics.get("headroom", {}).get("sentence", "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "toronto.toml")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/backtest"))
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--end", default="2019-12-30")
    parser.add_argument("--skip-backtest", action="store_true")
    args = parser.parse_args()
    data = REPO_ROOT.parent / "shared" / "data" / "toronto" / "incidents_mci_2014_2021.parquet"
    if args.config.name == "toronto.toml" and not data.exists():
        raise SystemExit(f"benchmark needs the real data at {data}")

    panel = bench_panel(args.config)
    print(f"panel+features 2014-2019: {panel['panel_features_s']} s (target < 15 s), validate {panel['validate_s']} s,"
          f" {panel['cells']:,} cells x {panel['periods']} weeks x {panel['features']} features, "
          f"{panel['cell_weeks_per_s']:,} cell-weeks/s, peak RSS {panel['peak_rss_mb']} MB")
    report = {"panel": panel}
    if not args.skip_backtest:
        bt = bench_backtest(args.config, args.out, args.weeks, args.end)
        print(f"backtest --weeks {args.weeks} --model all --end {args.end}: {bt['wall_s']} s (target < 300 s), "
              f"peak RSS {bt['peak_rss_mb']} MB (target < 4096 MB); weeks {bt['weeks']}")
        print(f"{'model':<12}{'PAI@1%':>9}{'PAI@5%':>9}{'deviance':>10}")
        for name in sorted(bt["pai@1%"], key=bt["pai@1%"].get, reverse=True):
            print(f"{name:<12}{bt['pai@1%'][name]:>9.2f}{bt['pai@5%'][name]:>9.2f}{bt['poisson_deviance'][name]:>10.4f}")
        limit = bt["limit"].get("mean") or {}
        if limit:  # the clairvoyant reference (uses future data): how much headroom the baselines leave
            print(f"{'limit *':<12}{limit['pai@1%']:>9.2f}{limit['pai@5%']:>9.2f}{limit['poisson_deviance']:>10.4f}"
                  "   * clairvoyant long-run rate, a reference that uses future data, not a forecast")
        for sentence in [*bt["verdict"], bt["headroom"]]:
            print(sentence)
        report["backtest"] = bt
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.parent / "panel_backtest.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
