"""Soak: a real `hotspot serve` (uvicorn, loopback) under several client processes at once, on SQLite and on
PostgreSQL. Readers read forecasts (latest, by week, CSV, a bounding box), the map page and the reports; a publisher
publishes new weeks and new versions; key admins create keys, use them and revoke them.

Asserted: no response >= 500 and no connection error; every forecast a reader gets is whole (all of the area's
cells, its version and week the same in body and headers) and the latest never goes back; after the run every
publication in the store has all its cells; a revoked key is refused within HOTSPOT_CACHE_TTL_S (1 s, the documented
default) plus a little slack. HOTSPOT_SOAK_S sets how long the clients run (default 40 s; about a minute per backend
with start-up).
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta

import pytest

pytestmark = pytest.mark.slow

SOAK_S = float(os.environ.get("HOTSPOT_SOAK_S", "40"))
READERS, KEY_ADMINS = 3, 2
CACHE_TTL_S = 1.0  # serving/settings.py cache_ttl_s default (serving/README.md): a revoked key works at most this long
REVOCATION_SLACK_S = 0.5  # the poll's own round trip on a loaded 2-core machine


def _stats() -> dict:
    return {"requests": 0, "by_status": {}, "server_errors": [], "connection_errors": [], "broken": []}


def _note(stats: dict, what: str, response) -> None:
    stats["requests"] += 1
    code = str(response.status_code)
    stats["by_status"][code] = stats["by_status"].get(code, 0) + 1
    if response.status_code >= 500 and len(stats["server_errors"]) < 10:
        stats["server_errors"].append(f"{what}: {response.status_code} {response.text[:300]}")


def _call(stats: dict, client, method: str, path: str, **kwargs):
    """The response, or None after a connection error (counted)."""
    import httpx

    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        stats["requests"] += 1
        stats["connection_errors"].append(f"{method} {path}: {type(exc).__name__}: {exc}"[:300])
        return None
    _note(stats, f"{method} {path}", response)
    return response


def _check_forecast(stats: dict, what: str, response, n_cells: int, week: str | None = None,
                    version: int | None = None, top: int | None = None) -> tuple[str, int] | None:
    """(week, version) of a whole forecast response; anything partial or inconsistent is recorded as broken."""
    if response is None or response.status_code != 200:
        if response is not None and response.status_code != 200:
            stats["broken"].append(f"{what}: status {response.status_code} {response.text[:200]}")
        return None
    body = response.json()
    meta, features = body["metadata"], body["features"]
    got = (meta["period_start"], int(meta["publication_version"]))
    expected_n = n_cells if top is None else min(top, n_cells)
    problems = []
    if len(features) != expected_n or meta["returned_cells"] != expected_n or meta["cells"] != n_cells:
        problems.append(f"{len(features)} features / returned {meta['returned_cells']} / cells {meta['cells']}, "
                        f"expected {expected_n} of {n_cells}")
    if (response.headers["x-hotspot-week"], int(response.headers["x-hotspot-publication-version"])) != got:
        problems.append(f"headers {response.headers['x-hotspot-week']} v"
                        f"{response.headers['x-hotspot-publication-version']} != body {got}")
    if any(f["properties"]["period_start"] != got[0] for f in features):
        problems.append("a cell of another week")
    if [f["properties"]["rank"] for f in features] != list(range(1, len(features) + 1)):
        problems.append("ranks not 1..n")
    if (week is not None and got[0] != week) or (version is not None and got[1] != version):
        problems.append(f"asked for {week} v{version}, got {got}")
    if problems:
        stats["broken"].append(f"{what}: " + "; ".join(problems))
    return got


def reader(url: str, keys: dict, n_cells: int, bbox: str, runs: dict, until: float, seed: int) -> dict:
    import httpx

    rng = random.Random(seed)
    stats = {**_stats(), "forecasts_checked": 0}
    viewer, auditor = {"X-API-Key": keys["viewer"]}, {"X-API-Key": keys["auditor"]}
    latest_seen = ("", 0)
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.time() < until:
            pick = rng.random()
            if pick < 0.30:
                r = _call(stats, http, "GET", "/v1/forecasts/latest", headers=viewer)
                got = _check_forecast(stats, "latest", r, n_cells)
                if got is not None:
                    stats["forecasts_checked"] += 1
                    if got < latest_seen:
                        stats["broken"].append(f"latest went back from {latest_seen} to {got}")
                    latest_seen = max(latest_seen, got)
            elif pick < 0.45:
                r = _call(stats, http, "GET", "/v1/forecasts/latest?top=10", headers=viewer)
                stats["forecasts_checked"] += _check_forecast(stats, "latest top 10", r, n_cells, top=10) is not None
            elif pick < 0.60:
                listing = _call(stats, http, "GET", "/v1/forecasts?limit=50", headers=viewer)
                if listing is None or listing.status_code != 200:
                    continue
                pub = rng.choice(listing.json()["publications"])
                if pub["cells"] != n_cells:
                    stats["broken"].append(f"listed {pub['week']} v{pub['version']} with {pub['cells']} cells")
                if rng.random() < 0.5:
                    r = _call(stats, http, "GET", pub["url"], headers=viewer)
                    got = _check_forecast(stats, pub["url"], r, n_cells, pub["week"], pub["version"])
                    stats["forecasts_checked"] += got is not None
                else:
                    r = _call(stats, http, "GET", f"/v1/forecasts/{pub['week']}?format=csv", headers=viewer)
                    if r is not None and r.status_code == 200:
                        stats["forecasts_checked"] += 1
                        if r.text.count("\n") != n_cells + 1:
                            stats["broken"].append(f"CSV of {pub['week']}: {r.text.count(chr(10)) - 1} rows")
            elif pick < 0.70:
                r = _call(stats, http, "GET", f"/v1/forecasts/latest?bbox={bbox}", headers=viewer)
                if r is not None and r.status_code == 200:
                    stats["forecasts_checked"] += 1
                    body = r.json()
                    if not 0 < len(body["features"]) == body["metadata"]["returned_cells"] <= n_cells:
                        stats["broken"].append(f"bbox: {len(body['features'])} features")
            elif pick < 0.75:
                _call(stats, http, "GET", "/map")
            else:
                kind = rng.choice(["accuracy", "fairness"])
                html = rng.random() < 0.5
                r = _call(stats, http, "GET", f"/v1/reports/{kind}" + ("?format=html" if html else ""),
                          headers=auditor)
                if r is not None and r.status_code != 200:
                    stats["broken"].append(f"report {kind}: {r.status_code}")
                elif r is not None and not html and r.json()["run_id"] != runs[kind]:
                    stats["broken"].append(f"report {kind}: run {r.json()['run_id']}")
    return stats


def publisher(url: str, key: str, first_week: str, until: float, seed: int) -> dict:
    import httpx

    rng = random.Random(seed)
    stats = {**_stats(), "published": [], "refused_409": 0}
    weeks = [first_week]
    analyst = {"X-API-Key": key}
    with httpx.Client(base_url=url, timeout=120) as http:
        while time.time() < until:
            pick = rng.random()
            if pick < 0.5 and len(weeks) < 30:  # a new (earlier) week
                week = str(date.fromisoformat(first_week) - timedelta(weeks=len(weeks)))
                body = {"week": week}
            elif pick < 0.85:  # a new version of a week already published (the latest week among them)
                week = rng.choice(weeks[:1] * 2 + weeks)
                body = {"week": week, "new_version": True}
            else:  # the same week again without new_version: refused, never a second version
                week = rng.choice(weeks)
                body = {"week": week}
            r = _call(stats, http, "POST", "/v1/forecasts", json=body, headers=analyst)
            if r is None:
                continue
            if r.status_code == 201:
                pub = r.json()
                stats["published"].append((pub["week"], pub["version"], pub["cells"]))
                if pub["week"] not in weeks:
                    weeks.append(pub["week"])
            elif r.status_code == 409 and not body.get("new_version") and week in weeks:
                stats["refused_409"] += 1
            else:
                stats["broken"].append(f"publish {body}: {r.status_code} {r.text[:200]}")
    return stats


def key_admin(url: str, database_url: str, until: float, seed: int) -> dict:
    """Create a key, use it, revoke it, and measure how long the revoked key still works (request start times)."""
    import httpx

    from hotspot.serving.auth import create_key, revoke_key
    from hotspot.serving.db import make_engine

    rng = random.Random(seed)
    stats = {**_stats(), "keys": 0, "latencies_s": [], "new_key_refused": 0}
    engine = make_engine(database_url)
    paths = ["/v1/forecasts/latest?top=1", "/v1/forecasts?limit=1"]  # the fast path and the routed one
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.time() < until:
                key, record = create_key(engine, "viewer", "soak")
                stats["keys"] += 1
                headers = {"X-API-Key": key}
                for path in paths * 2:
                    r = _call(stats, http, "GET", path, headers=headers)
                    if r is not None and r.status_code != 200:
                        stats["new_key_refused"] += 1
                time.sleep(rng.uniform(0, CACHE_TTL_S))  # revoke at any phase of the server's key refresh
                revoke_key(engine, record.key_id)
                revoked_at = time.monotonic()
                refused_at, refusals, i = None, 0, 0
                while time.monotonic() - revoked_at < CACHE_TTL_S + 10 and refusals < 3:
                    started = time.monotonic()
                    r = _call(stats, http, "GET", paths[i % 2], headers=headers)
                    i += 1
                    if r is None:
                        continue
                    if r.status_code == 401:  # refused, and still refused after (on both paths)
                        refused_at, refusals = refused_at or started, refusals + 1
                    elif refused_at is not None:
                        stats["broken"].append(f"revoked key accepted again after a 401 ({r.status_code})")
                stats["latencies_s"].append((refused_at or time.monotonic()) - revoked_at)
    finally:
        engine.dispose()
    return stats



def test_soak_mixed_readers_publishers_and_key_admins(trained_area, database_url, tmp_path, monkeypatch):
    import multiprocessing

    import httpx

    from hotspot.serving.auth import create_key
    from hotspot.serving.db import PublicationStore, create_schema, make_engine
    from tests.serving.conftest import Server, log_report_run, private_tracking_store

    uri = private_tracking_store(trained_area.tracking_uri, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    runs = {"accuracy": log_report_run(trained_area.config, "backtest", "backtest", "accuracy",
                                       {"models": {"lightgbm": {"pai": 2.0}}}, tmp_path / "bt"),
            "fairness": log_report_run(trained_area.config, "audit", "audit", "audit", {"groups": ["a"]},
                                       tmp_path / "au")}
    engine = make_engine(database_url)
    create_schema(engine)
    keys = {role: create_key(engine, role, "soak")[0] for role in ("viewer", "auditor", "analyst")}

    server = Server(trained_area.config, database_url, {"MLFLOW_TRACKING_URI": uri}, tmp_path,
                    tmp_path / "serve.log")
    try:
        server.wait_healthy()
        first = httpx.post(f"{server.url}/v1/forecasts", json={}, headers={"X-API-Key": keys["analyst"]},
                           timeout=300)
        assert first.status_code == 201, first.text
        n_cells, first_week, area = first.json()["cells"], first.json()["week"], first.json()["area"]
        product = first.json()["product"]
        top = httpx.get(f"{server.url}/v1/forecasts/latest?top=1", headers={"X-API-Key": keys["viewer"]}).json()
        lon, lat = top["features"][0]["properties"]["lon"], top["features"][0]["properties"]["lat"]
        bbox = f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}"

        until = time.time() + SOAK_S
        with ProcessPoolExecutor(READERS + 1 + KEY_ADMINS, mp_context=multiprocessing.get_context("spawn")) as pool:
            readers = [pool.submit(reader, server.url, keys, n_cells, bbox, runs, until, i) for i in range(READERS)]
            pub = pool.submit(publisher, server.url, keys["analyst"], first_week, until, 100)
            admins = [pool.submit(key_admin, server.url, database_url, until, 200 + i) for i in range(KEY_ADMINS)]
            results = {"reader": [f.result(timeout=SOAK_S + 300) for f in readers],
                       "publisher": [pub.result(timeout=SOAK_S + 300)],
                       "key admin": [f.result(timeout=SOAK_S + 300) for f in admins]}
        health = httpx.get(f"{server.url}/health", timeout=10)
    finally:
        server.stop()

    store = PublicationStore(engine)
    stored = store.list(area, product, limit=10_000)
    incomplete = [(p.week, p.version, p.n_cells, len(store.cells(p.id))) for p in stored
                  if not p.n_cells == n_cells == len(store.cells(p.id))]
    engine.dispose()

    everything = [s for group in results.values() for s in group]
    published = results["publisher"][0]["published"]
    latencies = [x for s in results["key admin"] for x in s["latencies_s"]]
    log = server.log()
    print(f"\nsoak on {engine.dialect.name}, {SOAK_S:.0f} s, {READERS} readers, 1 publisher, {KEY_ADMINS} key admins:")
    for role, group in results.items():
        for i, s in enumerate(group):
            # one of the three is called at once, in this iteration: the loop variable is the current one
            extra = {"reader": lambda: f"forecasts checked {s['forecasts_checked']}",  # noqa: B023
                     "publisher": lambda: f"published {len(s['published'])}, refused 409 {s['refused_409']}",  # noqa: B023
                     "key admin": lambda: f"keys {s['keys']}, max revocation "  # noqa: B023
                                          f"{max(s['latencies_s'], default=0):.3f} s"}[role]()  # noqa: B023
            print(f"  {role} {i}: {s['requests']} requests {s['by_status']}; connection errors "
                  f"{len(s['connection_errors'])}; broken {len(s['broken'])}; {extra}")
    print(f"  total requests {sum(s['requests'] for s in everything)}, server errors "
          f"{sum(len(s['server_errors']) for s in everything)}, connection errors "
          f"{sum(len(s['connection_errors']) for s in everything)}; publications stored {len(stored)} "
          f"({n_cells} cells each); revocations {len(latencies)}, max revocation latency "
          f"{max(latencies, default=0):.3f} s (ttl {CACHE_TTL_S} s)")

    assert health.status_code == 200
    assert not [e for s in everything for e in s["server_errors"]], everything
    assert not [e for s in everything for e in s["connection_errors"]]
    assert not [b for s in everything for b in s["broken"]]
    assert not any(s["by_status"].get(c) for s in everything for c in ("429", "422"))
    assert sum(s.get("new_key_refused", 0) for s in everything) == 0, "a new key must work at once"
    assert published and not incomplete, incomplete
    assert {(w, v) for w, v, _ in published} <= {(p.week, p.version) for p in stored}
    assert latencies and max(latencies) <= CACHE_TTL_S + REVOCATION_SLACK_S, sorted(latencies)[-5:]
    assert "Traceback" not in log and "database is locked" not in log, log[-5000:]

