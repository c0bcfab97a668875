"""Scale-out benchmark (issue 18): validate, features, train and a 4-week backtest of LightGBM on the synthetic
region (benchmarks/synth_region.py), with the local engine and with the Dask engine at 1 and 2 workers.

    python benchmarks/scale.py                        # 10 tiles (ten times Toronto); needs ../shared/data
    python benchmarks/scale.py --tiles 2 --engines local,dask2 --json benchmarks/results/scale_2.json
    python benchmarks/scale.py --config configs/toronto.toml --engines local,dask2   # full Toronto itself

Each engine runs in a process of its own (so its peak memory is its own), the steps in order, inside
`features.engine.engine(...)` (the Dask engine starts a LocalCluster of N worker processes, `[engine]` memory limit
`--worker-memory`). For each step it prints the seconds, the peak resident memory of the command's process (the
"driver") and of each worker, rows per second (incident rows for validate, cell-weeks of the panel for features and
train, cell-weeks forecast for the backtest) and /proc/loadavg. A process that passes `--max-gb` (driver and workers
together) is stopped, and the step it was in is reported as where that engine stops on this machine. After the
features step each engine gives a SHA-256 digest of its panel (features, labels, counts, names), and the parent says
whether the engines built the same panel, bit for bit; with `--config` the area is that config's (its first product),
not the synthetic region.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("validate", "features", "train", "backtest")


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "n/a"


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the LocalCluster's workers are its children)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0


def panel_digest(panel) -> str:
    """SHA-256 of everything the panel holds for the later steps: features, labels, counts and feature names."""
    import hashlib

    from hotspot.features.parts import PartitionedX

    digest = hashlib.sha256()
    for array in (panel.X, panel.target, panel.counts):
        digest.update(str(array.shape).encode())
        if isinstance(array, PartitionedX):  # the same bytes as the dense cube's, a period at a time
            for values in array.periods():
                digest.update(memoryview(values.reshape(-1).view("u1")))
            continue
        digest.update(memoryview(array.reshape(-1).view("u1")) if array.flags.c_contiguous else array.tobytes())
    digest.update("\n".join(panel.feature_names).encode())
    return digest.hexdigest()


def child(region: Path, kind: str, workers: int, worker_memory: str, weeks: int, tile_cells: int | None,
          partitioned: str | None = None) -> None:
    """Run the steps on one engine, printing one JSON line per step (read by the parent)."""
    from hotspot.features.config import load_config
    from hotspot.features.engine import engine
    from hotspot.features.engine import worker_memory as peaks
    from hotspot.features.ingest import validate
    from hotspot.features.panel import build_panel
    from hotspot.training.backtest import lightgbm_from_config
    from hotspot.training.rolling import forecast_periods, run_backtest

    cfg = load_config(region if region.suffix == ".toml" else region / "region.toml")
    if kind == "dask":  # the machine's cores shared among the workers
        cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={
            "workers": workers, "memory_limit": worker_memory,
            "threads_per_worker": max(1, (os.cpu_count() or 2) // workers),
            # a partitioned panel (an area too large to gather: [engine] partitioned) goes beside the region
            "parts_dir": (REPO / "outputs" / f"scale-{cfg.area.name}" if region.suffix == ".toml" else region)
            / f"panel-parts-dask{workers}",
            **({"tile_cells": tile_cells} if tile_cells else {}),
            **({"partitioned": partitioned} if partitioned else {})})})
    with engine(cfg, kind, say=lambda text: print(json.dumps({"say": text}), flush=True)) as client:
        def report(step: str, start: float, rows: int) -> None:
            seconds = time.perf_counter() - start
            out = {"step": step, "seconds": round(seconds, 1), "rows": rows,
                   "rows_per_s": round(rows / seconds) if seconds else None,
                   "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "load": load()}
            if client is not None:
                out["worker_peak_mb"] = {k.rsplit(":", 1)[-1]: v // 2**20 for k, v in peaks(client).items()}
            print(json.dumps(out), flush=True)

        start = time.perf_counter()
        result = validate(cfg)
        report("validate", start, result.n_read)
        start = time.perf_counter()
        panel = build_panel(cfg, result.accepted, result.grid)
        report("features", start, panel.n_periods * panel.grid.n_cells)
        from hotspot.features.parts import PartitionedX

        if isinstance(panel.X, PartitionedX):
            print(json.dumps({"say": f"the panel is kept partitioned: {len(panel.X.parts.cells)} Parquet files in "
                                     f"{panel.X.parts.folder}"}), flush=True)
        print(json.dumps({"panel_digest": panel_digest(panel)}), flush=True)
        del result
        start = time.perf_counter()
        model = lightgbm_from_config(cfg).fit(panel)
        lo, hi = model.training_window(panel)
        report("train", start, (hi - lo) * panel.grid.n_cells)
        start = time.perf_counter()
        periods = forecast_periods(panel, weeks)
        run_backtest(panel, [lightgbm_from_config(cfg)], periods, weeks, [0.01])
        report("backtest", start, len(periods) * panel.grid.n_cells)


def last_line(log) -> str:
    """The last line of a child's stderr file (its error)."""
    log.seek(0)
    lines = [line for line in log.read().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_engine(region: Path, label: str, max_gb: float, worker_memory: str, weeks: int,
               tile_cells: int | None = None, partitioned: str | None = None) -> dict:
    """One engine in a child process, watched for memory; its figures."""
    kind, workers = ("local", 0) if label == "local" else ("dask", int(label.removeprefix("dask") or 2))
    command = [sys.executable, __file__, "--child", kind, "--workers", str(workers), "--region", str(region),
               "--worker-memory", worker_memory, "--weeks", str(weeks),
               *(["--tile-cells", str(tile_cells)] if tile_cells else []),
               *(["--partitioned", partitioned] if partitioned else [])]
    # the child's stderr (Dask's and LightGBM's logs) goes to a file: a pipe nobody reads fills up and blocks it
    errors = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=REPO)
    peak, stopped = [0], [False]
    digest = None

    def watch() -> None:
        while proc.poll() is None:
            rss = tree_rss(proc.pid)
            peak[0] = max(peak[0], rss)
            if rss > max_gb * 2**30:
                stopped[0] = True
                proc.kill()
                return
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    steps = []
    for line in proc.stdout:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "say" in item:
            print(f"  [{label}] {item['say']}", flush=True)
            continue
        if "panel_digest" in item:
            digest = item["panel_digest"]
            continue
        steps.append(item)
        workers_mb = item.get("worker_peak_mb")
        print(f"  [{label}] {item['step']:9s} {item['seconds']:8.1f} s  driver {item['driver_peak_mb']:6,} MB"
              + (f"  workers {', '.join(f'{v:,}' for v in workers_mb.values())} MB" if workers_mb else "")
              + f"  {item['rows_per_s'] or 0:>10,} rows/s  load {item['load']}", flush=True)
    proc.wait()
    done = [s["step"] for s in steps]
    out = {"engine": label, "steps": steps, "peak_tree_mb": peak[0] // 2**20, "exit": proc.returncode,
           "panel_digest": digest}
    if len(done) < len(STEPS):
        where = STEPS[len(done)]
        why = (f"stopped: the processes passed {max_gb:g} GB" if stopped[0] else
               f"failed (exit {proc.returncode}): {last_line(errors)}")
        out["stopped_at"] = {"step": where, "why": why}
        print(f"  [{label}] {where}: {why} (peak of the process tree {peak[0] / 2**30:.1f} GB)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=10, help="copies of Toronto in the region (default 10)")
    parser.add_argument("--engines", default="local,dask1,dask2", help="comma-separated: local, daskN (N workers)")
    parser.add_argument("--weeks", type=int, default=4, help="backtest weeks (one refit)")
    parser.add_argument("--max-gb", type=float, default=21.0, help="stop an engine whose processes pass this")
    parser.add_argument("--worker-memory", default="6GB", help="Dask memory limit per worker")
    parser.add_argument("--region", type=Path, help="an existing region folder [default: made in outputs/]")
    parser.add_argument("--config", type=Path, help="a real area's config instead of the synthetic region")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--tile-cells", type=int, help="Dask engine: cells per tile side [default: the config's "
                                                       "[engine] tile_cells]; smaller tiles, less memory per worker")
    parser.add_argument("--partitioned", choices=["auto", "always", "never"],
                        help="Dask engine: keep the panel partitioned on disk [default: the config's [engine] "
                             "partitioned, 'auto': above partition_above cell-periods]")
    parser.add_argument("--child", choices=["local", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.region, args.child, args.workers, args.worker_memory, args.weeks, args.tile_cells,
              args.partitioned)
        return
    region = args.config.resolve() if args.config else args.region or REPO / "outputs" / f"synth-region-{args.tiles}"
    if not args.config and not (region / "region.toml").exists():
        sys.path.insert(0, str(REPO / "benchmarks"))
        from synth_region import SHARED, make_region

        if not SHARED.exists():
            sys.exit(f"{SHARED} is missing: the synthetic region is made from the Toronto data in ../shared/data")
        print(f"making the region of {args.tiles} tiles in {region}", flush=True)
        make_region(args.tiles, region)
    print(f"region {region}; cores {os.cpu_count()}; load {load()}", flush=True)
    results = [run_engine(region, label.strip(), args.max_gb, args.worker_memory, args.weeks, args.tile_cells,
                          args.partitioned)
               for label in args.engines.split(",") if label.strip()]
    digests = {r["engine"]: r["panel_digest"] for r in results if r["panel_digest"]}
    same = len(set(digests.values())) == 1 if len(digests) > 1 else None
    if same is not None:
        print(f"panels: {'identical' if same else 'DIFFERENT'} across {', '.join(digests)} "
              f"(SHA-256 {next(iter(digests.values()))[:16]}...)" if same else
              f"panels: DIFFERENT: {digests}", flush=True)
    for r in results[1:]:
        base = {s["step"]: s["seconds"] for s in results[0]["steps"]}
        ratios = {s["step"]: round(s["seconds"] / base[s["step"]], 2) for s in r["steps"] if base.get(s["step"])}
        if ratios:
            print(f"{r['engine']} / {results[0]['engine']} time: " + ", ".join(f"{k} {v:.2f}x" for k, v in
                                                                            ratios.items()), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"region": str(region), "tiles": None if args.config else args.tiles,
                                         "panels_identical": same, "results": results}, indent=2))


if __name__ == "__main__":
    main()
