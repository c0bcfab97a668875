"""Reports in the browser and the offline API docs.

In process: the index of reports per model version (`GET /v1/reports`), `?version=` on the report routes, the trends
as an HTML page, and the report pages' shells (no data, a strict policy). End to end (real `hotspot serve`, headless
Chromium via Playwright): the key dialog opens the index and a report with its figures, a refused key shows its
full-width message, the key is never in a requested URL, and /docs and /redoc render with nothing from outside.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_config
from tests.serving.conftest import Server


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _log_report(cfg_path: Path, kind: str, fingerprint: str, out: Path, tags: dict | None = None) -> str:
    """A finished backtest (accuracy) or audit (fairness) run as those steps log it, with a real PNG figure."""
    import mlflow

    from hotspot.features.config import load_config
    from hotspot.training import tracking

    step, stem = {"accuracy": ("backtest", "accuracy"), "fairness": ("audit", "audit")}[kind]
    out.mkdir(parents=True)
    (out / f"{stem}.json").write_text(json.dumps({"kind": kind, "out": out.name}))
    (out / f"{stem}.html").write_text(f'<html><head><style>h1{{color:#234}}</style></head><body><h1>{kind} '
                                      f'{out.name}</h1><img src="plot.png" alt="figure"></body></html>')
    _png(out / "plot.png")
    with tracking.step_run(load_config(cfg_path), step, fingerprint) as run:
        if tags:
            mlflow.set_tags(tags)
        for path in out.iterdir():
            mlflow.log_artifact(str(path), step)
    return run.info.run_id


@pytest.fixture
def own(trained_area, tmp_path, monkeypatch):
    """The `service` fixture's app on a private copy of the trained area's MLflow database (artifacts stay where
    they are), so the report runs these tests log show in no other test's reports."""

    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.auth import ROLES, create_key
    from hotspot.serving.settings import Settings
    from tests.serving.conftest import Service, private_tracking_store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", private_tracking_store(trained_area.tracking_uri, tmp_path))
    settings = Settings(config=trained_area.config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}",
                        warm_panel=False, cache_ttl_s=0, reports_refresh_s=0)
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.hotspot
        keys = {role: create_key(state.engine, role, f"test {role}")[0] for role in ROLES}
        yield Service(client, keys, state)


def test_report_index_and_reports_per_version(own, trained_area, tmp_path):
    service = own
    version = service.get("/v1/models", "auditor").json()["versions"][0]
    assert version["version"] == "1" and "config_sha256" not in version  # /v1/models as before
    mine = _log_report(trained_area.config, "accuracy", version["data_fingerprint"], tmp_path / "bt-v1")
    audit = _log_report(trained_area.config, "fairness", version["data_fingerprint"], tmp_path / "au-v1",
                        {"model_version": "1"})
    newer = _log_report(trained_area.config, "accuracy", "fp-other-data", tmp_path / "bt-other")

    index = service.get("/v1/reports", "auditor")
    assert index.status_code == 200, index.text
    body = index.json()
    assert body["model"] and body["champion"] == "1" and body["note"] is None
    [v1] = [v for v in body["versions"] if v["version"] == "1"]
    assert v1["champion"] is True and v1["created_at"]
    assert v1["reports"]["accuracy"]["run_id"] == mine  # the newer backtest ran on other data: not this version's
    assert v1["reports"]["fairness"]["run_id"] == audit
    assert v1["reports"]["accuracy"]["page"] == "/reports/accuracy?version=1"
    assert v1["reports"]["accuracy"]["html"] == "/v1/reports/accuracy?version=1&format=html"
    assert body["latest"]["accuracy"]["run_id"] == newer and body["latest"]["accuracy"]["page"] == "/reports/accuracy"
    assert body["trends"]["areas"][0] == "Whole area" and body["trends"]["page"] == "/reports/trends"

    # ?version= picks the version's report; without it the routes answer as before (the latest)
    assert service.get("/v1/reports/accuracy", "auditor").json()["run_id"] == newer
    assert service.get("/v1/reports/accuracy?version=1", "auditor").json()["run_id"] == mine
    page = service.get("/v1/reports/accuracy?version=1&format=html", "analyst")
    assert page.headers["content-type"].startswith("text/html") and "bt-v1" in page.text
    assert 'src="data:image/png;base64,' in page.text
    assert service.get("/v1/reports/fairness?version=1", "auditor").json()["run_id"] == audit

    missing = service.get("/v1/reports/accuracy?version=7", "auditor")
    assert missing.status_code == 404 and "no version 7" in missing.json()["detail"] and "versions: 1" in \
        missing.json()["detail"]
    assert service.get("/v1/reports/fairness?version=x1", "auditor").status_code == 422
    assert service.get("/v1/reports", "viewer").status_code == 403
    assert service.get("/v1/reports").status_code == 401


def test_a_version_without_a_report_is_404_naming_the_step(own, trained_area, tmp_path):
    service = own
    _log_report(trained_area.config, "fairness", "fp", tmp_path / "au-v9", {"model_version": "9"})
    refused = service.get("/v1/reports/fairness?version=1", "auditor")
    assert refused.status_code == 404 and "no fairness report for version 1" in refused.json()["detail"]
    assert "hotspot audit" in refused.json()["detail"]
    [v1] = service.get("/v1/reports", "auditor").json()["versions"]
    assert v1["reports"]["fairness"] is None


def test_the_report_pages_hold_no_data_and_allow_no_inline_script(service):
    for path in ("/reports", "/reports/accuracy", "/reports/fairness", "/reports/trends", "/reports/briefing"):
        page = service.get(path)  # no key: the page itself asks for one
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store", path
        policy = dict(part.split(" ", 1) for part in page.headers["content-security-policy"].split("; "))
        assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'", (path, policy)
        assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'", (path, policy)
        assert "<script>" not in page.text and 'id="key-dialog"' in page.text, path
        assert "hs_" not in page.text.replace('placeholder="hs_..."', ""), path
    assert 'data-roles="auditor or analyst"' in service.get("/reports/fairness").text
    assert 'data-roles="viewer, auditor or analyst"' in service.get("/reports/trends").text
    assert 'data-roles="viewer, auditor or analyst"' in service.get("/reports/briefing").text
    assert service.get("/reports/nothing").status_code in (404, 422)


def test_trends_as_an_html_page(service):
    plain = service.get("/v1/trends", "viewer")
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    page = service.get("/v1/trends?format=html", "viewer")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count('src="data:image/png;base64,') >= 1 and "Recorded incidents per year" in page.text
    assert "policing data, not ground truth" in page.text
    assert service.get("/v1/trends?format=pdf", "viewer").status_code == 422


# --- in Chromium, against `hotspot serve` ---------------------------------------------------------------------------

def _natural_widths(page) -> list[int]:
    """naturalWidth of every figure of the report shown in the page's frame, once the frame has them."""
    import time

    deadline = time.monotonic() + 30
    while True:
        widths = page.frame_locator("#report").locator("img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        if (widths and all(widths)) or time.monotonic() > deadline:
            return widths
        time.sleep(0.2)


@pytest.mark.slow
def test_reports_and_docs_in_the_browser(tmp_path, browser):
    # the session's Chromium (tests/serving/conftest.py): a second sync_playwright() while it runs is refused
    from hotspot.serving.auth import create_key
    from hotspot.serving.db import create_schema, make_engine

    cfg = write_config(tmp_path / "area", name="reportpages")
    for args in (("train",), ("backtest", "--weeks", "1", "--model", "lightgbm,naive_4w", "--out",
                              str(tmp_path / "backtest"))):
        proc = run_cli(*args, "--config", str(cfg), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    _log_report(cfg, "fairness", "fp", tmp_path / "audit", {"model_version": "1"})
    database_url = f"sqlite:///{tmp_path / 'hotspot.db'}"
    engine = make_engine(database_url)
    create_schema(engine)
    keys = {role: create_key(engine, role, f"pages {role}")[0] for role in ("viewer", "auditor")}
    engine.dispose()

    server = Server(cfg, database_url, {}, tmp_path, tmp_path / "serve.log")
    requested: list[str] = []
    console: list[str] = []
    try:
        server.wait_healthy()
        url = server.url
        contexts = []  # the session's browser (conftest), one context per page
        try:
            def new_page():
                contexts.append(browser.new_context(viewport={"width": 1280, "height": 860}))
                page = contexts[-1].new_page()
                page.context.on("request", lambda r: requested.append(r.url))
                page.on("console", lambda m: console.append(m.text))
                return page

            # the index, after the key dialog: the version, the champion, links to its reports
            page = new_page()
            page.goto(f"{url}/reports")
            assert page.locator("#key-dialog").is_visible()
            page.fill("#api-key", keys["auditor"])
            page.click("#key-submit")
            row = page.locator('#versions tbody tr[data-version="1"]')
            row.wait_for(timeout=30_000)
            assert "champion" in row.inner_text() and "made 20" in row.inner_text()
            assert row.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))") == [
                "/reports/accuracy?version=1", "/reports/fairness?version=1"]
            assert page.locator("#trends a").first.get_attribute("href") == "/reports/trends"
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)

            # a report from the index: no second key prompt (the tab keeps it), its figures load
            row.locator("a").first.click()
            page.wait_for_url("**/reports/accuracy?version=1")
            page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
            assert not page.locator("#key-dialog").is_visible()
            frame = page.frame_locator("#report")
            assert "Accuracy report" in frame.locator("h1").inner_text()
            widths = _natural_widths(page)
            assert len(widths) >= 2 and all(w > 0 for w in widths), widths
            assert page.locator("#save").get_attribute("download") == "accuracy-v1.html"

            page.goto(f"{url}/reports/fairness?version=1")
            page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
            assert "fairness audit" in page.frame_locator("#report").locator("h1").inner_text()
            assert _natural_widths(page) and all(_natural_widths(page))

            # trends with a viewer key: a role the reports refuse but the trends allow
            page = new_page()
            page.goto(f"{url}/reports/trends")
            page.fill("#api-key", keys["viewer"])
            page.click("#key-submit")
            page.wait_for_selector("body[data-loaded=true]", timeout=120_000)
            assert "Trends" in page.frame_locator("#report").locator("h1").inner_text()
            assert all(w > 0 for w in _natural_widths(page))

            # the weekly briefing for command staff, with the same viewer key: the page, its title and top table
            page.goto(f"{url}/reports/briefing")
            page.wait_for_selector("body[data-loaded=true]", timeout=120_000)
            briefing = page.frame_locator("#report")
            assert "Weekly briefing: reportpages" in briefing.locator("h1").inner_text()
            assert briefing.locator("table").count() >= 2
            assert "policing data" in briefing.locator("body").inner_text()

            # refused keys: a full-width message; a wrong role says which role is needed
            page.goto(f"{url}/reports/fairness")  # the same tab: its viewer key is used at once
            refusal = page.locator("#refused")
            refusal.wait_for(timeout=30_000)
            text = page.locator("#refused-text").inner_text()
            assert "viewer role" in text and "auditor or analyst role" in text, text
            box = refusal.bounding_box()
            assert box and box["width"] >= 1270 and not page.locator("#report").is_visible()
            page.click("#refused-retry")
            page.fill("#api-key", "hs_" + "x" * 43)
            page.click("#key-submit")
            page.wait_for_selector("#refused-text:has-text('unknown')", timeout=30_000)
            assert page.evaluate("() => sessionStorage.getItem('hotspot.apiKey')") is None

            # the API docs, offline: Swagger UI lists the operations, ReDoc its menu
            page = new_page()
            page.goto(f"{url}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() >= 8
            assert page.locator(".opblock-summary-path", has_text="/v1/reports/accuracy").first.is_visible()
            page.goto(f"{url}/redoc")
            page.get_by_role("heading", name=re.compile(r"hotspot")).first.wait_for(timeout=30_000)
            assert page.locator("li[data-item-id]").count() >= 5
        finally:
            for context in contexts:
                context.close()
    finally:
        server.stop()
    assert requested, "no request was seen"
    outside = [u for u in requested if not u.startswith((server.url + "/", "data:", "blob:", "about:"))]
    assert not outside, f"requests left the server: {outside}"
    leaked = [u for u in requested if any(k in u for k in keys.values())]
    assert not leaked, "an API key went into a URL"
    violations = [m for m in console if "Content Security Policy" in m]
    assert not violations, violations
    assert not any(k in server.log() for k in keys.values())
