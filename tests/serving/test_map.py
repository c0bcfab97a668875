"""The command-staff map as a commander meets it: the bundled sample trained once, `hotspot serve` (real uvicorn) with
two published weeks, and the page opened in headless Chromium (Playwright driving Debian's chromium): the study-area
outline, area names, a legend of risk classes, the top list by place name, zoom on click, cells new since last week,
and the full-width messages for a refused key and for nothing published. Plus the /v1/areas route it reads."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SAMPLE_CONFIG
from tests.serving.conftest import SAMPLE_WEEKS as WEEKS
from tests.serving.conftest import MapService, Server, new_key

pytestmark = pytest.mark.slow


def _open_map(browser, url: str, key: str, size=(1400, 900)):
    """The map page after the key dialog; also returns the list of requests that left the server."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:")) else None)
    page.goto(f"{url}/map")
    page.fill("#api-key", key)
    page.click("#key-submit")
    return page, outside


def _areas(service: MapService) -> dict:
    return service.get("/v1/areas", "viewer").json()


def test_areas_route_needs_a_viewer_key_and_gives_the_outline_and_named_areas(sample_service):
    assert sample_service.get("/v1/areas").status_code == 401
    refused = sample_service.get("/v1/areas", "public")
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    response = sample_service.get("/v1/areas", "viewer")
    assert response.status_code == 200 and response.headers["content-type"] == "application/geo+json"
    areas = response.json()
    kinds = [f["properties"]["kind"] for f in areas["features"]]
    assert kinds[0] == "outline" and kinds.count("outline") == 1 and "Neighbourhood" in areas["origin"]
    named = {f["properties"]["name"]: f for f in areas["features"][1:]}
    assert len(named) == len(kinds) - 1 > 20 and {"Bay Street Corridor", "Moss Park"} <= set(named)
    cells = sample_service.get("/v1/forecasts/latest?top=1", "viewer").json()["metadata"]["cells"]
    assert sum(f["properties"]["n_cells"] for f in named.values()) == cells  # every cell named exactly once
    top = sample_service.get("/v1/forecasts/latest?top=20", "viewer").json()["features"]
    assert {f["properties"]["place"] for f in top} <= set(named)  # the list's place names are the map's areas
    outline = areas["features"][0]["geometry"]
    ring = outline["coordinates"][0] if outline["type"] == "Polygon" else outline["coordinates"][0][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    for feature in named.values():  # every label point lies within the outline's extent (Toronto, WGS84)
        lon, lat = feature["properties"]["label"]
        assert min(lons) <= lon <= max(lons) and min(lats) <= lat <= max(lats) and -80 < lon < -79 < 43 < lat < 44
    spec = sample_service.get("/openapi.json").json()["paths"]["/v1/areas"]["get"]
    assert {"200", "401", "403"} <= set(spec["responses"])


def test_map_shows_outline_area_names_legend_and_the_list_by_place(sample_service, browser):
    latest = sample_service.get("/v1/forecasts/latest?top=100", "viewer").json()
    previous = sample_service.get(f"/v1/forecasts/{WEEKS[0]}?top=100", "viewer").json()
    areas = _areas(sample_service)
    page, outside = _open_map(browser, sample_service.url, sample_service.keys["viewer"])
    try:
        page.wait_for_selector("path.hotspot-cell", timeout=30_000)
        page.wait_for_selector("path.study-outline", timeout=30_000)
        page.wait_for_function("document.body.dataset.fitted === 'true'", timeout=30_000)
        assert page.locator("path.hotspot-cell").count() == 100
        assert page.locator("path.named-area").count() == len(areas["features"]) - 1

        # area names: those holding the top cells, readable (none overlapping another)
        shown = page.evaluate("""Array.from(document.querySelectorAll('.area-label:not(.hidden)'), function (n) {
            var r = n.getBoundingClientRect(); return [n.textContent, r.left, r.top, r.right, r.bottom]; })""")
        names = [name for name, *_ in shown]
        top = [f["properties"] for f in latest["features"]]
        assert top[0]["place"] in names and len(names) >= 5
        for i, (name_a, *a) in enumerate(shown):
            for name_b, *b in shown[i + 1:]:
                overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                assert not overlap, f"area names overlap: {name_a} {a}, {name_b} {b}"

        # the legend: what risk means, classes with the expected-incidents range of each
        legend = page.locator("#legend")
        assert legend.is_visible()
        text = legend.inner_text()
        assert "expected recorded incidents" in text and "policing data" in text
        rows = [row.strip() for row in page.locator("#legend tr.legend-class").all_inner_texts()]
        assert rows[0].startswith("top 0.5%") and len(rows) >= 3
        assert f"{top[0]['risk']:.1f}" in rows[0]  # the top class reaches the top cell's expected count

        # the list by place name, with the main reason on the line below
        first = page.locator("#cells li").first
        assert first.locator(".place").inner_text() == top[0]["place"]
        assert first.locator(".reason").inner_text() == top[0]["reasons"][0]
        assert f"{top[0]['risk']:.1f} expected" in first.inner_text()
        assert not re.search(r"\b\d{8,}\b", page.locator("#cells").inner_text()), "cell ids in the list"

        # cells new in the top 100 since the week before, marked in the list and on the map
        new = {f["properties"]["cell_id"] for f in latest["features"]} - {
            f["properties"]["cell_id"] for f in previous["features"]}
        assert page.locator("#cells li.new").count() == len(new) == page.locator("path.new-cell").count()
        assert f"week of {WEEKS[0]}" in page.locator("#list-compare").inner_text()
        assert f"{len(new)} of these 100" in page.locator("#list-compare").inner_text()
    finally:
        page.close()
    assert not outside, f"the map fetched from outside the server: {outside}"


def _view(page) -> tuple[float, float, float]:
    zoom, center = page.evaluate("[document.body.dataset.zoom, document.body.dataset.center]")
    lat, lon = (float(v) for v in center.split(","))
    return float(zoom), lat, lon


def test_a_click_or_enter_on_the_list_zooms_to_the_cell_and_opens_its_popup(sample_service, browser):
    top = sample_service.get("/v1/forecasts/latest?top=100", "viewer").json()["features"]
    page, _ = _open_map(browser, sample_service.url, sample_service.keys["viewer"], size=(800, 1000))
    try:
        page.wait_for_selector("path.hotspot-cell", timeout=30_000)
        page.wait_for_function("document.body.dataset.fitted === 'true'", timeout=30_000)
        before = _view(page)
        assert page.locator("#legend").is_visible()  # above the list on a narrow screen too
        page.locator("#cells li[data-rank='3'] button").click()
        popup = page.locator(".leaflet-popup-content")
        popup.wait_for(timeout=10_000)
        third = top[2]["properties"]
        zoom, lat, lon = _view(page)
        assert zoom > before[0] and zoom >= 15
        assert abs(lat - third["lat"]) < 0.002 and abs(lon - third["lon"]) < 0.002  # centred on that cell
        assert popup.inner_text().startswith(f"#3 · {third['place']}")
        assert page.locator(".leaflet-popup-content .reasons li").all_inner_texts() == third["reasons"]

        page.locator("#cells li[data-rank='40'] button").focus()
        page.keyboard.press("Enter")
        fortieth = top[39]["properties"]
        page.wait_for_function(f"document.body.dataset.center !== '{lat:.5f},{lon:.5f}'")
        _, lat, lon = _view(page)
        assert abs(lat - fortieth["lat"]) < 0.002 and abs(lon - fortieth["lon"]) < 0.002
        opened = page.locator(".leaflet-popup-content", has_text="#40 ·")
        assert opened.inner_text().startswith(f"#40 · {fortieth['place']}")
    finally:
        page.close()


def test_a_refused_key_gets_a_full_width_message(sample_service, browser):
    page, _ = _open_map(browser, sample_service.url, "hs_" + "x" * 40)
    try:
        message = page.locator("#message")
        message.wait_for(state="visible", timeout=30_000)
        assert "API key refused" in message.inner_text()
        assert "hotspot keys create --role viewer" in message.inner_text()
        box, width = message.bounding_box(), page.viewport_size["width"]
        assert box["width"] >= 0.95 * width and box["height"] > 80
        assert page.locator("path.hotspot-cell").count() == 0
        assert page.evaluate("sessionStorage.getItem('hotspot.apiKey')") is None  # asked again next time
        page.locator("#message-key").click()
        assert page.locator("#key-dialog").is_visible()
        page.fill("#api-key", sample_service.keys["viewer"])
        page.click("#key-submit")
        page.wait_for_selector("path.hotspot-cell", timeout=30_000)
        assert not message.is_visible()
    finally:
        page.close()
    page, _ = _open_map(browser, sample_service.url, sample_service.keys["public"])
    try:
        message = page.locator("#message")
        message.wait_for(state="visible", timeout=30_000)
        assert "may not read forecasts" in message.inner_text() and "viewer" in message.inner_text()
    finally:
        page.close()


def test_nothing_published_says_how_to_publish(sample_service, browser):
    env = {**sample_service.env, "HOTSPOT_DATABASE_URL": f"sqlite:///{sample_service.folder / 'empty.db'}",
           "HOTSPOT_WARM_PANEL": "false"}
    key = new_key("viewer", env, sample_service.folder)
    server = Server(SAMPLE_CONFIG, env["HOTSPOT_DATABASE_URL"], env, sample_service.folder,
                    sample_service.folder / "empty.log")
    try:
        server.wait_healthy()
        page, _ = _open_map(browser, server.url, key)
        message = page.locator("#message")
        message.wait_for(state="visible", timeout=30_000)
        text = message.inner_text()
        assert "No forecast published yet" in text and "toronto-sample" in text
        assert "hotspot publish -c" in page.locator("#message-command").inner_text()
        page.close()
    finally:
        server.stop()


def test_the_tile_layer_and_its_attribution_come_only_from_settings(tmp_path):
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.settings import Settings

    def map_config(**tiles) -> tuple[dict, str]:
        settings = Settings(config=None, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}", **tiles)
        with TestClient(create_app(settings)) as client:
            page = client.get("/map")
        script = re.search(r"<script>window.HOTSPOT_MAP = (.*?);</script>", page.text, re.S).group(1)
        return json.loads(script), page.headers["content-security-policy"]

    config, csp = map_config()
    assert config["tiles"] is None and config["tileAttribution"] is None and "img-src 'self' data:;" in csp
    config, csp = map_config(map_tile_url="https://tiles.example.org/{z}/{x}/{y}.png",
                             map_tile_attribution="© Example <b>Maps</b>")
    assert config["tileAttribution"] == "© Example <b>Maps</b>"  # shown as text by map.js, never as HTML
    assert "img-src 'self' data: https://tiles.example.org;" in csp
    config, _ = map_config(map_tile_attribution="© Example")  # an attribution without tiles shows nothing
    assert config["tileAttribution"] is None


@pytest.mark.parametrize("prefix", ["HOTSPOT_MAP_TILE", "HOTSPOT_TILE"])
def test_the_tile_settings_read_both_environment_names(prefix, monkeypatch, tmp_path):
    from hotspot.serving.settings import Settings

    monkeypatch.setenv(f"{prefix}_URL", "https://tiles.example.org/{z}/{x}/{y}.png")
    monkeypatch.setenv(f"{prefix}_ATTRIBUTION", "© Example")
    settings = Settings(config=None, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}")
    assert settings.map_tile_url == "https://tiles.example.org/{z}/{x}/{y}.png"
    assert settings.map_tile_attribution == "© Example"
