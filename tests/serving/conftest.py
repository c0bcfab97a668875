"""Fixtures for the service: a trained synthetic study area, databases (SQLite always, PostgreSQL when CI provides
one), an in-process app with a key per role, and cells for publication-store tests."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE_CONFIG, run_cli, write_config

POSTGRES_URL = os.environ.get("HOTSPOT_TEST_POSTGRES_URL")
# CI sets this: there the PostgreSQL and Chromium tests must run, and a missing server or browser is a failure.
REQUIRE_SYSTEM = bool(os.environ.get("HOTSPOT_TEST_REQUIRE_SYSTEM"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SYSTEM:
        pytest.fail(f"{reason} (HOTSPOT_TEST_REQUIRE_SYSTEM is set: CI must provide it)")
    pytest.skip(reason)


@dataclass(frozen=True)
class TrainedArea:
    config: Path
    tracking_uri: str
    folder: Path


@pytest.fixture(scope="session")
def trained_area(tmp_path_factory) -> TrainedArea:
    """The synthetic study area with one trained, registered LightGBM (the champion), in its own MLflow store."""
    folder = tmp_path_factory.mktemp("serving_area")
    config = write_config(folder / "area")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    proc = run_cli("train", "--config", str(config), env={"MLFLOW_TRACKING_URI": uri}, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return TrainedArea(config, uri, folder)


def _postgres_database(admin_url: str):
    """A fresh database on the test server for one test; returns (url, drop)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hotspot_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A new, empty publications database: SQLite always; PostgreSQL when HOTSPOT_TEST_POSTGRES_URL names a server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hotspot.db'}"
        return
    if not POSTGRES_URL:
        skip_or_fail("no PostgreSQL server (set HOTSPOT_TEST_POSTGRES_URL; .ci/run starts one)")
    url, drop = _postgres_database(POSTGRES_URL)
    try:
        yield url
    finally:
        drop()


def make_cells(n: int, seed: int = 0, week: str = "2021-07-19"):
    """`n` synthetic cell records in rank order (for store tests that need no model)."""
    import numpy as np

    from hotspot.serving.db import CellRecord

    rng = np.random.default_rng(seed)
    risk = np.sort(rng.gamma(1.0, 1.0, n))[::-1]
    records = []
    for i in range(n):
        lon, lat = -79.5 + (i % 100) * 0.003, 43.6 + (i // 100) * 0.002
        ring = [[lon - 0.0015, lat - 0.001], [lon + 0.0015, lat - 0.001], [lon + 0.0015, lat + 0.001],
                [lon - 0.0015, lat + 0.001], [lon - 0.0015, lat - 0.001]]
        cell_id = 9_600_000_000 + i  # real grid ids pass 2**31
        props = {"cell_id": cell_id, "lon": lon, "lat": lat, "period_start": week, "risk": float(risk[i]),
                 "rank": i + 1, "percentile": round(100 * (n - i - 1) / n, 2), "reasons": [f"reason {i}"]}
        records.append(CellRecord(i + 1, cell_id, lon, lat, float(risk[i]), props["percentile"],
                                  json.dumps({"type": "Polygon", "coordinates": [ring]}), json.dumps(props)))
    return records


def forecast_metadata(week: str = "2021-07-19", model_version: str = "1") -> dict:
    return {"period_start": week, "model": "test-lightgbm", "model_version": model_version, "model_run_id": "run",
            "data_fingerprint": "fp", "code_version": "test", "area": "test", "note": "test"}


@dataclass
class Service:
    client: object
    keys: dict[str, str]
    state: object

    def get(self, path: str, role: str | None = None, **kwargs):
        headers = {**kwargs.pop("headers", {}), **({"X-API-Key": self.keys[role]} if role else {})}
        return self.client.get(path, headers=headers, **kwargs)

    def post(self, path: str, role: str | None = None, **kwargs):
        headers = {**kwargs.pop("headers", {}), **({"X-API-Key": self.keys[role]} if role else {})}
        return self.client.post(path, headers=headers, **kwargs)


@pytest.fixture
def service(trained_area, tmp_path, monkeypatch):
    """The app in-process (lifespan run) on the trained synthetic area, an empty database, a key per role."""
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.auth import ROLES, create_key
    from hotspot.serving.settings import Settings

    # a private copy of the store: the report runs a test logs must not show in another test's reports
    monkeypatch.setenv("MLFLOW_TRACKING_URI", private_tracking_store(trained_area.tracking_uri, tmp_path))
    settings = Settings(config=trained_area.config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}",
                        warm_panel=False, cache_ttl_s=0, forecast_model="champion")  # auto: test_champion.py
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.hotspot
        keys = {role: create_key(state.engine, role, f"test {role}")[0] for role in ROLES}
        yield Service(client, keys, state)


def private_tracking_store(source_uri: str, folder: Path) -> str:
    """A private copy of the trained area's MLflow database (artifacts stay where they are), so the report and
    publication runs a test logs do not show in other tests' reports; returns its tracking URI."""
    import sqlite3

    source = sqlite3.connect(source_uri.removeprefix("sqlite:///"))
    target = sqlite3.connect(folder / "own-mlflow.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{folder / 'own-mlflow.db'}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`hotspot serve` as a real uvicorn subprocess on a free loopback port."""

    def __init__(self, config: Path, database_url: str, env: dict[str, str], cwd: Path, log_path: Path):
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        exe = Path(sys.executable).with_name("hotspot")
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(self.port),
                                      "--database-url", database_url],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd,
                                     env={**os.environ, **env})

    def wait_healthy(self, timeout_s: float = 120) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hotspot serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"hotspot serve not healthy after {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(15)
        self._log.close()


def log_report_run(cfg_path: Path, step: str, folder: str, stem: str, report: dict, out: Path) -> str:
    """Log a finished run as the backtest / audit steps do (tag step; JSON, HTML and a PNG under `folder/`)."""
    import mlflow

    from hotspot.features.config import load_config
    from hotspot.training import tracking

    out = out / folder
    out.mkdir(parents=True)
    (out / f"{stem}.json").write_text(json.dumps(report))
    (out / f"{stem}.html").write_text(f'<html><body><h1>{stem}</h1><img src="plot.png"></body></html>')
    (out / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    with tracking.step_run(load_config(cfg_path), step, "fp-report") as run:
        for path in out.iterdir():
            mlflow.log_artifact(str(path), folder)
    return run.info.run_id


SAMPLE_WEEKS = ("2019-12-23", "2019-12-30")  # published in this order: the second is the latest
SECOND_PRODUCT = "assault"  # the sample's product published beside the default (`all`); break-and-enter stays untrained


@dataclass
class MapService:
    url: str
    keys: dict[str, str]
    env: dict[str, str]
    folder: Path

    def get(self, path: str, role: str | None = None) -> httpx.Response:
        headers = {"X-API-Key": self.keys[role]} if role else {}
        return httpx.get(self.url + path, headers=headers, timeout=120)

    def post(self, path: str, role: str, body: dict) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"X-API-Key": self.keys[role]}, timeout=300)


def new_key(role: str, env: dict, cwd: Path) -> str:
    """A key made with `hotspot keys create` (printed once on stdout)."""
    proc = run_cli("keys", "create", "--role", role, "--name", f"test {role}", env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def sample_service(tmp_path_factory):
    """The bundled sample served by `hotspot serve` (real uvicorn), keys per role, with two products published: the
    default (`all`) for both SAMPLE_WEEKS through the API, and SECOND_PRODUCT for the first week with `hotspot
    publish --product` and the second through the API with `?product=`. break-and-enter has no model."""
    folder = tmp_path_factory.mktemp("sample_service")
    # the champion forecasts here (these tests follow each product's own model; auto: tests/training/test_champion.py)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "HOTSPOT_DATABASE_URL": f"sqlite:///{folder / 'hotspot.db'}", "HOTSPOT_FORECAST_MODEL": "champion"}
    for product in ("all", SECOND_PRODUCT):
        trained = run_cli("train", "--config", str(SAMPLE_CONFIG), "--product", product, env=env, cwd=folder)
        assert trained.returncode == 0, trained.stderr
    published = run_cli("publish", "--config", str(SAMPLE_CONFIG), "--product", SECOND_PRODUCT, "--week",
                        SAMPLE_WEEKS[0], "--model", "champion", env=env, cwd=folder)
    assert published.returncode == 0, published.stderr
    keys = {role: new_key(role, env, folder) for role in ("viewer", "auditor", "analyst", "public")}
    server = Server(SAMPLE_CONFIG, env["HOTSPOT_DATABASE_URL"], env, folder, folder / "serve.log")
    try:
        server.wait_healthy()
        service = MapService(server.url, keys, env, folder)
        for week in SAMPLE_WEEKS:
            made = service.post("/v1/forecasts", "analyst", {"week": week})
            assert made.status_code == 201, made.text
        made = service.post(f"/v1/forecasts?product={SECOND_PRODUCT}", "analyst", {"week": SAMPLE_WEEKS[1]})
        assert made.status_code == 201, made.text
        yield service
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's, driven by Playwright)."""
    if not CHROMIUM.exists():
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
