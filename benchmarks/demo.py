"""Benchmark (issue 15): `hotspot demo` on the bundled sample, as a fresh clone runs it after installation.

Target on a 2-core machine: under 90 s. Runs the installed `hotspot demo` twice in an empty temporary folder:
first cold (no MLflow store, no Optuna study, no panel cache, as after `git clone` and the install), then again in
the same folder (the store, the demo's study and the cached panel are there; the tuning study resumes). Prints the
wall time of each run, the time of each numbered step (from the demo's own lines) and the load average before and
after each.

Usage: python benchmarks/demo.py [--runs 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


def run_demo(folder: Path, cache: Path) -> tuple[float, list[tuple[str, float]], str]:
    """One `hotspot demo` in `folder`; (wall seconds, [(step line, seconds since start)], full output)."""
    exe = Path(sys.executable).with_name("hotspot")
    env = {**os.environ, "HOTSPOT_CACHE_DIR": str(cache), "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "HOTSPOT_DATABASE_URL": f"sqlite:///{folder / 'hotspot.db'}", "COLUMNS": "200"}
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    start = time.perf_counter()
    proc = subprocess.Popen([str(exe), "demo", "--out", str(folder / "demo")], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    steps, lines = [], []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if re.match(r"\d+\. ", line):  # the numbered steps (the reasons below the table are indented)
            steps.append((line.strip()[:70], time.perf_counter() - start))
    if proc.wait() != 0:
        raise SystemExit("hotspot demo failed:\n" + "".join(lines[-40:]))
    return time.perf_counter() - start, steps, "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs in the same folder (the first is cold)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hotspot-demo-bench-"))
    cache = folder / "cache"
    print(f"hotspot demo, {os.cpu_count()} CPUs, in {folder}")
    try:
        for run in range(args.runs):
            before = loadavg()
            wall, steps, _ = run_demo(folder, cache)
            print(f"\nrun {run + 1} ({'cold: fresh store, study and cache' if run == 0 else 'warm'}): "
                  f"{wall:.1f} s   (target < 90 s; loadavg before {before}, after {loadavg()})")
            last = 0.0
            for text, at in steps:
                print(f"  {at - last:6.1f} s  {text}")
                last = at
            print(f"  {wall - last:6.1f} s  (summary tables, where to look)")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
