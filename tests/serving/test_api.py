"""The API in-process on a trained synthetic area: roles, publishing, reading (GeoJSON, CSV, top, bbox), validation,
reports, models, readiness and the access log."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from sqlalchemy import select

from hotspot.serving.auth import revoke_key
from hotspot.serving.db import AccessLogRow
from tests.serving.conftest import log_report_run

READ_ENDPOINTS = ["/v1/forecasts", "/v1/forecasts/latest", "/v1/forecasts/2021-07-19", "/v1/reports/accuracy",
                  "/v1/reports/fairness", "/v1/models"]
# what each role may do (True) or not (False): viewer < auditor < analyst
ACCESS = {
    "viewer": {"/v1/forecasts": True, "/v1/forecasts/latest": True, "/v1/forecasts/2021-07-19": True,
               "/v1/reports/accuracy": False, "/v1/reports/fairness": False, "/v1/models": False},
    "auditor": dict.fromkeys(READ_ENDPOINTS, True),
    "analyst": dict.fromkeys(READ_ENDPOINTS, True),
}


def publish(service, week: str | None = None, new_version: bool = False, role: str = "analyst"):
    body = {"new_version": new_version, **({"week": week} if week else {})}
    return service.post("/v1/forecasts", role, json=body)


def test_health_and_readiness(service):
    assert service.get("/health").json()["status"] == "ok"
    ready = service.get("/ready")
    assert ready.status_code == 503  # champion loaded, but nothing published yet
    body = ready.json()
    assert body["champion"]["version"] == "1" and body["latest_forecast"] is None
    assert "no forecast published" in body["problems"][0]
    assert publish(service).status_code == 201
    ready = service.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] and ready.json()["latest_forecast"]["version"] == 1


def test_every_v1_endpoint_needs_a_valid_key(service):
    for path in READ_ENDPOINTS:
        missing = service.get(path)
        assert missing.status_code == 401, path
        assert missing.headers["www-authenticate"].startswith("ApiKey")
        assert service.get(path, headers={"X-API-Key": "hs_not-a-real-key"}).status_code == 401
        assert service.get(path, headers={"X-API-Key": "nonsense"}).status_code == 401
    assert service.post("/v1/forecasts", json={}).status_code == 401


def test_roles(service):
    assert publish(service).status_code == 201
    for role, allowed in ACCESS.items():
        for path, ok in allowed.items():
            status = service.get(path, role).status_code
            if ok:
                assert status in (200, 404), (role, path, status)  # 404: no report logged yet
            else:
                assert status == 403, (role, path, status)
    for role in ("viewer", "auditor"):
        refused = publish(service, new_version=True, role=role)
        assert refused.status_code == 403 and "analyst" in refused.json()["detail"]
    bearer = service.client.get("/v1/forecasts/latest?top=1",
                                headers={"Authorization": f"Bearer {service.keys['viewer']}"})
    assert bearer.status_code == 200


def test_revoked_key_gets_401(service):
    key = service.keys["viewer"]
    assert service.get("/v1/forecasts", "viewer").status_code == 200
    revoked = revoke_key(service.state.engine, key[:11])
    assert revoked.revoked_at is not None
    assert service.get("/v1/forecasts", "viewer").status_code == 401


def test_publish_then_read_geojson(service):
    created = publish(service)
    assert created.status_code == 201, created.text
    pub = created.json()
    assert pub["version"] == 1 and pub["model_version"] == "1" and pub["data_fingerprint"]
    assert created.headers["location"] == pub["url"]

    fc = service.get("/v1/forecasts/latest", "viewer").json()
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    meta = fc["metadata"]
    assert meta["model_version"] == "1" and meta["data_fingerprint"] == pub["data_fingerprint"]
    assert meta["created_at"] == pub["created_at"].replace("+00:00", "Z") and meta["period_start"] == pub["week"]
    assert meta["publication_version"] == 1 and meta["published_by"] == service.keys["analyst"][:11]
    assert service.keys["analyst"] not in json.dumps(fc)
    features = fc["features"]
    assert len(features) == pub["cells"] == meta["cells"] == meta["returned_cells"]
    assert [f["properties"]["rank"] for f in features] == list(range(1, len(features) + 1))
    risks = [f["properties"]["risk"] for f in features]
    assert risks == sorted(risks, reverse=True)
    top = features[0]
    assert top["geometry"]["type"] == "Polygon"
    lon, lat = top["geometry"]["coordinates"][0][0]
    assert -79.5 < lon < -79.2 and 43.6 < lat < 43.75  # lon, lat order (RFC 7946)
    assert {"risk", "rank", "percentile", "reasons", "cell_id"} <= set(top["properties"])
    assert top["properties"]["reasons"] and all(isinstance(r, str) for r in top["properties"]["reasons"])

    same_week = service.get(f"/v1/forecasts/{pub['week']}", "viewer").json()
    assert same_week["metadata"]["publication_id"] == pub["id"]


def test_top_bbox_and_csv(service):
    week = publish(service).json()["week"]
    top = service.get("/v1/forecasts/latest?top=5", "viewer").json()
    assert [f["properties"]["rank"] for f in top["features"]] == [1, 2, 3, 4, 5]
    assert top["metadata"]["top"] == 5 and top["metadata"]["returned_cells"] == 5

    first = top["features"][0]["properties"]
    box = f"{first['lon'] - 0.001},{first['lat'] - 0.001},{first['lon'] + 0.001},{first['lat'] + 0.001}"
    boxed = service.get(f"/v1/forecasts/latest?bbox={box}", "viewer").json()
    assert boxed["features"][0]["properties"]["cell_id"] == first["cell_id"]
    assert 1 <= len(boxed["features"]) <= 9  # the cell and at most its touching neighbours
    far = service.get("/v1/forecasts/latest?bbox=10,10,11,11", "viewer").json()
    assert far["features"] == [] and far["metadata"]["returned_cells"] == 0

    as_csv = service.get("/v1/forecasts/latest?top=3&format=csv", "viewer")
    by_accept = service.get("/v1/forecasts/latest?top=3", "viewer", headers={"Accept": "text/csv"})
    assert as_csv.text == by_accept.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(rows[0]) == ["rank", "cell_id", "lon", "lat", "risk", "percentile", "reasons"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and rows[0]["cell_id"] == str(first["cell_id"])
    assert rows[0]["reasons"] == " | ".join(first["reasons"])
    assert as_csv.headers["x-hotspot-model-version"] == "1" and as_csv.headers["x-hotspot-week"] == week
    assert as_csv.headers["x-hotspot-data-fingerprint"] and as_csv.headers["x-hotspot-created-at"]


@pytest.mark.parametrize("query, message", [
    ("top=0", "greater than or equal to 1"), ("top=10001", "less than or equal to 10000"),
    ("top=many", "valid integer"), ("bbox=1,2,3", "four numbers"), ("bbox=10,10,5,5", "min must not exceed max"),
    ("bbox=200,10,210,11", "-180..180"), ("format=xml", "'geojson' or 'csv'"),
])
def test_bad_queries_are_422_with_a_clear_message(service, query, message):
    publish(service)
    response = service.get(f"/v1/forecasts/latest?{query}", "viewer")
    assert response.status_code == 422
    body = response.json()
    assert message in body["detail"] and body["errors"][0]["loc"][0] == "query"


def test_publishing_rules(service):
    first = publish(service, "2021-07-12")
    assert first.status_code == 201 and first.json()["week"] == "2021-07-12"
    again = publish(service, "2021-07-12")
    assert again.status_code == 409 and "new_version" in again.json()["detail"]
    second = publish(service, "2021-07-12", new_version=True)
    assert second.status_code == 201 and second.json()["version"] == 2
    assert service.get("/v1/forecasts/2021-07-12", "viewer").json()["metadata"]["publication_version"] == 2
    assert service.get("/v1/forecasts/2021-07-12?version=1", "viewer").json()["metadata"]["publication_version"] == 1
    assert service.get("/v1/forecasts/2021-07-12?version=3", "viewer").status_code == 404
    listing = service.get("/v1/forecasts", "viewer").json()["publications"]
    assert [(p["week"], p["version"]) for p in listing] == [("2021-07-12", 2), ("2021-07-12", 1)]

    for body, where in [({"week": "2021-07-13"}, "not a period start"), ({"week": "2021-02-30"}, "not a date"),
                        ({"week": "next week"}, "YYYY-MM-DD"), ({"weeks": "2021-07-12"}, "Extra inputs"),
                        ({"week": "2030-01-07"}, "not a period start")]:
        bad = service.post("/v1/forecasts", "analyst", json=body)
        assert bad.status_code == 422 and where in bad.json()["detail"], (body, bad.text)
    too_big = service.post("/v1/forecasts", "analyst", content=b'{"week": "' + b"1" * 10_000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert service.get("/v1/forecasts/2021-13-01", "viewer").status_code == 422
    assert service.get("/v1/forecasts/2020-01-06", "viewer").status_code == 404


def test_nothing_published_is_404(service):
    response = service.get("/v1/forecasts/latest", "viewer")
    assert response.status_code == 404 and "no forecast published" in response.json()["detail"]


def test_models(service):
    models = service.get("/v1/models", "auditor").json()
    assert models["name"] == "synthetic-lightgbm" and models["champion"] == "1"
    (v1,) = models["versions"]
    assert v1["champion"] and "champion" in v1["aliases"] and v1["data_fingerprint"] and "fit_s" in v1["metrics"]


def test_reports_json_and_html(service, trained_area, tmp_path):
    for kind in ("accuracy", "fairness"):
        missing = service.get(f"/v1/reports/{kind}", "auditor")
        assert missing.status_code == 404 and "hotspot" in missing.json()["detail"]
    run_id = log_report_run(trained_area.config, "backtest", "backtest", "accuracy",
                             {"models": {"lightgbm": {"pai": float("nan")}}, "weeks": ["2021-07-12"]}, tmp_path)
    audit_id = log_report_run(trained_area.config, "audit", "audit", "audit", {"groups": ["a", "b"]}, tmp_path)
    service.state.reports.ttl_s = 0
    accuracy = service.get("/v1/reports/accuracy", "auditor").json()
    assert accuracy["kind"] == "accuracy" and accuracy["run_id"] == run_id
    assert accuracy["data_fingerprint"] == "fp-report" and accuracy["code_version"]
    assert accuracy["report"]["models"]["lightgbm"]["pai"] is None  # NaN is not JSON
    page = service.get("/v1/reports/accuracy?format=html", "analyst")
    assert page.headers["content-type"].startswith("text/html") and "<h1>accuracy</h1>" in page.text
    assert 'src="data:image/png;base64,' in page.text  # figures embedded: the page needs no further requests
    fairness = service.get("/v1/reports/fairness", "auditor", headers={"Accept": "text/html"})
    assert "<h1>audit</h1>" in fairness.text
    assert service.get("/v1/reports/fairness", "auditor").json()["run_id"] == audit_id
    assert service.get("/v1/reports/fairness", "viewer").status_code == 403


def test_access_is_logged_without_the_key(service):
    publish(service)
    service.get("/v1/forecasts/latest?top=1", "viewer")
    service.get("/v1/models", "viewer")
    service.get("/v1/models")
    service.state.access.flush()
    with service.state.engine.connect() as conn:
        rows = conn.execute(select(AccessLogRow.__table__)).all()
    seen = {(r.key_id, r.role, r.method, r.path, r.status) for r in rows}
    viewer_id = service.keys["viewer"][:11]
    assert (viewer_id, "viewer", "GET", "/v1/forecasts/latest", 200) in seen
    assert (viewer_id, "viewer", "GET", "/v1/models", 403) in seen
    assert (None, None, "GET", "/v1/models", 401) in seen  # no key at all
    assert (service.keys["analyst"][:11], "analyst", "POST", "/v1/forecasts", 201) in seen
    assert all(r.at is not None and r.duration_ms >= 0 for r in rows)
    dump = json.dumps([list(map(str, r)) for r in rows])
    assert not any(key in dump for key in service.keys.values())


def test_map_page_and_bundled_leaflet(service):
    page = service.get("/map")
    assert page.status_code == 200 and "/static/vendor/leaflet/leaflet.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
    assert '"area": "synthetic"' in page.text
    assert service.get("/static/vendor/leaflet/leaflet.js").status_code == 200
    assert service.get("/static/map.js").status_code == 200
    assert service.get("/docs").status_code == 200


def test_repeated_reads_are_answered_alike_and_logged(trained_area, tmp_path, monkeypatch):
    """With look-up caching on (the default), repeated reads of the latest forecast take the fast path: same bytes
    and headers as the handler's, still logged, and still refused once the key is revoked or the role is wrong."""
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.auth import create_key
    from hotspot.serving.settings import Settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_area.tracking_uri)
    settings = Settings(config=trained_area.config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}",
                        warm_panel=False, cache_ttl_s=0.5)
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.hotspot
        viewer, _ = create_key(state.engine, "viewer")
        analyst, _ = create_key(state.engine, "analyst")
        assert client.post("/v1/forecasts", json={}, headers={"X-API-Key": analyst}).status_code == 201
        headers = {"X-API-Key": viewer}
        first = client.get("/v1/forecasts/latest?top=7", headers=headers)
        assert state.memo.get(b"top=7", first.request.headers["accept"].encode()) is not None
        again = [client.get("/v1/forecasts/latest?top=7", headers=headers) for _ in range(5)]
        assert all(r.status_code == 200 and r.content == first.content for r in again)
        assert all(dict(r.headers) == dict(first.headers) for r in again)
        assert client.get("/v1/forecasts/latest?top=7").status_code == 401

        # a new publication is seen at once by this process
        second = client.post("/v1/forecasts", json={"new_version": True}, headers={"X-API-Key": analyst}).json()
        after = client.get("/v1/forecasts/latest?top=7", headers=headers)
        assert after.json()["metadata"]["publication_id"] == second["id"]

        revoke_key(state.engine, viewer)  # from another process, as `hotspot keys revoke` would
        deadline = time.monotonic() + 3
        while client.get("/v1/forecasts/latest?top=7", headers=headers).status_code == 200:
            assert time.monotonic() < deadline, "a revoked key must stop working within the cache TTL"
            time.sleep(0.05)
        state.access.flush()
        with state.engine.connect() as conn:
            statuses = [r.status for r in conn.execute(select(AccessLogRow.__table__)).all()
                        if r.key_id == viewer[:11]]
    assert statuses.count(200) >= 7 and 401 in statuses  # the revoked key's refusals name its id


def test_not_ready_without_a_champion_or_a_config(tmp_path):
    """Pinned to the champion, an untrained area is not ready and refuses to publish; so is a service without a
    config."""
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.auth import create_key
    from hotspot.serving.settings import Settings
    from tests.conftest import write_config

    untrained = write_config(tmp_path / "untrained", name="untrained")
    for config, problem in [(untrained, "no champion model"), (None, "no study area configured")]:
        app = create_app(Settings(config=config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}",
                                  warm_panel=False, forecast_model="champion"))
        with TestClient(app) as client:
            analyst, _ = create_key(app.state.hotspot.engine, "analyst")
            ready = client.get("/ready")
            assert ready.status_code == 503 and problem in ready.json()["problems"][0]
            publish_attempt = client.post("/v1/forecasts", json={}, headers={"X-API-Key": analyst})
            assert publish_attempt.status_code == 503 and problem in publish_attempt.json()["detail"]
            assert client.get("/v1/forecasts/latest", headers={"X-API-Key": analyst}).status_code in (404, 503)


def test_auto_needs_no_champion_to_publish_or_be_ready(tmp_path):
    """With auto (the default) an area with no registered model publishes: the rule is fitted from the data."""
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.auth import create_key
    from hotspot.serving.settings import Settings
    from tests.conftest import write_config

    untrained = write_config(tmp_path / "untrained", name="untrained")
    app = create_app(Settings(config=untrained, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}",
                              warm_panel=False))
    with TestClient(app) as client:
        analyst, _ = create_key(app.state.hotspot.engine, "analyst")
        ready = client.get("/ready").json()
        assert ready["problems"] == ["no forecast published yet: an analyst publishes one with POST /v1/forecasts"]
        assert ready["forecasts_with"] == "auto" and ready["champion"] is None
        published = client.post("/v1/forecasts", json={"week": "2021-06-28"}, headers={"X-API-Key": analyst})
        assert published.status_code == 201, published.text
        latest = client.get("/v1/forecasts/latest", headers={"X-API-Key": analyst}).json()
        assert latest["metadata"]["model"] == "auto" and latest["metadata"]["selection"]["chosen"]
        assert client.get("/ready").status_code == 200


def test_the_service_on_each_database(database_url, trained_area, monkeypatch):
    """Keys, publishing, reading and the access log through the app, on SQLite and on PostgreSQL."""
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.auth import create_key
    from hotspot.serving.settings import Settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_area.tracking_uri)
    app = create_app(Settings(config=trained_area.config, database_url=database_url, warm_panel=False,
                              cache_ttl_s=0))
    with TestClient(app) as client:
        state = app.state.hotspot
        analyst, _ = create_key(state.engine, "analyst")
        viewer, _ = create_key(state.engine, "viewer")
        first = client.post("/v1/forecasts", json={"week": "2021-07-12"}, headers={"X-API-Key": analyst})
        assert first.status_code == 201, first.text
        assert client.post("/v1/forecasts", json={"week": "2021-07-12"},
                           headers={"X-API-Key": analyst}).status_code == 409
        fc = client.get("/v1/forecasts/latest?top=3", headers={"X-API-Key": viewer}).json()
        assert fc["metadata"]["publication_id"] == first.json()["id"] and len(fc["features"]) == 3
        revoke_key(state.engine, viewer)
        assert client.get("/v1/forecasts/latest?top=3", headers={"X-API-Key": viewer}).status_code == 401
        assert state.access.flush() >= 4
        with state.engine.connect() as conn:
            rows = conn.execute(select(AccessLogRow.__table__)).all()
    assert [(r.role, r.status) for r in rows][:2] == [("analyst", 201), ("analyst", 409)]
    assert rows[0].at.year >= 2024
