"""HTML pages come from Jinja2 templates (hotspot.training.pages): every template compiles, values are escaped, and
a variable the page needs but was not given is an error, not a blank."""

from __future__ import annotations

import jinja2
import numpy as np
import pandas as pd
import pytest

from hotspot.serving.routers.map import TEMPLATES as SERVING_TEMPLATES
from hotspot.training.evaluation.report import accuracy_report, render_html
from hotspot.training.pages import TEMPLATES, environment, render

FOLDERS = (TEMPLATES, SERVING_TEMPLATES)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.parent.name)
def test_every_template_compiles(folder):
    names = sorted(p.name for p in folder.glob("*.j2"))
    assert names  # the folder holds the pages
    for name in names:
        environment(folder).get_template(name)


def test_the_report_pages_and_the_map_are_templates():
    assert {"base.html.j2", "macros.html.j2", "accuracy.html.j2", "audit.html.j2"} <= {
        p.name for p in TEMPLATES.glob("*.j2")}
    assert (SERVING_TEMPLATES / "map.html.j2").exists()


def test_a_missing_variable_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        render("accuracy.html.j2", title="t")


def test_names_and_warnings_are_escaped_in_the_accuracy_report(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for w in range(3):
        observed = rng.poisson(np.linspace(0.01, 2, 200))
        for model, risk in (("lightgbm", np.linspace(0.01, 2, 200)), ("<script>alert(1)</script>", np.ones(200))):
            rows.append(pd.DataFrame({"period_start": f"2020-01-{1 + 7 * w:02d}", "cell_id": np.arange(200),
                                      "risk": risk, "observed": observed, "model": model}))
    report = accuracy_report(pd.concat(rows, ignore_index=True), [0.01, 0.05], reference="lightgbm", reps=50)
    report["warnings"] = ["only 3 weeks & <b>wide</b> intervals"]
    page = render_html(report, {"curve": tmp_path / "report_curve.png"}, "Area <x> & co")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>wide</b>" not in page and "only 3 weeks &amp; &lt;b&gt;wide&lt;/b&gt; intervals" in page
    assert "<title>Area &lt;x&gt; &amp; co</title>" in page and '<img src="report_curve.png" alt="curve">' in page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


HOSTILE = "<script>alert('x')</script>"
ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


def test_group_model_and_card_values_are_escaped_in_the_audit_report():
    from hotspot.training.audit.fairness import CellDemography, CellGroups
    from hotspot.training.audit.flags import Forecasts
    from hotspot.training.audit.report import render_html as render_audit
    from hotspot.training.audit.run import audit_forecasts

    label = np.repeat([0, 1], 50).astype(np.int32)
    population = np.zeros((100, 2))
    population[np.arange(100), label] = 10.0
    groups = CellGroups("ab", "majority", (HOSTILE, "B"), "B", population, label, {HOSTILE: "group A", "B": "B"})
    demography = CellDemography(population.sum(1), [groups], {}, source=None, population_column="pop",
                                areas_population=1000.0, covered=np.ones(100))
    rng = np.random.default_rng(0)
    forecasts = Forecasts([HOSTILE, "flat"], ["2020-01-06", "2020-01-13"], rng.random((2, 2, 100)),
                          rng.poisson(0.5, (2, 100)).astype(float))
    audit = audit_forecasts(forecasts, demography, coverage=0.1, reps=50)
    audit.update(title=HOSTILE, inputs={"statement": HOSTILE}, model_card={HOSTILE: {"model": HOSTILE}, "use": HOSTILE})
    page = render_audit(audit, {})
    assert "<script" not in page and ESCAPED in page
    assert f"<h3>{ESCAPED} (audited): largest ratio" in page and f"<td>{ESCAPED}</td><td>group A</td>" in page
    assert f"<td>use</td><td>{ESCAPED}</td>" in page  # a text value of the model card too


def test_the_map_config_cannot_close_its_script():
    import json

    from hotspot.serving.routers.map import config_script

    script = config_script({"area": "</script><script>alert(1)//", "tiles": None})
    assert "</script" not in script and "<" not in script and script.startswith("window.HOTSPOT_MAP = {")
    assert json.loads(script.removeprefix("window.HOTSPOT_MAP = ").removesuffix(";"))["area"].startswith("</script>")
