"""Benchmark (issue 3): every feature family on full Toronto 2014-2021, all context layers.

Target on a 2-core machine: under 30 s and under 4 GB peak memory. Prints the time per family, cell-weeks per
second and peak memory (ru_maxrss of this process, which also holds the validated incidents).

Usage: python benchmarks/features.py [--config configs/toronto.toml]      (needs ../shared/data)
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "toronto.toml")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import hotspot.features.families as families
    import hotspot.features.registry as registry
    from hotspot.features.config import load_config
    from hotspot.features.ingest import validate
    from hotspot.features.panel import build_panel

    cfg = load_config(args.config)
    start = time.perf_counter()
    result = validate(cfg)
    validate_s = time.perf_counter() - start

    family_s: dict[str, float] = {}
    for fam in list(families.FAMILIES.values()):  # time each family's builder as build_panel drains it
        def timed(ctx, _build=fam.build, _name=fam.name):
            t0 = time.perf_counter()
            for feat in _build(ctx):
                family_s[_name] = family_s.get(_name, 0.0) + time.perf_counter() - t0
                yield feat
                t0 = time.perf_counter()
        families.FAMILIES[fam.name] = registry.Family(fam.name, fam.description, fam.inputs, fam.lookback, timed,
                                                      fam.unavailable)
    start = time.perf_counter()
    panel = build_panel(cfg, result.accepted, result.grid)
    build_s = time.perf_counter() - start
    cell_weeks = (panel.n_periods + 1) * panel.grid.n_cells
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"validate: {validate_s:.1f} s ({result.n_read:,} rows)")
    print(f"all families: {build_s:.1f} s (target < 30 s) for {panel.grid.n_cells:,} cells x {panel.n_periods + 1} "
          f"periods x {len(panel.feature_names)} features = {cell_weeks / build_s:,.0f} cell-weeks/s; "
          f"feature cube {panel.X.nbytes / 2**20:,.0f} MB; peak RSS {peak_mb:,.0f} MB (target < 4096 MB)")
    for name, seconds in sorted(family_s.items(), key=lambda kv: -kv[1]):
        n = sum(1 for f in panel.feature_families.values() if f == name)
        print(f"  {name:<15}{seconds:6.2f} s  {n:3d} features")
    if panel.skipped_families:
        print(f"  skipped: {panel.skipped_families}")


if __name__ == "__main__":
    main()
