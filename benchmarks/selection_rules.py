"""Benchmark (issue 16): which selection rule should `auto` use? The figures in training/selection.py's docstring.

`auto` over Toronto's count baselines (fit-free, so a long window is cheap), 2016-2021, refit every 4 weeks, with 8
and 26 validation weeks, by the best mean alone and sticky (the previous choice kept unless distinguishably beaten).
Each 26-week block's PAI@1% is divided by that block's best fixed baseline; printed per block, then mean and min.

Usage: python benchmarks/selection_rules.py [--target "Break and Enter"]
Needs ../shared/data. A few minutes per target on 2 cores (the panel is cached after the first run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.config import load_config
from hotspot.steps.common import prepare, with_overrides
from hotspot.training.backtest import make_models, run_backtest
from hotspot.training.selection import AutoSelect

TORONTO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "toronto.toml"

BASELINES = ["naive_4w", "naive_52w", "history", "ewm_hl26", "kde_250m"]
BLOCK = 26
FIRST = 112  # the first judged week's index: 2016-02-22 on Toronto, with 52 validation weeks of room before it


def main() -> None:
    """Run the rules over the whole history and print their ratios to each block's best baseline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=None, help="offence the label counts [default: all]")
    args = parser.parse_args()
    cfg = load_config(TORONTO_CONFIG)
    if args.target:
        cfg = with_overrides(cfg, targets=[args.target])
    panel = prepare(cfg, quiet=True).panel
    periods = np.arange(FIRST, panel.n_periods - (panel.n_periods - FIRST) % 4)
    rules = {}
    for weeks in (8, 26):
        for sticky in (False, True):
            rule = AutoSelect(candidates=make_models(cfg, BASELINES), validation_weeks=weeks, refit_every=4,
                              sticky=sticky)
            rule.name = f"V{weeks}{' sticky' if sticky else ''}"
            rules[rule.name] = rule
    result = run_backtest(panel, [*make_models(cfg, BASELINES), *rules.values()], periods, 4, [0.01])
    weekly = pd.DataFrame({n: [w["pai@1%"] for w in m["weekly"]] for n, m in result.metrics["models"].items()},
                          index=result.metrics["weeks"])
    rows = []
    for lo in range(0, len(weekly) - BLOCK + 1, BLOCK):
        means = weekly.iloc[lo:lo + BLOCK].mean()
        best = means[BASELINES].idxmax()
        rows.append({"from": weekly.index[lo], "best": best, **(means / means[best]).round(3).to_dict()})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(table.to_string(index=False))
    print(table[[*BASELINES, *rules]].agg(["mean", "min"]).round(4).to_string())


if __name__ == "__main__":
    main()
