"""`hotspot audit` end to end on a synthetic city split into two demographic areas, as an auditor runs it."""

from __future__ import annotations

import json
import re
import textwrap
import time

import geopandas as gpd
import shapely

from tests.conftest import ORIGIN_LAT, ORIGIN_LON, run_cli, write_config

FAIRNESS = """
[fairness]
areas = "areas.geojson"
population = "pop"
groups = [{{name = "majority", kind = "majority", columns = ["share_a", "share_b"], labels = ["A", "B"]}},
          {{name = "income", kind = "quantile", column = "{income}", quantiles = 2}}]
bootstrap_reps = 200

[fairness.simulation]
rounds = 8
replications = 2
history_weeks = 20
"""


def synthetic_city(folder, income: str = "income"):
    """The synthetic square of tests/conftest.py, west half group A (1000 residents), east half group B (3000)."""
    mid = ORIGIN_LON + 0.03
    folder.mkdir(parents=True, exist_ok=True)
    polygons = [shapely.box(ORIGIN_LON - 0.01, ORIGIN_LAT - 0.01, mid, ORIGIN_LAT + 0.055),
                shapely.box(mid, ORIGIN_LAT - 0.01, ORIGIN_LON + 0.07, ORIGIN_LAT + 0.055)]
    gpd.GeoDataFrame({"pop": [1000.0, 3000.0], "share_a": [0.9, 0.2], "share_b": [0.1, 0.8],
                      "income": [30_000.0, 80_000.0]}, geometry=polygons, crs="EPSG:4326").to_file(
        folder / "areas.geojson")
    return write_config(folder, extra=textwrap.dedent(FAIRNESS.format(income=income)))


def test_audit_of_a_registered_model(tmp_path):
    import mlflow

    cfg = str(synthetic_city(tmp_path / "city"))
    proc = run_cli("train", "--config", cfg)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "audit"
    proc = run_cli("audit", "--config", cfg, "--weeks", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "flag-rate ratio" in proc.stdout and "naive_4w" in proc.stdout and "audit.html" in proc.stdout
    assert "Feedback loop" in proc.stdout and "not ground truth" in proc.stdout
    assert "Groups are demographic: the 2 polygons of areas.geojson" in proc.stdout
    audit = json.loads((out / "audit.json").read_text())
    assert audit["audited_model"] == "lightgbm_v1" and audit["models"] == ["lightgbm_v1", "naive_4w", "ewm_hl8"]
    assert audit["model_version"]["version"] == "1" and len(audit["weeks"]) == 4
    assert audit["inputs"]["demographics_excluded"] is True and "never as model features" in audit["inputs"][
        "statement"]
    for figs in audit["definitions"]["majority"]["models"].values():
        shares = [g["flag_share"]["value"] for g in figs["groups"].values()]
        assert abs(sum(shares) - 1) < 1e-9
    assert set(audit["feedback"]["arms"]) == {"no mitigation", "reported only", "down-weight discovered", "decay"}
    assert audit["sensitivity"]["scenarios"]["equal rates"]["models"]["lightgbm_v1"]["cells_moved_per_week"] == 0
    assert audit["model_card"]["model"]["version"] == "1" and audit["model_card"]["caveats"]
    html = (out / "audit.html").read_text()
    assert "Model card" in html and "Feedback-loop simulation" in html and 'src="audit_tradeoff.png"' in html
    assert (out / "audit_disparate_impact.png").stat().st_size > 1000

    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id],
                              "tags.step = 'audit'")
    assert len(runs) == 1 and runs[0].data.tags["model_version"] == "1"
    assert any(m.startswith("audit.majority.A.flag_share") for m in runs[0].data.metrics)
    model_run = audit["model_version"]["run_id"]
    logged = {a.path for a in client.list_artifacts(model_run, "audit")}
    assert {"audit/audit.json", "audit/audit.html"} <= logged
    assert "audit.feedback.no_mitigation.distance_end" in client.get_run(model_run).data.metrics


def test_audit_errors_are_one_line(tmp_path):
    plain = write_config(tmp_path / "plain")
    proc = run_cli("audit", "--config", str(plain))
    assert proc.returncode == 2 and "no demographic areas" in proc.stderr and "no place names" in proc.stderr
    assert "Traceback" not in proc.stderr

    wrong = synthetic_city(tmp_path / "wrong", income="median_income")
    proc = run_cli("audit", "--config", str(wrong))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "areas.geojson: no column 'median_income' (named by fairness.groups 'income')" in proc.stderr

    (tmp_path / "wrong" / "areas.geojson").unlink()
    proc = run_cli("audit", "--config", str(wrong))
    assert proc.returncode == 2 and "fairness.areas" in proc.stderr and "file not found" in proc.stderr

    cfg = synthetic_city(tmp_path / "untrained")
    proc = run_cli("audit", "--config", str(cfg))
    assert proc.returncode == 2 and "no champion model" in proc.stderr


def test_the_sample_audits_with_shipped_data_only(tmp_path, sample_prepared):
    """A fresh clone: no demographic file, so the groups are the sample's neighbourhood labels; the report reads as a
    finding (summary first, merged warnings, no empty group, no bare inf) in the page and in the JSON."""
    from hotspot.features.places import build_places
    from hotspot.steps import Prepared, demo_audit_step, train_step

    cfg, result, panel = sample_prepared
    assert cfg.fairness is not None and cfg.fairness.groups_from == "places"
    prepared = Prepared(result, panel, {}, build_places(cfg, result.accepted, result.grid, result.area))
    train_step(cfg, prepared, params="config")
    start = time.perf_counter()
    audit, paths = demo_audit_step(cfg, prepared, tmp_path / "audit")
    assert time.perf_counter() - start < 60
    html, text = paths["audit_html"].read_text(), paths["audit_json"].read_text()
    served = json.loads(text)

    n_places = len(prepared.places.areas)
    definition = served["definitions"]["place"]
    assert len(definition["groups"]) == n_places and all(g["cells"] > 0 for g in definition["groups"].values())
    assert definition["reference"] == "all cells" and definition["has_population"] is False
    summary = served["summary"]
    assert f"the groups are the {n_places} named areas" in summary["groups_used"]
    assert "population shares are not claimed" in summary["groups_used"]
    assert summary["lines"][0].startswith(f"lightgbm_v1 flags the top 5.0% of {panel.grid.n_cells:,} cells")
    assert any(line.startswith("The count baselines on the same weeks") for line in summary["lines"])
    # one merged warning per kind: every place is small, said once
    small = [w for w in served["warnings"] if "small" in w]
    assert small == [f"place: all {n_places} groups are small (under 30 cells, or under 5 flagged cells a week at "
                     "chance): their figures move in large steps and their intervals are wide"]
    for page in (html, text):
        assert not re.search(r"(?<![\\\w])(inf|Infinity|nan|NaN)\b", page)  # not the 'nan' of a JSON "\nan"
    # the page opens with the summary and the warnings, and states the groups used
    assert html.index('id="summary"') < html.index('id="warnings"') < html.index("<h2>Inputs</h2>")
    assert "named areas of the study area, from the incidents&#39; own area labels" in html
    assert "share of residents" not in html and "No demographic data is used" in html
    assert "Model card" in html and "<td>objective</td><td>poisson</td>" in html
    assert served["settings"] == {"bootstrap_reps": 200, "simulation_rounds": 12, "simulation_replications": 2,
                                  "groups_from": "places"}
