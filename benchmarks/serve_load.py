"""Load benchmark of the service (not a test): 100 concurrent clients for 30 s on each of GET
/v1/forecasts/latest?top=100 and the report routes (accuracy and fairness, JSON and HTML) against `hotspot serve`
(uvicorn) on loopback, with a published full-Toronto forecast and the backtest and audit reports in MLflow. Prints
throughput and p50/p99 latency per route, with /proc/loadavg; the targets are p99 under 50 ms for the forecast and
under 100 ms for every report route on the project's 2-core machine.

    .venv/bin/python benchmarks/serve_load.py       # trains Toronto, backtests and audits first when MLflow lacks them
    .venv/bin/python benchmarks/serve_load.py --workdir /tmp/serve_bench --connections 100 --duration 30
    .venv/bin/python benchmarks/serve_load.py --routes forecast     # the forecast route only

Uses wrk (apt-get install wrk) when it is on PATH, else an asyncio httpx client (which itself takes CPU from the
server on a small machine, so its figures are pessimistic).

On a machine with two or more CPUs the server (one uvicorn worker per CPU from the first) and the load generator
(the other CPUs) are pinned apart (`--no-pin` to share them): on the 2-core machine, wrk's two threads otherwise take
the server's CPU in bursts and the p99 measures the client as much as the server (measured on the same build: report
routes p99 70-670 ms unpinned in two runs against 39-89 ms pinned, at lower throughput). Each route is loaded for
`--warmup` seconds first, not counted: the first second of 100 new connections at once has a tail of its own
(single requests near 1 s) that a 30-s run would count as its p99 only when short.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
HOTSPOT = Path(sys.executable).with_name("hotspot")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], env: dict, cwd: Path) -> str:
    proc = subprocess.run([str(HOTSPOT), *args], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        sys.exit(f"hotspot {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def has_champion(config: Path, env: dict) -> bool:
    code = ("import sys; from hotspot.features.config import load_config; "
            "from hotspot.serving.publishing import Forecaster; "
            "sys.exit(0 if Forecaster(load_config(sys.argv[1])).champion_version() else 1)")
    return subprocess.run([sys.executable, "-c", code, str(config)], env=env, cwd=REPO_ROOT,
                          capture_output=True).returncode == 0


def has_report_runs(config: Path, env: dict) -> dict[str, bool]:
    """Whether the area's experiment holds a finished run with each report (what the service would serve)."""
    code = ("import sys; from hotspot.features.config import load_config; "
            "from hotspot.serving.artifacts import ReportSource; "
            "s = ReportSource(load_config(sys.argv[1])); s.refresh(); "
            "print(' '.join(k for k in ('accuracy', 'fairness') if s.latest(k)))")
    proc = subprocess.run([sys.executable, "-c", code, str(config)], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True)
    found = proc.stdout.split() if proc.returncode == 0 else []
    return {kind: kind in found for kind in ("accuracy", "fairness")}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def wait_for(url: str, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"hotspot serve exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit(f"{url} not answering after {timeout_s} s")


def pinned(cpus: set[int] | None):
    """A preexec_fn that keeps a child process on `cpus` (None: wherever the scheduler puts it)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def with_wrk(url: str, key: str, connections: int, duration_s: int, threads: int, encoding: str,
             cpus: set[int] | None = None) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency",
                          "--timeout", "10s", "-H", f"X-API-Key: {key}", "-H", f"Accept-Encoding: {encoding}", url],
                         capture_output=True, text=True, check=True, preexec_fn=pinned(cpus)).stdout

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    dist = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M))  # wrk pads some values with a space
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"tool": f"wrk -t{threads} -c{connections} -d{duration_s}s", "requests": total,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": ms(dist["50"]),
            "p90_ms": ms(dist["90"]), "p99_ms": ms(dist["99"]), "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else "none", "raw": out}


async def _httpx_load(url: str, key: str, connections: int, duration_s: int, encoding: str) -> dict:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers={"X-API-Key": key, "Accept-Encoding": encoding}, limits=limits,
                                 timeout=10) as client:
        stop_at = time.perf_counter() + duration_s

        async def worker():
            nonlocal errors
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = await client.get(url)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"tool": f"httpx asyncio, {connections} clients, {duration_s}s", "requests": len(latencies),
            "rps": len(latencies) / elapsed, "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "errors": errors, "socket_errors": "n/a", "raw": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "toronto.toml")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/serve_bench"))
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--no-access-log", action="store_true", help="no JSON line per request on stderr")
    parser.add_argument("--routes", default="forecast,reports", help="comma-separated: forecast, reports")
    parser.add_argument("--accept-encoding", default="gzip",
                        help="Accept-Encoding the clients send: gzip (as browsers, httpx and requests do; the reports "
                             "are served pre-compressed) or identity")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="pin the server and the load generator to different CPUs (when there are 2 or more)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load on each route before measuring")
    parser.add_argument("--report-weeks", type=int, default=2,
                        help="weeks of the backtest and audit run when MLflow has no reports yet")
    args = parser.parse_args()
    wanted = {r.strip() for r in args.routes.split(",") if r.strip()}

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}"),
           "HOTSPOT_DATABASE_URL": f"sqlite:///{work / 'hotspot.db'}", "PYTHONPATH": str(REPO_ROOT)}
    if not has_champion(args.config, env):
        print(f"training the champion on {args.config.name} (about a minute) ...", flush=True)
        run(["train", "--config", str(args.config)], env, work)
    if "reports" in wanted:
        present = has_report_runs(args.config, env)
        if not present["accuracy"]:
            print(f"backtesting {args.report_weeks} weeks for the accuracy report ...", flush=True)
            run(["backtest", "--config", str(args.config), "--weeks", str(args.report_weeks), "--model",
                 "lightgbm,naive_4w", "--out", str(work / "backtest")], env, work)
        if not present["fairness"]:
            print(f"auditing {args.report_weeks} weeks for the fairness report ...", flush=True)
            run(["audit", "--config", str(args.config), "--weeks", str(args.report_weeks), "--out",
                 str(work / "audit")], env, work)
    analyst = run(["keys", "create", "--role", "analyst", "--name", "serve_load"], env, work).strip()
    viewer = run(["keys", "create", "--role", "viewer", "--name", "serve_load"], env, work).strip()
    auditor = run(["keys", "create", "--role", "auditor", "--name", "serve_load"], env, work).strip()

    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = client_cpus = None
    if args.pin and len(cpus) >= 2:
        n = min(args.workers, len(cpus) - 1)
        server_cpus, client_cpus = set(cpus[:n]), set(cpus[n:])
    placement = (f"server on CPU {sorted(server_cpus)}, load generator on CPU {sorted(client_cpus)}" if server_cpus
                 else "server and load generator sharing every CPU")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "serve.log"
    serve = [str(HOTSPOT), "serve", "--config", str(args.config), "--port", str(port), "--workers", str(args.workers)]
    if args.no_access_log:
        serve.append("--no-access-log")
    with open(log_path, "w") as log:
        server = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                  preexec_fn=pinned(server_cpus))
    results = []
    try:
        wait_for(f"{base}/health", server)
        started = time.perf_counter()
        published = httpx.post(f"{base}/v1/forecasts", json={"new_version": True}, headers={"X-API-Key": analyst},
                               timeout=900)
        if published.status_code != 201:
            sys.exit(f"publishing failed: {published.status_code} {published.text}")
        pub = published.json()
        print(f"published {pub['area']} week {pub['week']} v{pub['version']} ({pub['cells']:,} cells, model "
              f"v{pub['model_version']}) in {time.perf_counter() - started:.1f} s", flush=True)
        wait_for(f"{base}/ready", server)
        targets = []  # (path, key, p99 target in ms)
        if "forecast" in wanted:
            targets.append((f"/v1/forecasts/latest?top={args.top}", viewer, 50.0))
        if "reports" in wanted:
            targets += [(f"/v1/reports/{kind}{query}", auditor, 100.0) for kind in ("accuracy", "fairness")
                        for query in ("", "?format=html")]
        for path, key, _ in targets:
            response = httpx.get(base + path, headers={"X-API-Key": key, "Accept-Encoding": args.accept_encoding},
                                 timeout=60)
            if response.status_code != 200:
                sys.exit(f"GET {path}: {response.status_code} {response.text[:500]}")
            sent = response.headers.get("content-length", "?")
            print(f"{path}: {len(response.content):,} bytes of {response.headers['content-type']} ({sent} bytes sent, "
                  f"{response.headers.get('content-encoding', 'identity')})", flush=True)
        time.sleep(2)  # let the access-log flush and any start-up work settle
        use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)  # the httpx client runs in this process
        for path, key, target_ms in targets:
            if args.warmup > 0:
                (with_wrk(base + path, key, args.connections, args.warmup, args.wrk_threads, args.accept_encoding,
                          client_cpus) if use_wrk
                 else asyncio.run(_httpx_load(base + path, key, args.connections, args.warmup, args.accept_encoding)))
            before = loadavg()
            result = (with_wrk(base + path, key, args.connections, args.duration, args.wrk_threads,
                               args.accept_encoding, client_cpus) if use_wrk
                      else asyncio.run(_httpx_load(base + path, key, args.connections, args.duration,
                                                   args.accept_encoding)))
            results.append((path, target_ms, result, before, loadavg()))
            print(f"  {path}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.1f} ms", flush=True)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    tool = results[0][2]["tool"] if results else "nothing"
    print(f"\n{tool} per route ({os.cpu_count()} CPUs, {args.workers} uvicorn worker(s), access lines "
          f"{'off' if args.no_access_log else 'on'}, Accept-Encoding: {args.accept_encoding}; {placement}; "
          f"{args.warmup} s warm-up per route not counted); "
          "loadavg = /proc/loadavg 1/5/15 min before -> after")
    print(f"{'route':<36} {'requests':>9} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'non-2xx':>7}  "
          f"{'socket errors':<14} {'target':<14} loadavg")
    all_met = True
    for path, target_ms, r, before, after in results:
        met = r["p99_ms"] < target_ms and r["errors"] == 0
        all_met &= met
        print(f"{path:<36} {r['requests']:>9,} {r['rps']:>7,.0f} {r['p50_ms']:>7.1f} {r['p90_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {r['errors']:>7}  {r['socket_errors']:<14} "
              f"{'p99<' + format(target_ms, '.0f') + ' ' + ('met' if met else 'NOT met'):<14} {before} -> {after}")
    print(f"targets: {'all met' if all_met else 'NOT all met'}")


if __name__ == "__main__":
    main()
