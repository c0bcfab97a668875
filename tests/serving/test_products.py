"""Forecast products in the service, as their users meet them: each product's publications, briefing, reports and
model behind `?product=` (the default product without it, so old clients are unaffected), a clear 422 for a product
the area lacks, the map's product picker in headless Chromium, and a store made before products served on."""

from __future__ import annotations

import json

import pytest

from tests.serving.conftest import SAMPLE_WEEKS, SECOND_PRODUCT

pytestmark = pytest.mark.slow

PRODUCTS = ["all", "assault", "break-and-enter"]  # configs/toronto-sample.toml, the default first


def test_each_product_serves_its_own_publications_and_the_default_needs_no_parameter(sample_service):
    get = sample_service.get
    plain = get("/v1/forecasts/latest?top=20", "viewer")
    default = get("/v1/forecasts/latest?top=20&product=all", "viewer")
    second = get(f"/v1/forecasts/latest?top=20&product={SECOND_PRODUCT}", "viewer")
    assert plain.status_code == default.status_code == second.status_code == 200
    assert plain.content == default.content  # no parameter = the default product, byte for byte
    meta, other = plain.json()["metadata"], second.json()["metadata"]
    assert (meta["product"], meta["product_title"], meta["model"]) == ("all", "All offences", "toronto-sample-all")
    assert (other["product"], other["product_title"], other["model"]) == ("assault", "Assault",
                                                                          "toronto-sample-assault")
    assert meta["period_start"] == other["period_start"] == SAMPLE_WEEKS[1]
    assert other["expected_incidents"] < meta["expected_incidents"]  # assaults are a share of all offences
    assert other["publication_id"] != meta["publication_id"]

    listing = get(f"/v1/forecasts?product={SECOND_PRODUCT}", "viewer").json()
    assert (listing["product"], listing["product_title"]) == ("assault", "Assault")
    assert [(p["week"], p["version"], p["product"]) for p in listing["publications"]] == [
        (SAMPLE_WEEKS[1], 1, "assault"), (SAMPLE_WEEKS[0], 1, "assault")]
    assert listing["publications"][1]["published_by"] == "cli"  # `hotspot publish --product assault`
    assert listing["publications"][0]["url"] == f"/v1/forecasts/{SAMPLE_WEEKS[1]}?version=1&product=assault"
    assert get(listing["publications"][0]["url"], "viewer").json()["metadata"]["product"] == "assault"
    assert get("/v1/forecasts", "viewer").json()["publications"][0]["url"] == \
        f"/v1/forecasts/{SAMPLE_WEEKS[1]}?version=1"  # the default product's links are as before
    week = get(f"/v1/forecasts/{SAMPLE_WEEKS[0]}?product={SECOND_PRODUCT}&format=csv&top=3", "viewer")
    assert week.status_code == 200 and week.headers["x-hotspot-model"] == "toronto-sample-assault"

    # versions per (product, week): the week is taken for assault, and a new version of it is assault's own
    again = sample_service.post(f"/v1/forecasts?product={SECOND_PRODUCT}", "analyst", {"week": SAMPLE_WEEKS[1]})
    assert again.status_code == 409 and "assault" in again.json()["detail"]


def test_a_product_the_area_lacks_gets_422_naming_the_products_there_are(sample_service):
    for path in ("/v1/forecasts/latest", f"/v1/forecasts/{SAMPLE_WEEKS[0]}", "/v1/forecasts", "/v1/briefing",
                 "/v1/models", "/v1/reports/accuracy", "/v1/reports"):
        role = "auditor" if "reports" in path or "models" in path else "viewer"
        refused = sample_service.get(f"{path}?product=robbery", role)
        assert refused.status_code == 422, (path, refused.text)
        assert "no product named 'robbery'" in refused.json()["detail"] and ", ".join(PRODUCTS) in \
            refused.json()["detail"], path
    assert sample_service.get("/v1/forecasts/latest?product=robbery").status_code == 401  # the key comes first

    # a product of the area with no model and nothing published: says which product and what to run
    missing = sample_service.get("/v1/forecasts/latest?product=break-and-enter", "viewer")
    assert missing.status_code == 404 and "Break and enter" in missing.json()["detail"]
    untrained = sample_service.post("/v1/forecasts?product=break-and-enter", "analyst", {})
    assert untrained.status_code == 503 and "toronto-sample-break-and-enter" in untrained.json()["detail"]
    models = sample_service.get("/v1/models?product=break-and-enter", "auditor")
    assert models.status_code == 404 and "--product break-and-enter" in models.json()["detail"]


def test_products_are_listed_with_their_titles_and_in_the_api_docs(sample_service):
    areas = sample_service.get("/v1/areas", "viewer").json()
    assert [(p["name"], p["title"], p["offenses"], p["default"]) for p in areas["products"]] == [
        ("all", "All offences", None, True), ("assault", "Assault", ["Assault"], False),
        ("break-and-enter", "Break and enter", ["Break and Enter"], False)]
    assert [m["name"] for m in (sample_service.get("/v1/models", "auditor").json(),
                                sample_service.get("/v1/models?product=assault", "auditor").json())] == [
        "toronto-sample-all", "toronto-sample-assault"]
    spec = sample_service.get("/openapi.json").json()
    for path, method in (("/v1/forecasts/latest", "get"), ("/v1/forecasts/{week}", "get"), ("/v1/forecasts", "get"),
                         ("/v1/forecasts", "post"), ("/v1/briefing", "get"), ("/v1/reports/accuracy", "get"),
                         ("/v1/reports/fairness", "get"), ("/v1/reports", "get"), ("/v1/models", "get")):
        param = next(p for p in spec["paths"][path][method]["parameters"] if p["name"] == "product")
        assert param["schema"]["enum"] == PRODUCTS and "default: the first" in param["description"], path


def test_the_briefing_names_its_product_and_the_page_picks_another(sample_service, browser):
    html = sample_service.get(f"/v1/briefing?format=html&product={SECOND_PRODUCT}", "viewer")
    assert html.status_code == 200, html.text
    assert "<title>Weekly briefing: Assault · toronto-sample</title>" in html.text
    assert "Other forecast products for toronto-sample: All offences, Break and enter." in html.text
    assert 'filename="briefing-toronto-sample-assault-' in html.headers["content-disposition"]

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(f"{sample_service.url}/reports/briefing?product={SECOND_PRODUCT}")
        page.fill("#api-key", sample_service.keys["viewer"])
        page.click("#key-submit")
        page.wait_for_selector("body[data-loaded='true']", state="attached", timeout=120_000)
        assert page.locator("#product").input_value() == SECOND_PRODUCT
        assert "Weekly briefing: Assault · toronto-sample" in page.locator("#report").get_attribute("srcdoc")
        assert [o.strip() for o in page.locator("#product option").all_inner_texts()] == [
            "All offences", "Assault", "Break and enter"]
    finally:
        page.close()


def _shown(page) -> list[tuple[str, str]]:
    """The map's top list as (place, expected) pairs."""
    return [(li.locator(".place").inner_text(), li.locator(".expected").inner_text())
            for li in page.locator("#cells li").all()[:15]]


def _expected(service, product: str) -> list[tuple[str, str]]:
    features = service.get(f"/v1/forecasts/latest?top=15&product={product}", "viewer").json()["features"]
    return [(f["properties"]["place"], f["properties"]["risk"]) for f in features]


def test_the_map_picker_switches_product_and_keeps_it_in_the_url(sample_service, browser):
    page = browser.new_page(viewport={"width": 1300, "height": 850})
    try:
        page.goto(f"{sample_service.url}/map?product={SECOND_PRODUCT}")  # a link to the assault view
        page.fill("#api-key", sample_service.keys["viewer"])
        page.click("#key-submit")
        page.wait_for_selector("path.hotspot-cell", timeout=30_000)
        assert page.locator("#product").input_value() == SECOND_PRODUCT
        assert "Assault" in page.locator("h1").inner_text() and "Assault" in page.locator("#legend h3").inner_text()
        assault = _shown(page)
        assert [p for p, _ in assault] == [p for p, _ in _expected(sample_service, SECOND_PRODUCT)]
        assert page.locator("#briefing-link").get_attribute("href") == f"/reports/briefing?product={SECOND_PRODUCT}"

        page.select_option("#product", "all")
        # (selectors, not wait_for_function: the page's Content-Security-Policy refuses evaluated strings)
        page.wait_for_selector("body[data-product='all'][data-cells='100']", state="attached", timeout=30_000)
        page.wait_for_selector("#legend h3:text-matches('^All offences')", timeout=30_000)
        assert "All offences" in page.locator("h1").inner_text() and "Assault" not in page.locator("h1").inner_text()
        everything = _shown(page)
        assert [p for p, _ in everything] == [p for p, _ in _expected(sample_service, "all")]
        assert everything != assault
        assert "product=" not in page.url  # the default product's address is the plain /map
        assert page.locator("#week option").count() == 1 + len(SAMPLE_WEEKS)

        page.select_option("#product", "break-and-enter")  # nothing published: says so, and how to publish
        message = page.locator("#message")
        message.wait_for(state="visible", timeout=30_000)
        assert "No forecast published yet" in message.inner_text() and "Break and enter" in message.inner_text()
        assert "--product break-and-enter" in page.locator("#message-command").inner_text()
        assert page.locator("path.hotspot-cell").count() == 0  # no other product's cells under its title
        assert page.url.endswith("/map?product=break-and-enter")
    finally:
        page.close()


def test_a_store_made_before_products_is_served_as_the_default_product(trained_area, tmp_path, monkeypatch):
    """A publications database written before products: the service upgrades it at start-up and serves its rows as
    the area's (only, implicit) product, unchanged."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from hotspot.features.config import load_config
    from hotspot.serving.app import create_app
    from hotspot.serving.auth import create_key
    from hotspot.serving.db import PublicationCellRow, make_engine
    from hotspot.serving.settings import Settings
    from tests.serving.conftest import make_cells
    from tests.serving.test_store import OLD_PUBLICATIONS

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_area.tracking_uri)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(OLD_PUBLICATIONS.format(id_type="INTEGER")))
        conn.execute(text("INSERT INTO publications (area, week, version, model_name, model_version, created_at, "
                          "n_cells, metadata_json) VALUES ('synthetic', '2021-07-19', 1, 'synthetic-lightgbm', '1', "
                          ":at, 4, :meta)"), {"at": "2021-07-20 10:00:00",
                                              "meta": json.dumps({"period_start": "2021-07-19", "cells": 4})})
    PublicationCellRow.__table__.create(engine)
    with engine.begin() as conn:
        conn.execute(PublicationCellRow.__table__.insert(), [{"publication_id": 1, **c.__dict__}
                                                             for c in make_cells(4, week="2021-07-19")])
    engine.dispose()

    implicit = load_config(trained_area.config).product.name
    app = create_app(Settings(config=trained_area.config, database_url=url, warm_panel=False))
    with TestClient(app) as client:
        key = create_key(app.state.hotspot.engine, "viewer")[0]
        latest = client.get("/v1/forecasts/latest", headers={"X-API-Key": key})
        assert latest.status_code == 200 and latest.headers["x-hotspot-week"] == "2021-07-19"
        assert len(latest.json()["features"]) == 4
        same = client.get(f"/v1/forecasts/2021-07-19?product={implicit}", headers={"X-API-Key": key})
        assert same.content == latest.content
        listing = client.get("/v1/forecasts", headers={"X-API-Key": key}).json()
        assert [(p["week"], p["product"], p["url"]) for p in listing["publications"]] == [
            ("2021-07-19", implicit, "/v1/forecasts/2021-07-19?version=1")]


def test_reports_are_found_per_product_by_the_run_tag_and_untagged_runs_are_the_defaults(tmp_path):
    """A report run tagged product=assault is assault's; one made before products (no tag) is the default
    product's; no other product sees either."""
    import mlflow

    from hotspot.features.config import load_config
    from hotspot.serving.artifacts import ReportSource
    from hotspot.training import tracking
    from tests.conftest import SAMPLE_CONFIG
    from tests.serving.conftest import log_report_run

    base = load_config(SAMPLE_CONFIG)
    untagged = log_report_run(SAMPLE_CONFIG, "backtest", "backtest", "accuracy", {"models": {}}, tmp_path / "old")
    mlflow.MlflowClient(tracking.tracking_uri()).delete_tag(untagged, "product")  # as runs made before products
    assault_cfg = base.for_product("assault")
    (tmp_path / "new" / "backtest").mkdir(parents=True)
    (tmp_path / "new" / "backtest" / "accuracy.json").write_text(json.dumps({"models": {"assault": 1}}))
    with tracking.step_run(assault_cfg, "backtest", "fp"):
        mlflow.log_artifact(str(tmp_path / "new" / "backtest" / "accuracy.json"), "backtest")
        assault_run = mlflow.active_run().info.run_id

    sources = {name: ReportSource(base.for_product(name), ttl_s=0, default_product=name == "all")
               for name in PRODUCTS}
    found = {name: source.latest("accuracy") for name, source in sources.items()}
    assert found["all"].run_id == untagged and found["assault"].run_id == assault_run
    assert found["break-and-enter"] is None
    assert "--product break-and-enter" in sources["break-and-enter"].missing_message("accuracy")
