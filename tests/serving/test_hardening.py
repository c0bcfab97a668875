"""Nothing lost, nothing injected: HEAD answered as GET, chunked bodies capped like declared ones, strict request
bodies, security headers on every response, an OpenAPI spec as strict as the validation, and rate limits for the
public role. In-process, and against a real `hotspot serve` (uvicorn) where the transport matters."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re

import httpx
import pytest

from tests.serving.conftest import CHROMIUM, CHROMIUM_ARGS, Server, private_tracking_store, skip_or_fail
from tests.serving.test_api import publish


def _log_styled_report(cfg_path, out) -> None:
    """A backtest run whose accuracy page looks like the real ones: an inline <style> and a figure."""
    import mlflow

    from hotspot.features.config import load_config
    from hotspot.training import tracking

    out.mkdir(parents=True)
    (out / "accuracy.json").write_text(json.dumps({"models": {}}))
    (out / "accuracy.html").write_text('<!doctype html><html><head><style>body{font-family:sans-serif}</style></head>'
                                       '<body><h1>accuracy</h1><img src="plot.png" alt="plot"></body></html>')
    (out / "plot.png").write_bytes(base64.b64decode(  # a 1x1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    with tracking.step_run(load_config(cfg_path), "backtest", "fp-report"):
        for path in out.iterdir():
            mlflow.log_artifact(str(path), "backtest")


def _publish_once(service) -> str:
    created = publish(service)
    assert created.status_code == 201, created.text
    return created.json()["week"]


# --- HEAD -----------------------------------------------------------------------------------------------------------

def test_head_is_answered_as_get_without_a_body(service):
    _publish_once(service)
    for path, role in [("/health", None), ("/v1/forecasts/latest?top=3", "viewer"), ("/v1/forecasts", "viewer"),
                       ("/v1/forecasts/latest?top=2&format=csv", "viewer"), ("/map", None),
                       ("/v1/models", None), ("/v1/forecasts/2001-01-01", "viewer")]:
        headers = {"X-API-Key": service.keys[role]} if role else {}
        got = service.client.get(path, headers=headers)
        head = service.client.head(path, headers=headers)
        assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers.get("content-length") == str(len(got.content)), path
    assert service.get("/v1/forecasts/latest", "viewer").status_code == 200  # fast path still answers GET

    put = service.client.put("/v1/forecasts/latest")
    assert put.status_code == 405 and "HEAD" in put.headers["allow"]


def test_head_is_logged_as_head(service):
    _publish_once(service)
    assert service.client.head("/v1/forecasts/latest", headers={"X-API-Key": service.keys["viewer"]}).status_code == 200
    service.state.access.flush()
    from sqlalchemy import select

    from hotspot.serving.db import AccessLogRow

    with service.state.engine.connect() as conn:
        rows = conn.execute(select(AccessLogRow.__table__)).all()
    assert (service.keys["viewer"][:11], "HEAD", "/v1/forecasts/latest", 200) in {
        (r.key_id, r.method, r.path, r.status) for r in rows}


# --- request bodies -------------------------------------------------------------------------------------------------

def _chunks(body: bytes, size: int = 1000):
    for i in range(0, len(body), size):
        yield body[i:i + size]


def test_a_chunked_body_over_the_limit_is_413_like_a_declared_one(service):
    big = json.dumps({"week": "2019-12-30", "pad": "x" * 6000}).encode()
    headers = {"X-API-Key": service.keys["analyst"], "Content-Type": "application/json"}
    declared = service.client.post("/v1/forecasts", content=big, headers=headers)
    chunked = service.client.post("/v1/forecasts", content=_chunks(big), headers=headers)
    assert declared.status_code == chunked.status_code == 413
    assert chunked.json() == declared.json() == {"detail": "request body larger than 4096 bytes"}
    assert chunked.headers["content-type"] == "application/json"

    small = service.client.post("/v1/forecasts", content=_chunks(b'{"new_version": "yes"}', 5), headers=headers)
    assert small.status_code == 422, small.text  # a chunked body within the limit reaches validation intact


@pytest.mark.parametrize("body, field", [
    ({"new_version": "yes"}, "new_version"), ({"new_version": 1}, "new_version"),
    ({"new_version": "true"}, "new_version"),
])
def test_publish_booleans_are_not_coerced(service, body, field):
    refused = service.post("/v1/forecasts", "analyst", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["loc"] == ["body", field]
    assert service.get("/v1/forecasts", "viewer").json()["publications"] == []  # nothing was published


def test_a_week_that_is_no_period_start_is_422_naming_the_range(service):
    for week in ("2019-12-31", "1900-01-01", "2999-01-04"):
        refused = service.post("/v1/forecasts", "analyst", json={"week": week})
        assert refused.status_code == 422, (week, refused.text)
        assert refused.json()["errors"][0]["loc"] == ["body", "week"] and "period start" in refused.json()["detail"]


# --- security headers -----------------------------------------------------------------------------------------------

def _csp(response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    return {name: sources for name, *sources in (part.split() for part in policy.split(";") if part.strip())}


def _assert_locked_down(response, what: str) -> dict[str, list[str]]:
    h = response.headers
    assert h["x-content-type-options"] == "nosniff", what
    assert h["x-frame-options"] == "DENY", what
    assert h["referrer-policy"] == "no-referrer", what
    assert "server" not in h, what
    csp = _csp(response)
    assert csp["default-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"], (what, csp)
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], (what, csp)
    assert "'unsafe-inline'" not in csp.get("script-src", []) and "'unsafe-eval'" not in str(csp), (what, csp)
    return csp


def test_every_response_carries_the_security_headers(service, trained_area, tmp_path):
    week = _publish_once(service)
    _log_styled_report(trained_area.config, tmp_path / "backtest")
    service.state.reports.ttl_s = 0
    responses = {
        "geojson": service.get("/v1/forecasts/latest?top=1", "viewer"),
        "geojson again (fast path)": service.get("/v1/forecasts/latest?top=1", "viewer"),
        "csv": service.get(f"/v1/forecasts/{week}?format=csv", "viewer"),
        "json": service.get("/v1/forecasts", "viewer"),
        "report json": service.get("/v1/reports/accuracy", "auditor"),
        "report html": service.get("/v1/reports/accuracy?format=html", "auditor"),
        "401": service.get("/v1/forecasts"), "403": service.get("/v1/models", "viewer"),
        "404": service.get("/nowhere"), "405": service.client.delete("/v1/forecasts"),
        "413": service.post("/v1/forecasts", "analyst", content=b"{" + b" " * 5000 + b"}"),
        "422": service.get("/v1/forecasts/latest?top=0", "viewer"),
        "health": service.get("/health"), "static": service.get("/static/map.js"),
        "openapi": service.get("/openapi.json"), "redirect": service.client.get("/", follow_redirects=False),
    }
    for what, response in responses.items():
        csp = _assert_locked_down(response, what)
        assert "script-src" not in csp, (what, csp)  # default-src 'self': no inline script anywhere
    html = responses["report html"]
    assert html.status_code == 200 and 'src="data:image/png;base64,' in html.text and "<style>" in html.text
    csp = _csp(html)  # exactly what the report pages need: their <style> and their data: figures
    assert csp["img-src"] == ["'self'", "data:"] and csp["style-src"] == ["'self'", "'unsafe-inline'"]


def test_the_map_allows_its_own_inline_script_only(service):
    page = service.get("/map")
    csp = _assert_locked_down(page, "map")
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert len(inline) == 1 and "HOTSPOT_MAP" in inline[0]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert csp["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert csp["style-src"] == ["'self'"] and csp["img-src"] == ["'self'", "data:"]
    assert csp["connect-src"] == ["'self'"]


def test_the_map_may_load_the_configured_tiles(trained_area, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.headers import tile_source
    from hotspot.serving.settings import Settings

    assert tile_source("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png") == "https://*.tile.openstreetmap.org"
    assert tile_source("https://tiles.example.org:8443/{z}/{x}/{y}.png") == "https://tiles.example.org:8443"
    assert tile_source("https://a{s}.example.org/{z}/{x}/{y}.png") == "https:"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_area.tracking_uri)
    settings = Settings(config=trained_area.config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}",
                        warm_panel=False, map_tile_url="https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png")
    with TestClient(create_app(settings)) as client:
        csp = _csp(client.get("/map"))
    assert csp["img-src"] == ["'self'", "data:", "https://*.tile.openstreetmap.org"]


def test_the_api_docs_load_only_from_this_server(service):
    for path in ("/docs", "/redoc"):
        page = service.get(path)
        assert page.status_code == 200
        csp = _assert_locked_down(page, path)
        assert not any("http" in source for sources in csp.values() for source in sources), (path, csp)
        assert "'unsafe-inline'" not in csp["script-src"], (path, csp)
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and all(a.startswith("/static-docs/") for a in assets), (path, assets)
        for asset in assets:  # the bundled copies are there
            served = service.get(asset)
            assert served.status_code == 200 and len(served.content) > 1000, asset
        inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)  # Swagger UI's start-up script, by hash
        for script in inline:
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp["script-src"], (path, csp)
    assert b"cdn.redoc.ly" not in service.get("/static-docs/redoc.standalone.js").content
    assert "validatorUrl" in service.get("/docs").text  # no badge image from an outside validator


# --- OpenAPI spec ---------------------------------------------------------------------------------------------------

def test_the_spec_says_what_the_server_checks(service):
    spec = service.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/v1/forecasts/latest"]["get"]["parameters"]}
    pattern = re.compile(next(s["pattern"] for s in params["bbox"]["schema"]["anyOf"] if "pattern" in s))
    for ok in ("-79.42,43.64,-79.37,43.67", "-180,-90,180,90", "180.0,90.0,180,90", "0,0,0,0"):
        assert pattern.match(ok), ok
    for bad in ("-181,0,0,0", "0,-91,0,0", "0,0,180.5,0", "0,0,0,90.01", "999,0,0,0", "0,0,0"):
        assert not pattern.match(bad), bad
        assert service.get(f"/v1/forecasts/latest?bbox={bad}", "viewer").status_code == 422
    assert "min" in params["bbox"]["description"] and "422" in params["bbox"]["description"]

    body = spec["components"]["schemas"]["PublishRequest"]["properties"]
    week = next(s for s in body["week"]["anyOf"] if s.get("type") == "string")
    assert week["format"] == "date" and "period" in body["week"]["description"]
    assert "422" in body["week"]["description"]
    assert body["new_version"]["type"] == "boolean"

    area = {p["name"]: p for p in spec["paths"]["/v1/trends"]["get"]["parameters"]}["area"]
    assert area["schema"] == {"type": "string", "enum": ["Whole area"]}  # the synthetic area has no area units
    unknown = service.get("/v1/trends?area=Atlantis", "viewer")
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["query", "area"]

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                assert "Retry-After" in operation["responses"]["429"]["headers"], (method, path)


def test_area_names_come_from_the_configured_units(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    from hotspot.features.config import load_config
    from hotspot.serving.routers.trends import area_names
    from tests.conftest import write_config

    units = gpd.GeoDataFrame({"name": ["North", "South", "Empty"]},
                             geometry=[box(0, 1, 1, 2), box(0, 0, 1, 1), box(0, 0, 0, 0).buffer(0)], crs=4326)
    units.to_file(tmp_path / "units.geojson")
    config = write_config(tmp_path / "area", extra=f'[trends]\nareas = "{tmp_path / "units.geojson"}"')
    assert area_names(load_config(config)) == ["Whole area", "North", "South"]


# --- rate limits ----------------------------------------------------------------------------------------------------

@pytest.fixture
def limited_app(trained_area, tmp_path, monkeypatch):
    """An app whose public role may make 3 requests a minute per key and 5 per address."""
    from hotspot.serving.app import create_app
    from hotspot.serving.settings import Settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_area.tracking_uri)
    monkeypatch.setenv("HOTSPOT_RATE_LIMIT_PUBLIC_KEY", "3/minute")
    monkeypatch.setenv("HOTSPOT_RATE_LIMIT_PUBLIC_ADDRESS", "5/minute")
    settings = Settings(config=trained_area.config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}",
                        warm_panel=False, cache_ttl_s=0)
    return create_app(settings)


def test_public_keys_are_rate_limited_per_key_and_per_address(limited_app):
    from fastapi.testclient import TestClient

    from hotspot.serving.auth import create_key

    with TestClient(limited_app, client=("10.0.0.1", 4000)) as here, \
            TestClient(limited_app, client=("10.0.0.2", 4000)) as there:
        engine = limited_app.state.hotspot.engine
        public = [create_key(engine, "public", f"partner {i}")[0] for i in range(3)]
        viewer = create_key(engine, "viewer", "staff")[0]
        as_ = lambda key: {"X-API-Key": key}  # noqa: E731
        # /v1/models answers the public role 403 at once; what counts is that the request was made
        for _ in range(3):
            assert here.get("/v1/models", headers=as_(public[0])).status_code == 403
        refused = here.get("/v1/models", headers=as_(public[0]))
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/json"
        assert "per key" in refused.json()["detail"] and set(refused.json()) == {"detail"}
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert there.get("/v1/models", headers=as_(public[0])).status_code == 429  # the key, from anywhere

        assert here.get("/v1/models", headers=as_(public[1])).status_code == 403  # another key: 4th from here
        assert here.get("/v1/models", headers=as_(public[1])).status_code == 403  # 5th from here
        by_address = here.get("/v1/models", headers=as_(public[2]))  # a fresh key, but the 6th from this address
        assert by_address.status_code == 429 and "per address" in by_address.json()["detail"]
        assert "retry-after" in by_address.headers
        assert there.get("/v1/models", headers=as_(public[2])).status_code == 403  # another address may

        for _ in range(10):  # staff roles are not limited
            assert here.get("/v1/forecasts", headers=as_(viewer)).status_code == 200


def test_rate_limit_settings():
    from pydantic import ValidationError

    from hotspot.serving.rate_limit import RateLimiter
    from hotspot.serving.settings import Settings

    assert Settings().rate_limit_public_key == Settings().rate_limit_public_address == "600/minute"
    with pytest.raises(ValidationError, match="rate_limit_public_key"):
        Settings(rate_limit_public_key="lots")
    off = RateLimiter("0", "")
    assert all(off.check("public", "hs_x", "1.2.3.4") is None for _ in range(1000))
    two = RateLimiter("2/minute;3/hour", None)
    assert [two.check("public", "hs_x", None) is None for _ in range(3)] == [True, True, False]
    assert two.check("viewer", "hs_y", None) is None


# --- a real server ---------------------------------------------------------------------------------------------------

def _chunked_post(port: int, path: str, body: bytes, key: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=_chunks(body), encode_chunked=True,
                     headers={"X-API-Key": key, "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_under_uvicorn(trained_area, tmp_path, monkeypatch):
    """`hotspot serve`: no server banner, HEAD without a body, a chunked body over the limit refused with 413, the
    public role limited per address; and the map and a report page render in Chromium without a CSP violation."""
    from hotspot.serving.auth import create_key
    from hotspot.serving.db import create_schema, make_engine

    uri = private_tracking_store(trained_area.tracking_uri, tmp_path)  # the report run logged below stays here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    database_url = f"sqlite:///{tmp_path / 'hotspot.db'}"
    engine = make_engine(database_url)
    create_schema(engine)
    keys = {role: create_key(engine, role, role)[0] for role in ("viewer", "analyst", "public")}
    extra_public = create_key(engine, "public", "another")[0]
    engine.dispose()
    _log_styled_report(trained_area.config, tmp_path / "backtest")
    server = Server(trained_area.config, database_url,
                    {"MLFLOW_TRACKING_URI": uri, "HOTSPOT_RATE_LIMIT_PUBLIC_KEY": "0",
                     "HOTSPOT_RATE_LIMIT_PUBLIC_ADDRESS": "3/minute"}, tmp_path, tmp_path / "serve.log")
    try:
        server.wait_healthy()
        http_ = httpx.Client(base_url=server.url, timeout=120)
        assert http_.post("/v1/forecasts", json={}, headers={"X-API-Key": keys["analyst"]}).status_code == 201
        got = http_.get("/v1/forecasts/latest?top=5", headers={"X-API-Key": keys["viewer"]})
        head = http_.head("/v1/forecasts/latest?top=5", headers={"X-API-Key": keys["viewer"]})
        assert got.status_code == head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        for response in (got, head, http_.get("/health"), http_.get("/nowhere")):
            assert "server" not in response.headers and response.headers["x-frame-options"] == "DENY"

        status, headers, body = _chunked_post(server.port, "/v1/forecasts", b'{"week": "' + b"1" * 6000 + b'"}',
                                              keys["analyst"])
        assert status == 413 and json.loads(body) == {"detail": "request body larger than 4096 bytes"}, body
        assert "server" not in {k.lower() for k in headers}
        status, _, body = _chunked_post(server.port, "/v1/forecasts", b'{"new_version": "yes"}', keys["analyst"])
        assert status == 422 and b"new_version" in body

        public = {"X-API-Key": keys["public"]}
        assert [http_.get("/v1/models", headers=public).status_code for _ in range(3)] == [403] * 3
        refused = http_.get("/v1/models", headers={"X-API-Key": extra_public})  # another key, same address
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        staff = http_.get("/v1/forecasts", headers={"X-API-Key": keys["viewer"]})
        assert staff.status_code == 200  # staff roles are not limited

        _check_pages_in_chromium(server.url, keys["viewer"], keys["analyst"])
    finally:
        server.stop()


def _check_pages_in_chromium(url: str, viewer_key: str, analyst_key: str) -> None:
    if not CHROMIUM.exists():
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{url}/map")
            page.fill("#api-key", viewer_key)
            page.click("#key-submit")
            page.wait_for_selector("path.hotspot-cell", timeout=30_000)
            page.locator("path.rank-1").click()
            page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
            context.set_extra_http_headers({"X-API-Key": analyst_key})
            report = page.goto(f"{url}/v1/reports/accuracy?format=html")
            assert report.status == 200, (report.status, page.content()[:2000])
            page.wait_for_selector("h1")
            assert page.evaluate("document.querySelector('img').naturalWidth") == 1  # the data: figure shows
            assert page.evaluate("getComputedStyle(document.body).fontFamily") == "sans-serif"  # the <style> applies
            violations = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
            assert not violations, violations
        finally:
            browser.close()
