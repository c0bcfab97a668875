"""Reports are rendered once per MLflow run and served from memory: after start-up the request path never asks
MLflow (requests keep succeeding, byte for byte, while MLflow is unreachable), and a report run logged later is
picked up by the background refresh."""

from __future__ import annotations

import time

import pytest

from tests.conftest import write_config
from tests.serving.conftest import log_report_run

FORMS = [("accuracy", "", {}), ("accuracy", "?format=html", {}), ("accuracy", "?format=json", {}),
         ("fairness", "", {}), ("fairness", "", {"Accept": "text/html"})]


class Reports:
    def __init__(self, client, state, key, config, tmp_path):
        self.client, self.state, self.key, self.config, self.tmp_path = client, state, key, config, tmp_path

    def get(self, kind: str, query: str = "", headers: dict | None = None):
        return self.client.get(f"/v1/reports/{kind}{query}", headers={"X-API-Key": self.key, **(headers or {})})

    def all_forms(self) -> dict[tuple, tuple[int, str, bytes]]:
        out = {}
        for kind, query, headers in FORMS:
            r = self.get(kind, query, headers)
            out[(kind, query, tuple(headers.items()))] = (r.status_code, r.headers["content-type"],
                                                          r.headers["content-length"], r.content)
        return out

    def log(self, kind: str, report: dict, name: str) -> str:
        step, stem = {"accuracy": ("backtest", "accuracy"), "fairness": ("audit", "audit")}[kind]
        return log_report_run(self.config, step, step, stem, report, self.tmp_path / name)


def _mlflow_unreachable(monkeypatch) -> list[str]:
    """Every way the service reads MLflow now fails (and is counted)."""
    import mlflow
    import mlflow.artifacts

    calls: list[str] = []

    def refuse(what):
        def fail(*args, **kwargs):
            calls.append(what)
            raise ConnectionError(f"MLflow unreachable ({what})")
        return fail

    monkeypatch.setattr(mlflow.MlflowClient, "__init__", refuse("MlflowClient()"))
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", refuse("download_artifacts"))
    return calls


def _start(tmp_path, monkeypatch, log_first, cache_ttl_s: float = 0, reports_refresh_s: float = 5.0):
    from fastapi.testclient import TestClient

    from hotspot.serving.app import create_app
    from hotspot.serving.settings import Settings

    monkeypatch.chdir(tmp_path)  # MLflow puts a new experiment's artifacts under the working directory
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = write_config(tmp_path / "area", name="reportcache")
    ctx = Reports(None, None, None, config, tmp_path)
    log_first(ctx)
    settings = Settings(config=config, database_url=f"sqlite:///{tmp_path / 'hotspot.db'}", warm_panel=False,
                        cache_ttl_s=cache_ttl_s, reports_refresh_s=reports_refresh_s)
    app = create_app(settings)
    return ctx, TestClient(app), app


@pytest.fixture(params=[0.0, 1.0], ids=["routed", "fast-path"])
def reports(request, tmp_path, monkeypatch):
    """The app in-process with an accuracy and a fairness report logged before it started, and an auditor key;
    with key checks reused (cache_ttl_s > 0) repeated requests take hotpath.ReportFastPath, else the handler."""
    from hotspot.serving.auth import create_key

    def log_first(ctx):
        weeks = [f"2021-{m:02d}-{d:02d}" for m in range(1, 13) for d in (4, 11, 18, 25)]
        ctx.runs = {"accuracy": ctx.log("accuracy", {"models": {"lightgbm": {"pai": 2.5, "hit_rate": float("nan")}},
                                                     "weeks": weeks}, "bt1"),
                    "fairness": ctx.log("fairness", {"groups": ["a", "b"], "weeks": weeks}, "au1")}

    ctx, client, app = _start(tmp_path, monkeypatch, log_first, request.param)
    with client:
        ctx.client, ctx.state = client, app.state.hotspot
        ctx.key = create_key(ctx.state.engine, "auditor", "report cache")[0]
        yield ctx


def test_requests_never_ask_mlflow_after_start_up(reports, monkeypatch):
    before = reports.all_forms()
    assert all(status == 200 for status, *_ in before.values()), before
    accuracy = reports.get("accuracy").json()
    assert accuracy["run_id"] == reports.runs["accuracy"] and accuracy["data_fingerprint"] == "fp-report"
    assert accuracy["report"]["models"]["lightgbm"]["hit_rate"] is None  # NaN is not JSON
    assert before[("accuracy", "", ())][1] == "application/json"
    assert before[("accuracy", "?format=html", ())][1] == "text/html; charset=utf-8"
    assert b"data:image/png;base64," in before[("fairness", "", (("Accept", "text/html"),))][3]

    calls = _mlflow_unreachable(monkeypatch)
    reports.state.reports.ttl_s = 0.05  # refresh (and fail) as often as it can; requests must not notice
    for _ in range(3):
        time.sleep(0.1)
        assert reports.all_forms() == before
    assert reports.state.refresh_reports() is False  # the refresh did try, and kept the reports it had
    assert calls and reports.all_forms() == before


def test_reports_are_gzipped_for_clients_that_accept_it(reports):
    for kind, query, headers in FORMS:
        plain = reports.get(kind, query, {**headers, "Accept-Encoding": "identity"})
        packed = reports.get(kind, query, {**headers, "Accept-Encoding": "br;q=1.0, gzip;q=0.8"})
        refused = reports.get(kind, query, {**headers, "Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in plain.headers and "content-encoding" not in refused.headers
        assert int(plain.headers["content-length"]) == len(plain.content) == len(refused.content)
        assert packed.content == plain.content  # decoded by the client: the same report
        assert packed.headers["content-type"] == plain.headers["content-type"]
        assert packed.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
        if "format=html" in query or headers:  # the test pages are too small to gain from gzip: sent as they are
            assert "content-encoding" not in packed.headers
        else:
            assert packed.headers["content-encoding"] == "gzip"
            assert int(packed.headers["content-length"]) < len(plain.content)


def test_a_new_report_run_is_picked_up_by_the_refresh(reports, monkeypatch):
    fairness = reports.get("fairness").content
    reports.state.reports.ttl_s = 0.2
    new_run = reports.log("accuracy", {"models": {"lightgbm": {"pai": 3.0}}, "note": "model v2"}, "bt2")
    deadline = time.monotonic() + 10
    while reports.get("accuracy").json()["run_id"] != new_run:
        assert time.monotonic() < deadline, "the new accuracy run was not picked up within 10 s"
        time.sleep(0.1)
    served = reports.get("accuracy").content
    page = reports.get("accuracy", "?format=html").content

    _mlflow_unreachable(monkeypatch)
    time.sleep(0.5)  # past ttl_s: a request that asked MLflow now would fail
    assert reports.get("accuracy").content == served and reports.get("accuracy").json()["report"]["note"] == "model v2"
    assert reports.get("accuracy", "?format=html").content == page
    assert reports.get("fairness").content == fairness


def test_mlflow_down_at_start_up_gives_503_until_a_refresh_succeeds(tmp_path, monkeypatch):
    from hotspot.serving.auth import create_key

    def log_first(ctx):
        ctx.run = ctx.log("fairness", {"groups": ["a"]}, "au1")

    ctx, client, app = _start(tmp_path, monkeypatch, log_first, reports_refresh_s=0.2)  # HOTSPOT_REPORTS_REFRESH_S
    with monkeypatch.context() as down:
        _mlflow_unreachable(down)
        with client:
            state = app.state.hotspot
            key = create_key(state.engine, "auditor", "report cache")[0]
            refused = client.get("/v1/reports/fairness", headers={"X-API-Key": key})
            assert refused.status_code == 503 and "MLflow unreachable" in refused.json()["detail"]
            assert state.reports.ttl_s == 0.2
            down.undo()
            deadline = time.monotonic() + 10
            while (r := client.get("/v1/reports/fairness", headers={"X-API-Key": key})).status_code != 200:
                assert r.status_code == 503 and time.monotonic() < deadline, r.text
                time.sleep(0.1)
            assert r.json()["run_id"] == ctx.run
            assert client.get("/v1/reports/accuracy", headers={"X-API-Key": key}).status_code == 404
