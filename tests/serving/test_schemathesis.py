"""Schemathesis against the running service's OpenAPI spec, with an analyst key: no server error and no response
that violates the documented schema, status codes, content types or headers.

`positive_data_acceptance` is left out on purpose: the API rightly rejects (422) some requests the schema cannot
rule out (a week that is not a period of the data, a bbox whose min exceeds its max).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from serving.auth import create_key
from serving.db import create_schema, make_engine
from tests.serving.conftest import Server, log_report_run

SEED = "20251123"  # fixed, so CI is reproducible; run `schemathesis run` by hand with other seeds to explore more


def test_schemathesis_finds_no_server_error_and_no_schema_violation(trained_area, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_area.tracking_uri)
    database_url = f"sqlite:///{tmp_path / 'hotspot.db'}"
    engine = make_engine(database_url)
    create_schema(engine)
    key, _ = create_key(engine, "analyst", "schemathesis")
    engine.dispose()
    # reports exist, so those operations are exercised beyond their 404
    log_report_run(trained_area.config, "backtest", "backtest", "accuracy", {"models": {}}, tmp_path / "bt")
    log_report_run(trained_area.config, "audit", "audit", "audit", {"groups": []}, tmp_path / "au")

    server = Server(trained_area.config, database_url, {"MLFLOW_TRACKING_URI": trained_area.tracking_uri},
                    tmp_path, tmp_path / "serve.log")
    try:
        server.wait_healthy()
        published = httpx.post(f"{server.url}/v1/forecasts", json={}, headers={"X-API-Key": key}, timeout=120)
        assert published.status_code == 201, published.text
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{server.url}/openapi.json",
             "--header", f"X-API-Key: {key}", "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "40", "--seed", SEED,
             "--request-timeout", "60", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        server.stop()
    output = proc.stdout + proc.stderr
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    print("\nschemathesis summary:\n" + summary)
    assert proc.returncode == 0, output[-8000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    assert selected and selected.group(1) == selected.group(2), summary  # every operation of the spec...
    assert re.search(rf"Tested: {selected.group(1)}\b", summary), summary  # ...was exercised
    assert re.search(r"(\d+) generated, \1 passed", summary), summary
    assert key not in server.log()  # the access log names the key id, never the key
