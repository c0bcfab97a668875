"""End to end on the bundled sample, as people use it: train twice, promote, backtest, make keys, run `hotspot serve`
(real uvicorn), publish as an analyst, read with each role, follow a champion change, and open the map in headless
Chromium (Playwright driving Debian's chromium) to check that cells render and a click shows their reasons."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import SAMPLE_CONFIG, run_cli
from tests.serving.conftest import CHROMIUM, CHROMIUM_ARGS, Server, skip_or_fail

pytestmark = pytest.mark.slow


def _ok(proc, *codes: int):
    assert proc.returncode in (codes or (0,)), proc.stdout + proc.stderr
    return proc


def _create_key(role: str, env: dict) -> str:
    proc = _ok(run_cli("keys", "create", "--role", role, "--name", f"e2e {role}", env=env))
    key = proc.stdout.strip()
    assert key.startswith("hs_") and len(key) > 40 and key[:11] in proc.stderr
    return key


def test_train_promote_publish_read_and_map(tmp_path):
    cfg = str(SAMPLE_CONFIG)
    # the service forecasts with the champion here (its moves are what this test follows; auto: test_champion.py)
    env = {"HOTSPOT_DATABASE_URL": f"sqlite:///{tmp_path / 'hotspot.db'}", "HOTSPOT_FORECAST_MODEL": "champion"}

    assert "v1" in _ok(run_cli("train", "--config", cfg)).stdout
    assert "v2" in _ok(run_cli("train", "--config", cfg)).stdout
    promoted = _ok(run_cli("promote", "--config", cfg, "--version", "2", "--weeks", "1"), 0, 1)
    champion = "2" if promoted.returncode == 0 else "1"  # identical data: a tie is refused, and that is fine
    _ok(run_cli("backtest", "--config", cfg, "--weeks", "1", "--model", "lightgbm,naive_4w",
                "--out", str(tmp_path / "backtest")))

    keys = {role: _create_key(role, env) for role in ("viewer", "auditor", "analyst")}
    assert _ok(run_cli("keys", "create", "--role", "boss", env=env), 2).stderr.startswith("error:")
    listed = _ok(run_cli("keys", "list", env=env)).stdout
    assert all(k[:11] in listed and k not in listed for k in keys.values())

    server = Server(SAMPLE_CONFIG, env["HOTSPOT_DATABASE_URL"], env, tmp_path, tmp_path / "serve.log")
    try:
        server.wait_healthy()
        http = httpx.Client(base_url=server.url, timeout=120)
        as_ = lambda role: {"X-API-Key": keys[role]}  # noqa: E731

        assert http.get("/ready").status_code == 503  # no forecast published yet

        # publish as analyst; viewers and auditors may not
        assert http.post("/v1/forecasts", json={}, headers=as_("viewer")).status_code == 403
        assert http.post("/v1/forecasts", json={}, headers=as_("auditor")).status_code == 403
        created = http.post("/v1/forecasts", json={}, headers=as_("analyst"))
        assert created.status_code == 201, created.text
        pub = created.json()
        assert pub["week"] == "2019-12-30" and pub["model_version"] == champion and pub["version"] == 1
        ready = http.get("/ready").json()
        assert ready["ready"] and ready["champion"]["version"] == champion

        # read with each role
        for role in ("viewer", "auditor", "analyst"):
            fc = http.get("/v1/forecasts/latest?top=10", headers=as_(role))
            assert fc.status_code == 200 and fc.headers["content-type"] == "application/geo+json"
            meta = fc.json()["metadata"]
            assert (meta["model_version"], meta["data_fingerprint"]) == (champion, pub["data_fingerprint"])
            assert meta["created_at"] and meta["returned_cells"] == 10
        top = http.get("/v1/forecasts/2019-12-30?top=1", headers=as_("viewer")).json()["features"][0]["properties"]
        assert top["rank"] == 1 and top["reasons"], "the top cell should come with its reasons"
        assert http.get("/v1/forecasts/latest?top=5&format=csv", headers=as_("viewer")).text.count("\n") == 6

        accuracy = http.get("/v1/reports/accuracy", headers=as_("auditor"))
        assert accuracy.status_code == 200 and "lightgbm" in accuracy.json()["report"]["models"]
        page = http.get("/v1/reports/accuracy?format=html", headers=as_("auditor"))
        assert page.headers["content-type"].startswith("text/html") and "data:image/png;base64," in page.text
        models = http.get("/v1/models", headers=as_("auditor")).json()
        assert models["champion"] == champion and [v["version"] for v in models["versions"]] == ["2", "1"]

        # 401 and 403 exactly as specified
        assert http.get("/v1/forecasts/latest").status_code == 401
        assert http.get("/v1/forecasts/latest", headers={"X-API-Key": "hs_wrong"}).status_code == 401
        assert http.get("/v1/reports/accuracy", headers=as_("viewer")).status_code == 403
        assert http.get("/v1/reports/fairness", headers=as_("viewer")).status_code == 403
        assert http.get("/v1/models", headers=as_("viewer")).status_code == 403
        assert http.get("/v1/reports/fairness", headers=as_("auditor")).status_code == 404  # no audit logged here

        # the champion moves: the next publication (a new version of the week) uses it, without a restart
        other = "1" if champion == "2" else "2"
        _ok(run_cli("rollback", "--config", cfg, "--to", other))
        assert http.post("/v1/forecasts", json={}, headers=as_("analyst")).status_code == 409
        again = http.post("/v1/forecasts", json={"new_version": True}, headers=as_("analyst"))
        assert again.status_code == 201 and again.json()["model_version"] == other and again.json()["version"] == 2
        latest = http.get("/v1/forecasts/latest?top=1", headers=as_("viewer"))
        assert latest.headers["x-hotspot-publication-version"] == "2"
        assert latest.headers["x-hotspot-model-version"] == other

        _check_map_in_chromium(server.url, keys["viewer"], http, as_("viewer"))

        # a revoked key stops working (the server reuses a key look-up for at most HOTSPOT_CACHE_TTL_S = 1 s)
        _ok(run_cli("keys", "revoke", keys["viewer"][:11], env=env))
        deadline = time.monotonic() + 5
        while http.get("/v1/forecasts", headers=as_("viewer")).status_code != 401 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert http.get("/v1/forecasts", headers=as_("viewer")).status_code == 401
    finally:
        server.stop()
    log = server.log()
    assert '"role": "analyst", "method": "POST", "path": "/v1/forecasts", "status": 201' in log
    assert not any(key in log for key in keys.values())


def _check_map_in_chromium(url: str, viewer_key: str, http: httpx.Client, headers: dict) -> None:
    if not CHROMIUM.exists():
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    expected = http.get("/v1/forecasts/latest?top=100", headers=headers).json()["features"]
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:")) else None)
            page.goto(f"{url}/map")
            page.fill("#api-key", viewer_key)
            page.click("#key-submit")
            page.wait_for_selector("path.hotspot-cell", timeout=30_000)
            assert page.locator("path.hotspot-cell").count() == len(expected) == 100
            assert page.locator("#cells li").count() == 100
            assert "2019-12-30" in page.locator("#week").inner_text()  # the week selector lists the publication
            page.locator("path.rank-1").click()
            popup = page.locator(".leaflet-popup-content")
            popup.wait_for(timeout=10_000)
            text = popup.inner_text()
            top = expected[0]["properties"]
            assert text.startswith(f"#1 · {top['place']}") and f"cell {top['cell_id']}" in text
            shown = page.locator(".leaflet-popup-content .reasons li").all_inner_texts()
            assert shown == top["reasons"] and shown
        finally:
            browser.close()
    assert not outside, f"the map fetched from outside the server: {outside}"
