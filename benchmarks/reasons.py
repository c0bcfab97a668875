"""Benchmark (issue 14): do the per-cell reasons each say something?

Fits LightGBM on every observed week (as `hotspot train` does with the config's parameters), forecasts the next
week with reasons (training/reasons.py) and prints, for the top 10 and top 100 cells: how many carry a reason other
than the cell's own history, how many reasons they carry, the kinds of evidence told, and the reasons of 5 example
cells. No MLflow store is written.

Usage: python benchmarks/reasons.py [--config configs/toronto-sample.toml] [--examples 5] [--threads 2]
       python benchmarks/reasons.py --config configs/toronto.toml      (needs ../shared/data)
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def kind_of(record: dict, families: dict[str, str]) -> str:
    """The record's kind of evidence (records from before kinds existed: 'history' for the temporal family)."""
    if "kind" in record:
        return record["kind"] + (f":{record['layer']}" if record.get("layer") else "")
    return "history" if families.get(record["feature"]) == "temporal" else families.get(record["feature"], "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "toronto-sample.toml")
    parser.add_argument("--examples", type=int, default=5, help="cells whose reasons are printed")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from hotspot.features.config import load_config
    from hotspot.features.prepared import prepare
    from hotspot.training.backtest import lightgbm_from_config
    from hotspot.training.forecast import forecast_cells

    cfg = load_config(args.config)
    start = time.perf_counter()
    prepared = prepare(cfg)
    panel = prepared.panel
    model = lightgbm_from_config(cfg)
    model.params = {**(model.params or {}), "num_threads": args.threads}
    model.fit(panel)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    cells = forecast_cells(panel, model, panel.n_periods, places=prepared.places)
    reasons_s = time.perf_counter() - start
    print(f"{cfg.area.name}: {panel.grid.n_cells:,} cells, {len(panel.feature_names)} features; forecast of "
          f"{panel.period_starts[-1].date()} (prepare + fit {fit_s:.0f} s, forecast with reasons {reasons_s:.1f} s)")

    families = panel.feature_families
    for n in (10, 100):
        top = cells.head(n)
        kinds = [[kind_of(r, families) for r in details] for details in top["reason_details"]]
        beyond = sum(any(k != "history" for k in cell) for cell in kinds)
        repeated = sum(len(cell) != len(set(cell)) for cell in kinds)
        history_sentences = sum(sum(k == "history" for k in cell) for cell in kinds)
        counts = collections.Counter(k.split(":")[0] for cell in kinds for k in cell)
        lengths = collections.Counter(len(cell) for cell in kinds)
        print(f"top {n}: {beyond} of {n} cells carry a reason other than the cell's own history; "
              f"{repeated} cells repeat a kind; {history_sentences} history sentences in all; "
              f"reasons per cell {dict(sorted(lengths.items()))}; kinds told {dict(counts.most_common())}")
    from hotspot.training.reasons import MIN_FACTOR, cell_reasons

    _, any_raise = cell_reasons(model, panel, top=3, min_factor=1.0)
    ranked = cells["cell_id"].map({cid: i for i, cid in enumerate(panel.grid.cell_id)}).to_numpy()
    for n in (10, 100):
        beyond = sum(any(r["kind"] != "history" for r in any_raise[i]) for i in ranked[:n])
        print(f"top {n}, telling any kind that raises the risk at all (not only by x{MIN_FACTOR} or more): {beyond} "
              f"of {n} cells carry a reason other than the cell's own history")
    step = max(1, min(100, len(cells)) // max(1, args.examples))
    for i in range(0, min(100, len(cells)), step)[: args.examples]:
        row = cells.iloc[i]
        print(f"\n#{row['rank']} {row['place']} (risk {row['risk']:.2f} incidents)")
        for text, record in zip(row["reasons"], row["reason_details"]):
            print(f"  - {text}   [{kind_of(record, families)}, x{record['factor']}]")


if __name__ == "__main__":
    main()
