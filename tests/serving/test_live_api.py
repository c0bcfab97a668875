"""The live record (`GET /v1/reports/live`) and the weekly cycles (`GET /v1/reports/cycles`) in-process, on a store
filled through its own API (publications, live scores, a cycle record), so no model or cycle command is needed:
roles, the numbers against the inserted metrics, `?product=`, `?weeks=`, re-scored weeks, and an empty store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hotspot.serving.db import PUBLISHED, LiveScore
from tests.serving.conftest import Service, forecast_metadata, make_cells

PRODUCTS = """
[[products]]
name = "all"
title = "All offences"

[[products]]
name = "assault"
title = "Assault"
offenses = ["Assault"]
"""
WEEKS = ["2021-06-28", "2021-07-05", "2021-07-12"]
PUBLISHED_HIT = [0.30, 0.40, 0.20]
NAIVE_HIT = [0.10, 0.20, 0.30]


@pytest.fixture
def live_service(tmp_path, monkeypatch):
    """The app on an untrained synthetic area with two products, an empty SQLite store and a key per role."""
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.auth import ROLES, create_key
    from hotspot.serving.settings import Settings
    from tests.conftest import write_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = write_config(tmp_path / "area", extra=PRODUCTS)
    settings = Settings(config=config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}", warm_panel=False,
                        cache_ttl_s=0)
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.hotspot
        keys = {role: create_key(state.engine, role, f"test {role}")[0] for role in ROLES}
        yield Service(client, keys, state)


def metrics(hit1: float) -> dict[str, float]:
    return {"hit_rate@1%": hit1, "pai@1%": 50 * hit1, "pei@1%": 0.5, "hit_rate@5%": min(1.0, 2 * hit1),
            "pai@5%": 10 * hit1, "pei@5%": 0.6, "poisson_deviance": 1.2}


def fill(state, product: str = "all") -> None:
    """Three published weeks scored beside naive_4w, one week re-scored after late records, and a cycle."""
    store, area = state.store, state.area
    scores = []
    for week, pub, naive in zip(WEEKS, PUBLISHED_HIT, NAIVE_HIT):
        publication = store.publish(area, product, week, forecast_metadata(week), make_cells(20, week=week))
        scores += [LiveScore(publication.id, product, week, PUBLISHED, 40, metrics(pub)),
                   LiveScore(publication.id, product, week, "naive_4w", 40, metrics(naive))]
    first = datetime(2021, 7, 6, 6, tzinfo=UTC)
    early = [LiveScore(s.publication_id, s.product, s.week, s.model, 35, metrics(0.25), scored_at=first)
             for s in scores[:2]]  # the first week scored before 5 late records came in
    flags = [{"product": product, "kind": "decay", "sentence": "hit rate fell", "flag": True},
             {"product": "other", "kind": "drift", "sentence": "another product's volume moved", "flag": True}]
    store.commit_cycle(area, [], early, {"week": WEEKS[1], "status": "published", "started_at": first,
                                         "report": {"week": WEEKS[1], "status": "published", "sentence": "first",
                                                    "flags": [], "products": {}}})
    store.commit_cycle(area, [], scores, {"week": WEEKS[2], "status": "published", "started_at": first,
                                          "report": {"week": WEEKS[2], "status": "published",
                                                     "sentence": "Published 1 product; 1 flag.", "flags": flags,
                                                     "products": {product: {"published": WEEKS[2]}}}})


def test_roles_may_read_the_live_record_and_the_cycles(live_service):
    fill(live_service.state)
    for role, live, cycles in (("auditor", 200, 403), ("analyst", 200, 200), ("viewer", 403, 403),
                               ("public", 403, 403)):
        assert live_service.get("/v1/reports/live", role).status_code == live, role
        assert live_service.get("/v1/reports/cycles", role).status_code == cycles, role
    assert live_service.get("/v1/reports/live").status_code == 401
    refused = live_service.get("/v1/reports/cycles", "auditor").json()["detail"]
    assert "analyst" in refused and "auditor" not in refused.split("needs")[1]


def test_live_record_numbers_come_from_the_scores(live_service):
    fill(live_service.state)
    body = live_service.get("/v1/reports/live", "auditor").json()
    assert body["area"] == "synthetic" and body["product"] == "all" and body["n_weeks"] == 3
    assert [w["week"] for w in body["weeks"]] == WEEKS
    assert body["weeks"][0]["observed_total"] == 40  # the current score, not the one before the late records
    assert body["weeks"][0]["published"]["hit_rate@1%"] == 0.30
    assert body["weeks"][0]["baselines"] == {"naive_4w": pytest.approx(5.0)}
    assert body["best_baseline"]["model"] == "naive_4w" and body["best_baseline"]["mean_pai@1%"] == pytest.approx(10)
    hit = body["summary"]["hit_rate@1%"]
    assert hit["published"] == pytest.approx(0.3) and hit["best_baseline"] == pytest.approx(0.2)
    assert hit["difference"] == pytest.approx(0.1) and hit["weeks"] == 3 and hit["weeks_better"] == 2
    assert body["summary"]["pai@1%"]["published"] == pytest.approx(15.0)
    assert body["sentence"].startswith("Over the 3 weeks scored, the published forecasts caught 30%")
    assert "naive_4w" in body["sentence"] and "not ground truth" in body["note"]
    assert [(r["week"], r["first_observed_total"], r["observed_total"]) for r in body["rescored"]] == \
        [(WEEKS[0], 35, 40)]
    assert [c["sentence"] for c in body["cycles"]] == ["Published 1 product; 1 flag.", "first"]
    assert [f["kind"] for f in body["cycles"][0]["flags"]] == ["decay"]  # this product's flags only

    window = live_service.get("/v1/reports/live?weeks=2", "analyst").json()
    assert [w["week"] for w in window["weeks"]] == WEEKS[1:] and window["window"] == 2
    assert window["summary"]["hit_rate@1%"]["published"] == pytest.approx(0.3)
    assert window["rescored"] == []
    assert live_service.get("/v1/reports/live?weeks=0", "auditor").status_code == 422


def test_product_parameter_and_an_empty_record(live_service):
    fill(live_service.state, product="assault")
    empty = live_service.get("/v1/reports/live", "auditor")  # the default product, all, has nothing scored
    assert empty.status_code == 200
    assert empty.json()["n_weeks"] == 0 and empty.json()["sentence"].startswith("Nothing is scored yet")
    assert empty.json()["weeks"] == [] and empty.json()["summary"] == {}
    assault = live_service.get("/v1/reports/live?product=assault", "auditor").json()
    assert assault["product"] == "assault" and assault["n_weeks"] == 3
    unknown = live_service.get("/v1/reports/live?product=burglary", "auditor")
    assert unknown.status_code == 422 and "assault" in unknown.json()["detail"]


def test_cycles_list_newest_first_with_every_flag(live_service):
    assert live_service.get("/v1/reports/cycles", "analyst").json() == {"area": "synthetic", "cycles": []}
    fill(live_service.state)
    cycles = live_service.get("/v1/reports/cycles", "analyst").json()["cycles"]
    assert [c["week"] for c in cycles] == [WEEKS[2], WEEKS[1]]
    assert [f["kind"] for f in cycles[0]["flags"]] == ["decay", "drift"]
    assert cycles[0]["products"] == {"all": {"published": WEEKS[2]}}
    assert len(live_service.get("/v1/reports/cycles?limit=1", "analyst").json()["cycles"]) == 1


def test_the_briefing_step_reads_the_live_record_only_from_a_store_that_exists(live_service, tmp_path, monkeypatch):
    from hotspot.steps.briefing import stored_live

    cfg = live_service.state.cfg
    missing = tmp_path / "nowhere" / "hotspot.db"
    assert stored_live(cfg, f"sqlite:///{missing}") is None and not missing.exists()  # never created
    url = live_service.state.settings.database_url
    assert stored_live(cfg, url) is None  # a store with nothing scored: no section
    fill(live_service.state)
    monkeypatch.setenv("HOTSPOT_DATABASE_URL", url)
    record = stored_live(cfg)
    assert record["n_weeks"] == 3 and record["best_baseline"]["model"] == "naive_4w"
