"""Both notebooks run top to bottom on the bundled sample: the walkthrough, and the audit notebook that recomputes
the accuracy report's and the fairness audit's headline figures from a version's MLflow record and stops when one
does not match."""

from __future__ import annotations

import json
import os

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.conftest import REPO_ROOT, SAMPLE_CONFIG


def execute(name: str, folder, env: dict | None = None):
    """Run a notebook of notebooks/ in a fresh kernel started in `folder` (with `env` set); return it executed."""
    nb = nbformat.read(REPO_ROOT / "notebooks" / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # the kernel inherits this process's environment
    try:
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs(nb) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def printed(nb) -> str:
    return "".join(o.get("text", "") for o in outputs(nb) if o.get("output_type") == "stream")


def test_walkthrough_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # let the kernel use its inline backend
    nb = execute("walkthrough.ipynb", tmp_path)
    assert not [o for o in outputs(nb) if o.get("output_type") == "error"]
    text = printed(nb)
    assert "rows read" in text and "forecast for the week of 2019-12-30" in text
    assert any("image/png" in o.get("data", {}) for o in outputs(nb)), "the notebook shows its plots"


@pytest.fixture
def audited_sample(tmp_path, sample_prepared):
    """The sample trained, backtested (4 weeks: LightGBM and count baselines, flat ones with ties) and audited
    (4 weeks) with the real steps, into this test's MLflow store."""
    from hotspot.features.places import build_places
    from hotspot.steps import Prepared, audit_step, backtest_step, train_step

    cfg, result, panel = sample_prepared
    prepared = Prepared(result, panel, {}, build_places(cfg, result.accepted, result.grid, result.area))
    train_step(cfg, prepared, params="config")
    backtest_step(cfg, ["lightgbm", "naive_4w", "naive_52w", "ewm_hl26"], 4, None, tmp_path / "backtest",
                  prepared=prepared)
    audit_step(cfg, weeks=4, out_dir=tmp_path / "audit", prepared=prepared, simulation={"rounds": 4,
               "replications": 1}, bootstrap_reps=100)
    return cfg


def test_audit_notebook_reproduces_both_reports(tmp_path, monkeypatch, audited_sample):
    import mlflow

    monkeypatch.delenv("MPLBACKEND", raising=False)
    env = {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"], "HOTSPOT_CONFIG": str(SAMPLE_CONFIG)}
    nb = execute("audit_from_mlflow.ipynb", tmp_path, env)
    assert not [o for o in outputs(nb) if o.get("output_type") == "error"]
    text = printed(nb)
    assert "toronto-sample-all version 1 (champion)" in text
    # every model's 5 headline figures, and every group figure of every model, printed as a comparison that agrees
    accuracy_line = next(line for line in text.splitlines() if line.startswith("accuracy report:"))
    assert "20 of 20 figures recomputed from predictions.parquet agree with accuracy.json" in accuracy_line
    audit_line = next(line for line in text.splitlines() if line.startswith("fairness audit:"))
    agreed, total = (int(x) for x in audit_line.split(":")[1].split("figures")[0].split(" of "))
    assert agreed == total > 100, audit_line
    tables = [o["data"]["text/html"] for o in outputs(nb) if "text/html" in o.get("data", {})]
    assert any("recomputed" in t and "PAI at 1%" in t and "naive_52w" in t for t in tables)
    assert any("recomputed" in t and "flag-rate ratio" in t and "Bay Street Corridor" in t for t in tables)
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 3, "PAI by week, shares, hit rate by week"

    # a report whose figure is off by a millionth: the notebook stops at the comparison and names the figure
    client = mlflow.MlflowClient()
    backtest = client.search_runs([client.get_experiment_by_name("toronto-sample").experiment_id],
                                  "tags.step = 'backtest'")[0]
    report = json.loads((tmp_path / "backtest" / "accuracy.json").read_text())
    report["models"]["naive_52w"]["summary"]["pai@1%"]["mean"] *= 1 + 1e-6
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "accuracy.json").write_text(json.dumps(report))
    run = client.create_run(backtest.info.experiment_id, tags={
        k: v for k, v in backtest.data.tags.items() if k in ("step", "data_fingerprint", "config_sha256")})
    client.log_artifact(run.info.run_id, str(forged / "accuracy.json"), "backtest")
    client.log_artifact(run.info.run_id, str(tmp_path / "backtest" / "predictions.parquet"), "backtest")
    client.set_terminated(run.info.run_id)
    with pytest.raises(CellExecutionError, match=r"(?s)do not match accuracy.json.*naive_52w\s+PAI at 1%"):
        execute("audit_from_mlflow.ipynb", tmp_path, env)

    # an audit whose cell-to-group table puts one flagged cell in another group: the audit's comparison fails
    audit = client.search_runs([backtest.info.experiment_id], "tags.step = 'audit'")[0]
    groups = pd.read_csv(tmp_path / "audit" / "cell_groups.csv", keep_default_na=False)
    predictions = pd.read_parquet(tmp_path / "audit" / "predictions.parquet")
    busiest = predictions.groupby("cell_id")["risk"].sum().idxmax()  # flagged every week
    row = groups.index[groups["cell_id"] == busiest][0]
    groups.loc[row, "group"] = next(g for g in groups["group"].unique() if g and g != groups.loc[row, "group"])
    groups.to_csv(forged / "cell_groups.csv", index=False)
    run = client.create_run(audit.info.experiment_id, tags=dict(audit.data.tags))
    for path in (tmp_path / "audit" / "audit.json", tmp_path / "audit" / "predictions.parquet",
                 forged / "cell_groups.csv"):
        client.log_artifact(run.info.run_id, str(path), "audit")
    client.set_terminated(run.info.run_id)
    client.delete_run(client.search_runs([backtest.info.experiment_id], "tags.step = 'backtest'")[0].info.run_id)
    with pytest.raises(CellExecutionError, match=r"(?s)do not match audit.json.*flag share"):
        execute("audit_from_mlflow.ipynb", tmp_path, env)
