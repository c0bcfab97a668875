"""The weekly briefing (`hotspot briefing`): a PDF and an HTML page on the sample with a trained champion, rendered
to a page image, holding the title, the top list by place and the caveat; its hit rates recomputed from the panel's
recorded counts; and a clear exit 2 for a week outside the panel, no champion, or a file that cannot be written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE_CONFIG, run_cli, write_config
from tests.serving.conftest import skip_or_fail

WEEK = "2019-12-30"  # the sample's first unrecorded week (its data end 2019-12-31 falls inside it)


@pytest.fixture(scope="module")
def trained_sample(tmp_path_factory) -> dict[str, str]:
    """A champion trained on the bundled sample, in its own MLflow store (the environment for run_cli)."""
    folder = tmp_path_factory.mktemp("briefing_sample")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    proc = run_cli("train", "--config", str(SAMPLE_CONFIG), "--params", "config", env=env, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return env


def _pdf_text(path: Path) -> str:
    if not shutil.which("pdftotext"):
        skip_or_fail("pdftotext (poppler-utils) is not installed; .ci/run installs it")
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_briefing_writes_a_pdf_and_an_html_page(trained_sample, tmp_path):
    pdf, html = tmp_path / "out" / "briefing.pdf", tmp_path / "briefing.html"
    proc = run_cli("briefing", "-c", str(SAMPLE_CONFIG), "--week", WEEK, "--out", str(pdf), env=trained_sample)
    assert proc.returncode == 0, proc.stderr
    assert "last week (2019-12-23): the top 10 cells held" in proc.stdout
    assert pdf.read_bytes().startswith(b"%PDF")
    if not shutil.which("pdftoppm"):
        skip_or_fail("pdftoppm (poppler-utils) is not installed; .ci/run installs it")
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert 1 <= len(pages) <= 2, f"{len(pages)} pages"  # one or two printable pages
    text = _pdf_text(pdf)
    assert "Weekly briefing: All offences · toronto-sample" in text  # the default product, by its title
    assert "Other forecast products" not in text  # nothing to pick on paper
    assert "Mon 30 Dec 2019 to Sun 5 Jan 2020" in text
    assert "model auto: " in text and "auto, the selection rule" in text  # auto, as the map and the forecast
    assert "toronto-sample-all v1" not in text
    assert "Church-Yonge Corridor" in text and "Moss Park" in text  # the places of the sample's top cells
    assert "How last week's forecast did" in text and "naive_4w" in text
    assert "not ground truth" in text

    proc = run_cli("briefing", "-c", str(SAMPLE_CONFIG), "--week", WEEK, "--out", str(html), "--top", "5",
                   "--paper", "letter", "--model", "champion", env=trained_sample)
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert "<title>Weekly briefing: All offences · toronto-sample</title>" in page
    assert "Other forecast products for toronto-sample: Assault, Break and enter." in page
    assert "@page { size: letter" in page and "@media print" in page
    table = page[page.index('<table class="top">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr><td class=\"rank\">") == 5
    assert "Church-Yonge Corridor" in table
    assert "recorded incidents are policing data, not ground truth" in page
    assert "<svg" in page and "http://" not in page.split("<svg", 1)[0]  # the map inline, nothing fetched


def champion_briefing(trained_sample, sample_prepared, monkeypatch, **kwargs):
    """The sample's briefing of WEEK (top 10) with the trained sample's champion, and what made it (prepared, model,
    ref) for a second briefing."""
    import mlflow

    from hotspot.features.places import build_places
    from hotspot.features.prepared import Prepared
    from hotspot.training.briefing import build_briefing
    from hotspot.training.forecast_model import ForecastModel
    from hotspot.training.registry import load_champion

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_sample["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(trained_sample["MLFLOW_TRACKING_URI"])
    cfg, result, panel = sample_prepared
    prepared = Prepared(result, panel, {}, build_places(cfg, result.accepted, result.grid, result.area))
    model, ref = load_champion(cfg)
    chosen = ForecastModel(model, ref, None, champion=True)
    return build_briefing(cfg, prepared, lambda t: chosen, WEEK, top=10, **kwargs), (prepared, chosen)


def test_briefing_hit_rates_match_the_recorded_counts(trained_sample, sample_prepared, monkeypatch, tmp_path):
    from hotspot.models import RecentCounts
    from hotspot.training.evaluation.metrics import hits_at

    cfg, result, panel = sample_prepared
    b, (prepared, _) = champion_briefing(trained_sample, sample_prepared, monkeypatch)

    e = panel.period_index("2019-12-23")
    observed = panel.target[e]
    lw = b.last_week
    assert lw.week_start == "2019-12-23" and lw.week_end == "2019-12-29" and lw.note == ""
    assert lw.recorded == int(observed.sum())
    assert len(lw.forecast_cells) == 10
    assert lw.forecast.hits == pytest.approx(float(observed[list(lw.forecast_cells)].sum()))
    assert lw.forecast.hit_rate == pytest.approx(lw.forecast.hits / observed.sum())
    assert "refitted on the weeks before 2019-12-23" in lw.how  # the champion was trained on that week
    # a baseline recomputed by hand from the recorded counts before that week: the mean of the last 4 weeks
    naive = {s.model: s for s in lw.baselines}["naive_4w"]
    risk = panel.target[e - 4:e].mean(axis=0)
    assert naive.hits == pytest.approx(hits_at(risk, observed, 10))
    assert RecentCounts(weeks=4).fit(panel.until(e)).predict(panel.until(e)) == pytest.approx(risk)
    assert lw.best_baseline.hits == max(s.hits for s in lw.baselines)
    # what changed: new cells were outside last week's top 10, cells that left are outside this week's
    assert [c.rank for c in b.top] == list(range(1, 11))
    assert all(c.last_rank > 10 for c in b.top if c.new) and all(c.last_rank <= 10 for c in b.top if not c.new)
    assert all(c.last_rank <= 10 < c.rank for c in b.left)
    assert len(b.left) == sum(c.new for c in b.top)
    assert b.top[0].place == prepared.places.cell_place[b.top[0].cell]

    # reasons long enough to push the provenance onto a third page: the PDF keeps the first ones and says so
    import dataclasses

    from hotspot.training.briefing_render import render_pdf

    long = tuple(f"reason {i}: " + "a long explanation of what this cell's history says " * 4 for i in range(5))
    wordy = dataclasses.replace(b, top=tuple(dataclasses.replace(c, reasons=long) for c in b.top))
    pdf = tmp_path / "wordy.pdf"
    pdf.write_bytes(render_pdf(wordy))
    text = _pdf_text(pdf)
    assert "Provenance" in text and "reason 0:" in text and "reason 4:" not in text
    assert "all in the HTML" in text
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "Pages:           2" in pages, pages


def test_the_default_briefing_is_autos_forecast_scored_as_it_was_made(sample_prepared, monkeypatch, tmp_path):
    """auto's briefing shows and scores what auto forecast: last week's forecast is auto fitted at that week's refit
    week with only the weeks before it (no champion needed), the top cells carry reasons, and the provenance says
    what auto weighed or chose."""
    import mlflow

    from hotspot.features.places import build_places
    from hotspot.features.prepared import Prepared
    from hotspot.training.briefing import build_briefing
    from hotspot.training.briefing_render import render_html
    from hotspot.training.evaluation.metrics import hits_at
    from hotspot.training.forecast_model import fit_auto, models_by_week

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # an empty store: no champion
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("HOTSPOT_CACHE_DIR", str(tmp_path / "cache"))
    cfg, result, panel = sample_prepared
    prepared = Prepared(result, panel, {}, build_places(cfg, result.accepted, result.grid, result.area))
    b = build_briefing(cfg, prepared, models_by_week(cfg, panel, result.fingerprint), WEEK, top=10)
    assert b.model == "auto" and b.model_label.startswith("auto: ") and "auto, the selection rule" in b.model_words
    e = panel.period_index("2019-12-23")
    lw = b.last_week
    assert lw.forecast.model == b.model_label.replace(b.model_version, fit_auto(cfg, panel, e, None).ref.version)
    assert "auto as it forecast that week" in lw.how and "with only the weeks before it" in lw.how
    risk = fit_auto(cfg, panel, e, result.fingerprint).model.predict(panel.until(e))
    assert lw.forecast.hits == pytest.approx(hits_at(risk, panel.target[e], 10))
    assert all(c.reasons for c in b.top[:3])  # auto's forecast explains its top cells
    page = render_html(b)
    assert f"model {b.model_label}" in page and "(the champion)" not in page


def test_last_week_not_fully_recorded_is_said_and_the_latest_full_week_scored(tmp_path):
    # the config's data end is two weeks past the last incident: the week before the briefing has no records yet
    from hotspot.features.config import load_config
    from hotspot.features.prepared import prepare
    from hotspot.training.briefing import scored_week

    cfg = load_config(write_config(tmp_path / "area", extra="[period]\ndata_end = 2021-08-01"))
    prepared = prepare(cfg)
    panel = prepared.panel
    last = prepared.incidents.accepted["occurred_at"].max()
    t = panel.n_periods
    e, note, missing = scored_week(panel, t, last, cfg.period.freq)
    assert missing == "" and e < t - 1
    assert panel.period_starts[e + 1] - np.timedelta64(1, "D") <= last.normalize()  # e ends within the records
    assert panel.period_starts[e + 2] - np.timedelta64(1, "D") > last.normalize()  # the next one does not
    assert "is not fully recorded" in note and str(last.date()) in note
    assert scored_week(panel, t, panel.period_starts[t], cfg.period.freq)[0] == t - 1  # fully recorded: last week


def test_briefing_refuses_bad_input_with_one_line(trained_sample, tmp_path):
    cfg = str(SAMPLE_CONFIG)
    outside = run_cli("briefing", "-c", cfg, "--week", "2025-01-06", "--out", str(tmp_path / "b.pdf"),
                      env=trained_sample)
    assert outside.returncode == 2 and "week 2025-01-06" in outside.stderr and "not a period start" in outside.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = run_cli("briefing", "-c", cfg, "--out", str(blocker / "b.pdf"), env=trained_sample)
    assert unwritable.returncode == 2 and f"cannot write the briefing to {blocker / 'b.pdf'}" in unwritable.stderr
    folder = run_cli("briefing", "-c", cfg, "--out", str(tmp_path), env=trained_sample)
    assert folder.returncode == 2 and "it is a folder" in folder.stderr
    suffix = run_cli("briefing", "-c", cfg, "--out", str(tmp_path / "b.docx"), env=trained_sample)
    assert suffix.returncode == 2 and "b.docx" in suffix.stderr and "--format" in suffix.stderr
    none = run_cli("briefing", "-c", cfg, "--out", str(tmp_path / "b.pdf"), "--model", "champion",
                   env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert none.returncode == 2 and "no champion model" in none.stderr
    assert not (tmp_path / "b.pdf").exists()
    for proc in (outside, unwritable, folder, suffix, none):
        assert "Traceback" not in proc.stderr


def _live_record(weeks: list[str]) -> dict:
    from hotspot.training.monitoring.live import PUBLISHED, live_record

    def metrics(hit: float) -> dict:
        return {"hit_rate@1%": hit, "pai@1%": 50 * hit, "pei@1%": 0.5, "hit_rate@5%": 2 * hit, "pai@5%": 20 * hit,
                "pei@5%": 0.6, "poisson_deviance": 1.0}

    scores = []
    for i, week in enumerate(weeks):
        scores += [{"week": week, "model": PUBLISHED, "observed_total": 200 + i, "metrics": metrics(0.11 + i / 100),
                    "scored_at": None},
                   {"week": week, "model": "naive_4w", "observed_total": 200 + i, "metrics": metrics(0.07),
                    "scored_at": None}]
    return live_record(scores)


def test_live_record_section_with_live_data_and_none_without(trained_sample, sample_prepared, monkeypatch, tmp_path):
    import dataclasses

    from hotspot.training.briefing import build_briefing
    from hotspot.training.briefing_render import render_html, render_pdf

    cfg, result, panel = sample_prepared
    weeks = [str(d.date()) for d in panel.period_starts[-10:]]
    live = _live_record(weeks)
    b, (prepared, chosen) = champion_briefing(trained_sample, sample_prepared, monkeypatch, live=live)
    assert b.live is live and build_briefing(cfg, prepared, lambda t: chosen, WEEK, top=10,
                                             live=_live_record([])).live is None  # nothing scored: no section

    page = render_html(b)
    section = page[page.index("The live record: how the published forecasts did (the last 8 of 10 weeks)"):]
    section = section[:section.index("Provenance")]
    assert section.count("<tr><td>") == 8 and "4 Nov 2019" not in section  # the latest 8 weeks only
    assert "30 Dec 2019" in section and "20%" in section and "7%" in section  # the latest week: 0.20 against 0.07
    assert "best baseline (naive_4w)" in section and live["sentence"] in section
    pdf = tmp_path / "live.pdf"
    pdf.write_bytes(render_pdf(b))
    text = _pdf_text(pdf)
    assert "The live record: how the published forecasts did" in text and "best baseline (naive_4w)" in text
    assert "The best baseline is chosen in" in text and "20%" in text
    assert "Pages:           2" in subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout

    plain = dataclasses.replace(b, live=None)
    assert "live record" not in render_html(plain).lower()
    pdf.write_bytes(render_pdf(plain))
    assert "live record" not in _pdf_text(pdf).lower()

    # no room on two pages (long reasons): the PDF gives the live record in two lines and points to the HTML
    long = tuple(f"reason {i}: " + "a long explanation of what this cell's history says " * 4 for i in range(3))
    wordy = dataclasses.replace(b, top=tuple(dataclasses.replace(c, reasons=long) for c in b.top))
    pdf.write_bytes(render_pdf(wordy))
    text = _pdf_text(pdf)
    flat = " ".join(text.split())
    assert "Live record (10 published weeks scored): the forecasts caught" in flat and "Provenance" in text
    assert "the best baseline (naive_4w)" in flat and "Week by week in the HTML briefing." in flat
    assert "Pages:           2" in subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
