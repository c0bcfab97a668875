"""Benchmark (issue 4): every model on full Toronto, 250 m cells, on the same weeks.

Runs `hotspot backtest --model all --weeks 26` for the 26 weeks ending 2019-12-30 and ending 2021-12-27, for all
offences and for Break and Enter, and prints each model's PAI@1% and PAI@5% (with 95% bootstrap intervals over
weeks), Poisson deviance and fit+predict time. Needs ../shared/data.

Usage: python benchmarks/accuracy.py [--out outputs/bench/accuracy] [--refit-every 4] [--only 2019-12-30:all]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CASES = [("2019-12-30", None), ("2019-12-30", "Break and Enter"), ("2021-12-27", None),
         ("2021-12-27", "Break and Enter")]


def run_case(config: Path, end: str, target: str | None, out: Path, refit_every: int) -> dict:
    hotspot = Path(sys.executable).with_name("hotspot")
    cmd = [str(hotspot), "backtest", "--config", str(config), "--weeks", "26", "--end", end, "--model", "all",
           "--refit-every", str(refit_every), "--out", str(out)]
    if target:
        cmd += ["--target", target]
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get(
        "MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp()}/bench.db")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"backtest failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "accuracy.json").read_text())
    rows = {}
    for name, m in report["models"].items():
        s = m["summary"]
        rows[name] = {"pai@1%": s["pai@1%"]["mean"], "pai@1%_ci": s["pai@1%"]["ci95"],
                      "pai@5%": s["pai@5%"]["mean"], "pai@5%_ci": s["pai@5%"]["ci95"],
                      "deviance": s["poisson_deviance"]["mean"],
                      "fit_predict_s": metrics["models"][name]["fit_predict_s"]}
    return {"end": end, "target": target or "all offences", "wall_s": time.perf_counter() - start,
            "weeks": f"{report['weeks'][0]} .. {report['weeks'][-1]}", "models": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "toronto.toml")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/accuracy"))
    parser.add_argument("--refit-every", type=int, default=4)
    parser.add_argument("--only", help="END:TARGET, e.g. 2019-12-30:all or 2021-12-27:Break and Enter")
    args = parser.parse_args()
    if not (REPO_ROOT.parent / "shared" / "data" / "toronto").exists():
        raise SystemExit("benchmark needs ../shared/data/toronto")
    cases = CASES
    if args.only:
        end, target = args.only.split(":", 1)
        cases = [(end, None if target == "all" else target)]
    results = []
    for end, target in cases:
        slug = f"{end}_{(target or 'all').replace(' ', '_').lower()}"
        res = run_case(args.config, end, target, args.out / slug, args.refit_every)
        results.append(res)
        print(f"\n26 weeks {res['weeks']}, {res['target']} ({res['wall_s']:.0f} s)")
        print(f"{'model':<18}{'PAI@1% [95%]':>22}{'PAI@5% [95%]':>22}{'deviance':>10}{'fit+pred s':>12}")
        for name, r in sorted(res["models"].items(), key=lambda kv: -kv[1]["pai@1%"]):
            ci1, ci5 = r["pai@1%_ci"], r["pai@5%_ci"]
            print(f"{name:<18}{r['pai@1%']:>7.2f} [{ci1[0]:5.2f},{ci1[1]:6.2f}]{r['pai@5%']:>7.2f} "
                  f"[{ci5[0]:5.2f},{ci5[1]:6.2f}]{r['deviance']:>10.4f}{r['fit_predict_s']:>12.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy_benchmark.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
