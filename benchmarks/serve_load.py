"""Load benchmark of the service (not a test): 100 concurrent clients on GET /v1/forecasts/latest?top=100 for 30 s
against `hotspot serve` (uvicorn) on loopback, with a published full-Toronto forecast. Prints throughput and p50/p99
latency; the target is p99 under 50 ms on the project's 2-core machine.

    .venv/bin/python benchmarks/serve_load.py                    # trains Toronto first if the store has no champion
    .venv/bin/python benchmarks/serve_load.py --workdir /tmp/serve_bench --connections 100 --duration 30

Uses wrk (apt-get install wrk) when it is on PATH, else an asyncio httpx client (which itself takes CPU from the
server on a small machine, so its figures are pessimistic).
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
    code = ("import sys; from features.config import load_config; from serving.publishing import Forecaster; "
            "sys.exit(0 if Forecaster(load_config(sys.argv[1])).champion_version() else 1)")
    return subprocess.run([sys.executable, "-c", code, str(config)], env=env, cwd=REPO_ROOT,
                          capture_output=True).returncode == 0


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


def with_wrk(url: str, key: str, connections: int, duration_s: int, threads: int) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s",
                          "-H", f"X-API-Key: {key}", url], capture_output=True, text=True, check=True).stdout

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    dist = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"tool": f"wrk -t{threads} -c{connections} -d{duration_s}s", "requests": total,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": ms(dist["50"]),
            "p90_ms": ms(dist["90"]), "p99_ms": ms(dist["99"]), "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else "none", "raw": out}


async def _httpx_load(url: str, key: str, connections: int, duration_s: int) -> dict:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers={"X-API-Key": key}, limits=limits, timeout=10) as client:
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
    args = parser.parse_args()

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}"),
           "HOTSPOT_DATABASE_URL": f"sqlite:///{work / 'hotspot.db'}", "PYTHONPATH": str(REPO_ROOT)}
    if not has_champion(args.config, env):
        print(f"training the champion on {args.config.name} (about a minute) ...", flush=True)
        run(["train", "--config", str(args.config)], env, work)
    analyst = run(["keys", "create", "--role", "analyst", "--name", "serve_load"], env, work).strip()
    viewer = run(["keys", "create", "--role", "viewer", "--name", "serve_load"], env, work).strip()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "serve.log"
    serve = [str(HOTSPOT), "serve", "--config", str(args.config), "--port", str(port), "--workers", str(args.workers)]
    if args.no_access_log:
        serve.append("--no-access-log")
    with open(log_path, "w") as log:
        server = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
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
        url = f"{base}/v1/forecasts/latest?top={args.top}"
        body = httpx.get(url, headers={"X-API-Key": viewer}).content
        print(f"response: {len(body):,} bytes of GeoJSON for top={args.top}", flush=True)
        time.sleep(2)  # let the access-log flush and any start-up work settle
        use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
        result = (with_wrk(url, viewer, args.connections, args.duration, args.wrk_threads) if use_wrk
                  else asyncio.run(_httpx_load(url, viewer, args.connections, args.duration)))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    verdict = "met" if result["p99_ms"] < 50 and result["errors"] == 0 else "NOT met"
    print(f"\n{result['tool']} on {url.replace(base, '')} ({os.cpu_count()} CPUs, {args.workers} uvicorn worker(s), "
          f"access lines {'off' if args.no_access_log else 'on'})")
    print(f"requests {result['requests']:,}   throughput {result['rps']:,.0f} req/s   p50 {result['p50_ms']:.1f} ms   "
          f"p90 {result['p90_ms']:.1f} ms   p99 {result['p99_ms']:.1f} ms   non-2xx {result['errors']}   "
          f"socket errors {result['socket_errors']}")
    print(f"target p99 < 50 ms: {verdict}")


if __name__ == "__main__":
    main()
