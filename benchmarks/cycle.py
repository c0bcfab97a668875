"""Weekly cycles in a row, the way an agency runs them: the area's records split into a history and weekly extracts,
one extract delivered to the inbox before each `hotspot cycle`, then a repeated cycle that must change nothing.

    python benchmarks/cycle.py                                   # the sample: 12 cycles (2019-10-14 .. 2019-12-30)
    python benchmarks/cycle.py -c configs/toronto.toml --weeks 2 # full Toronto: the history, then one cycle timed

The area is set up in --work (default outputs/cycle-demo/AREA): a copy of the config with its paths made absolute,
no `period.data_end`, its history and inbox beside it (the defaults: history/AREA, inbox/AREA), base.parquet (the
records before the first extract week) and extracts/WEEK.parquet (the records of each of the last --weeks complete
weeks). Each cycle runs as its own `hotspot cycle` process, with MLFLOW_TRACKING_URI and HOTSPOT_DATABASE_URL in
--work unless they are set. Prints each cycle's sentence, seconds, peak memory and /proc/loadavg, then the live
record of the last report; --json FILE keeps the figures. Only configs with one incidents source ([incidents]).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "n/a"


def absolute_paths(text: str, folder: Path) -> str:
    """Every quoted string of the TOML text that names an existing file or folder relative to `folder`, absolute."""
    def fix(match: re.Match) -> str:
        value = match.group(1)
        if not value or value.startswith("/") or "\n" in value:
            return match.group(0)
        path = (folder / value)
        return f'"{path.resolve()}"' if path.exists() else match.group(0)

    return re.sub(r'"([^"\n]*)"', fix, text)


def set_up(config: Path, work: Path, weeks: int, retrain_every: int | None) -> tuple[Path, list[str]]:
    """The cycling area in `work`: config, base history and weekly extracts. Returns (config, extract names)."""
    raw = tomllib.loads(config.read_text())
    if "incidents" not in raw or "sources" in raw:
        sys.exit(f"{config}: this benchmark splits one [incidents] source into extracts; configs with [[sources]] "
                 "need their extracts made by hand")
    if (raw.get("history") or {}).get("path") or (raw.get("cycle") or {}).get("inbox"):
        sys.exit(f"{config}: remove [history] path and [cycle] inbox for the benchmark (it keeps both in --work)")
    from hotspot.features.config import load_config

    cfg = load_config(config)
    inc = raw["incidents"]
    source = cfg.sources[0].path
    rows = pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    when = pd.to_datetime(rows[inc["timestamp"]], errors="coerce")
    offset = pd.tseries.frequencies.to_offset(cfg.period.freq)
    end = pd.Timestamp(cfg.period.data_end) if cfg.period.data_end else when.max()
    stop = offset.rollback(end.normalize())  # the week holding the last day: complete weeks end before it
    if stop + pd.Timedelta(days=6) <= end:  # that week itself is complete
        stop = stop + offset
    starts = [stop - (weeks - i) * offset for i in range(weeks)]
    work.mkdir(parents=True, exist_ok=True)
    rows[when < starts[0]].to_parquet(work / "base.parquet")
    (work / "extracts").mkdir(exist_ok=True)
    names = []
    for start in starts:
        part = rows[(when >= start) & (when < start + offset)]
        part.to_parquet(work / "extracts" / f"{start.date()}.parquet")
        names.append(f"{start.date()}.parquet")
    text = absolute_paths(config.read_text(), config.parent)
    source_text = f'"{source.resolve()}"'
    assert source_text in text, f"could not find the incidents path {source} in {config}"
    text = text.replace(source_text, f'"{(work / "base.parquet").resolve()}"')
    text = re.sub(r"(?m)^data_end\s*=.*$", "", text)
    if retrain_every is not None:
        if re.search(r"(?m)^\[cycle\]\s*$", text):
            text = re.sub(r"(?m)^\[cycle\]\s*$", f"[cycle]\nretrain_every = {retrain_every}", text, count=1)
        else:
            text += f"\n[cycle]\nretrain_every = {retrain_every}\n"
    (work / "area.toml").write_text(text)
    return work / "area.toml", names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", type=Path, default=REPO / "configs" / "toronto-sample.toml")
    parser.add_argument("--weeks", type=int, default=12, help="weekly extracts, one cycle each (default 12)")
    parser.add_argument("--work", type=Path, help="folder of the cycling area [default: outputs/cycle-demo/AREA]")
    parser.add_argument("--product", action="append", help="product to run (repeat) [default: the config's]")
    parser.add_argument("--retrain-every", type=int, help="override cycle.retrain_every (0 = never)")
    parser.add_argument("--keep", action="store_true", help="keep what an earlier run left in --work")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    name = tomllib.loads(args.config.read_text())["area"]["name"]
    work = (args.work or Path("outputs") / "cycle-demo" / name).resolve()
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    started = time.perf_counter()
    config, extracts = set_up(args.config, work, args.weeks, args.retrain_every)
    print(f"area {name} in {work}: base history before {extracts[0][:10]}, {len(extracts)} weekly extract(s) "
          f"({time.perf_counter() - started:.1f} s)")
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db"),
           "HOTSPOT_DATABASE_URL": os.environ.get("HOTSPOT_DATABASE_URL", f"sqlite:///{work}/hotspot.db")}
    hotspot = Path(sys.executable).with_name("hotspot")
    command = [str(hotspot), "cycle", "-c", str(config)] + [a for p in args.product or [] for a in ("-p", p)]
    inbox = work / "inbox" / name
    inbox.mkdir(parents=True, exist_ok=True)
    figures = []
    for extract in extracts + [None]:  # then once more with nothing new: a no-op
        if extract:
            shutil.copy2(work / "extracts" / extract, inbox / extract)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        line = (proc.stdout.strip().splitlines() or [proc.stderr.strip()])[0]
        figures.append({"extract": extract, "exit": proc.returncode, "seconds": round(seconds, 1),
                        "peak_rss_mb_so_far": round(max(before, peak) / 1024), "load": load(), "sentence": line})
        print(f"[{seconds:6.1f} s, load {load()}, exit {proc.returncode}] {line}", flush=True)
        if proc.returncode not in (0,):
            print(proc.stderr[-3000:], file=sys.stderr)
            sys.exit(proc.returncode)
    reports = sorted((work / "outputs" / name / "cycle").glob("*/cycle.json"))
    if reports:
        last = json.loads(reports[-1].read_text())
        for product, entry in last["products"].items():
            print(f"{product}: {entry['live']['sentence']}")
        print(f"last report: {reports[-1].with_suffix('.html')}")
        steady = figures[1:-1]
        if steady:
            print(f"cycles after the first: mean {sum(f['seconds'] for f in steady) / len(steady):.1f} s, max "
                  f"{max(f['seconds'] for f in steady):.1f} s; repeated cycle {figures[-1]['seconds']:.1f} s; "
                  f"peak memory of a cycle process {figures[-1]['peak_rss_mb_so_far']:,} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": str(args.config), "weeks": args.weeks, "cycles": figures,
                                         "seconds_total": round(time.perf_counter() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
