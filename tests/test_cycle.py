"""The weekly cycle (`hotspot cycle`, issue 17) on the bundled sample split into weekly extracts.

The history starts as the sample before 2019-10-07; each cycle gets the next week's records as an extract in the
inbox, the way an agency delivers them. Auto chooses among the count baselines here (LightGBM's training would make
each cycle slower without testing anything more of the cycle), and retraining is off unless a test turns it on.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from hotspot.features.config import load_config
from hotspot.serving.db import PUBLISHED, PublicationStore, make_engine
from hotspot.steps import cycle as cycle_mod
from hotspot.steps.cycle import CycleRefused, run_cycle, score_publications, until_week
from tests.conftest import SAMPLE_CONFIG, run_cli

pytestmark = pytest.mark.slow

SAMPLE = SAMPLE_CONFIG.parent.parent / "data" / "toronto_sample" / "incidents.parquet"
AREA = "toronto-sample"
FIRST = pd.Timestamp("2019-10-07")
EXTRACT_WEEKS = [FIRST + pd.Timedelta(weeks=i) for i in range(12)]  # 2019-10-07 .. 2019-12-23
PUBLISHED_WEEKS = [str((w + pd.Timedelta(weeks=1)).date()) for w in EXTRACT_WEEKS]  # 2019-10-14 .. 2019-12-30
TABLES = ("publications", "publication_cells", "live_scores", "cycles")


def make_area(folder: Path, cycle: str = "retrain_every = 0") -> Path:
    """The sample as a cycling area in `folder`: base.parquet (before FIRST), extracts/WEEK.parquet, area.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = pd.read_parquet(SAMPLE)
    when = pd.to_datetime(rows["datetime_local"])
    rows[when < FIRST].to_parquet(folder / "base.parquet")
    (folder / "extracts").mkdir(exist_ok=True)
    for week in EXTRACT_WEEKS:
        rows[(when >= week) & (when < week + pd.Timedelta(weeks=1))].to_parquet(
            folder / "extracts" / f"{week.date()}.parquet")
    # the records of 2019-12-30 and -31, the first two days of a week: a stale extract
    rows[when >= pd.Timestamp("2019-12-30")].to_parquet(folder / "extracts" / "partial-2019-12-30.parquet")
    text = SAMPLE_CONFIG.read_text()
    text = text.replace('path = "../data/toronto_sample/incidents.parquet"', 'path = "base.parquet"')
    text, n = re.subn(r"\ndata_end = 2019-12-31\n", "\n", text)
    assert n == 1
    text = text.replace("[backtest]", "[selection]\ncandidates = [\"naive_4w\", \"naive_52w\", \"ewm_hl26\"]\n\n"
                                      f"[cycle]\nproducts = [\"all\"]\n{cycle}\n\n[backtest]")
    config = folder / "area.toml"
    config.write_text(text)
    return config


def deliver(folder: Path, name: str) -> Path:
    """Put extracts/NAME.parquet into the area's inbox, as the agency's weekly export would."""
    inbox = folder / "inbox" / AREA
    inbox.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(folder / "extracts" / f"{name}.parquet", inbox))


def next_week_extract(folder: Path, share: float = 1.0, seed: int = 0) -> str:
    """An extract for the week of 2019-12-30 made from the records of 2019-12-23 moved on a week (new ids), or a
    `share` of them (the rows of the last day always kept, so the week is not stale, only thin)."""
    rows = pd.read_parquet(folder / "extracts" / "2019-12-23.parquet")
    rows["datetime_local"] = pd.to_datetime(rows["datetime_local"]) + pd.Timedelta(weeks=1)
    rows["row_id"] = rows["row_id"] + 10_000_000
    if share < 1:
        last_day = rows["datetime_local"].dt.normalize() == rows["datetime_local"].max().normalize()
        keep = rows.sample(frac=share, random_state=seed).index.union(rows.index[last_day][:2])
        rows = rows.loc[keep]
    name = f"next-{share:g}"
    rows.to_parquet(folder / "extracts" / f"{name}.parquet")
    return name


def cycle(config: Path, **kwargs):
    """One cycle in-process, its report beside the area."""
    return run_cycle(load_config(config), f"sqlite:///{config.parent / 'hotspot.db'}",
                     out_dir=config.parent / "reports", say=lambda _text: None, **kwargs)


def snapshot(folder: Path) -> dict:
    """What a failed cycle must leave as it was: the history's bytes, every row of the store's tables, the inbox."""
    history = folder / "history" / AREA / "incidents.parquet"
    out = {"history": hashlib.sha256(history.read_bytes()).hexdigest() if history.exists() else None,
           "inbox": sorted(p.name for p in (folder / "inbox" / AREA).glob("*") if p.is_file())}
    with sqlite3.connect(folder / "hotspot.db") as conn:
        for table in TABLES:
            out[table] = sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)  # noqa: S608
    assert not (folder / "history" / AREA / ".cycle-staging").exists()
    return out


def clone(area, to: Path) -> Path:
    """A copy of the twelve cycles' area (stores, history, inbox, MLflow) to change without touching the others."""
    shutil.copytree(area.folder, to)
    return to / "area.toml"


@pytest.fixture(scope="module")
def twelve(tmp_path_factory):
    """Twelve cycles in a row from a clean history: each delivers one week's extract and publishes the next week."""
    folder = tmp_path_factory.mktemp("cycle")
    config = make_area(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        mp.chdir(folder)
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
        results = []
        for week in EXTRACT_WEEKS:
            deliver(folder, str(week.date()))
            results.append(cycle(config))
    return SimpleNamespace(folder=folder, config=config, results=results)


def use_tracking(folder: Path, monkeypatch) -> dict:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return {"MLFLOW_TRACKING_URI": uri, "HOTSPOT_DATABASE_URL": f"sqlite:///{folder / 'hotspot.db'}"}


def test_twelve_cycles_publish_and_score_what_one_batch_run_does(twelve, tmp_path, monkeypatch):
    assert [r.status for r in twelve.results] == ["done"] * 12
    assert [r.week for r in twelve.results] == PUBLISHED_WEEKS
    assert not list((twelve.folder / "inbox" / AREA).glob("*.parquet"))  # each extract moved to processed/
    assert len(list((twelve.folder / "inbox" / AREA / "processed").glob("*.parquet"))) == 12
    store = PublicationStore(make_engine(f"sqlite:///{twelve.folder / 'hotspot.db'}"))

    # the batch: the whole history at once, every week published with auto, then every observed week scored
    batch = tmp_path / "batch"
    batch_config = make_area(batch)
    shutil.copytree(twelve.folder / "history", batch / "history")
    use_tracking(batch, monkeypatch)
    monkeypatch.setenv("HOTSPOT_CACHE_DIR", str(batch / "cache"))  # the batch fits from scratch: no stored fits
    from hotspot.steps.common import prepare
    from hotspot.steps.publish import publish_step

    last = pd.Timestamp(PUBLISHED_WEEKS[-1])
    cfg = until_week(load_config(batch_config), last).for_product("all")
    prepared = prepare(cfg, quiet=True)
    publish_step(cfg, PUBLISHED_WEEKS, f"sqlite:///{batch / 'hotspot.db'}", prepared=prepared)
    batch_store = PublicationStore(make_engine(f"sqlite:///{batch / 'hotspot.db'}"))
    batch_scores, _ = score_publications(cfg, prepared, batch_store, last, prepared.incidents.fingerprint)

    # each cycle is its own process: auto's fit at a refit week is kept on disk, forecasts the weeks to the next
    # refit from there, and the next refit starts from its stored scores (training/auto_store.py)
    fits = [store.find(AREA, "all", week).metadata["selection"]["fit"] for week in PUBLISHED_WEEKS]
    assert fits.count("stored") >= 8 and "fitted from the previous refit's stored scores" in fits, fits
    for week in PUBLISHED_WEEKS:
        cycled, batched = store.find(AREA, "all", week), batch_store.find(AREA, "all", week)
        assert cycled.version == 1 and cycled.model_version == batched.model_version, week
        assert {c.cell_id: c.risk for c in store.cells(cycled.id)} == \
            {c.cell_id: c.risk for c in batch_store.cells(batched.id)}, week
    live = {(s.week, s.model): s.metrics for s in store.live_scores(AREA, "all")}
    assert live == {(s.week, s.model): s.metrics for s in batch_scores}
    assert {w for w, m in live if m == PUBLISHED} == set(PUBLISHED_WEEKS[:-1])  # the last week is not recorded yet
    assert {m for _, m in live} >= {PUBLISHED, "naive_4w", "naive_52w", "ewm_hl26", "history"}

    # one cycle record per week, its report on disk and in MLflow; the last one's live record covers 11 weeks
    recorded = store.cycles(AREA)
    assert [c["week"] for c in reversed(recorded)] == PUBLISHED_WEEKS and {c["status"] for c in recorded} == {"done"}
    report = json.loads((twelve.folder / "reports" / PUBLISHED_WEEKS[-1] / "cycle.json").read_text())
    assert report["products"]["all"]["live"]["n_weeks"] == 11
    assert report["products"]["all"]["scored_weeks"] == [PUBLISHED_WEEKS[-2]]
    html = (twelve.folder / "reports" / PUBLISHED_WEEKS[-1] / "cycle.html").read_text()
    assert "Live record" in html and "Drift and decay checks" in html and "data:image/png;base64," in html
    runs = mlflow.MlflowClient(f"sqlite:///{twelve.folder / 'mlflow.db'}").search_runs(
        [mlflow.get_experiment_by_name(AREA).experiment_id], "tags.step = 'cycle'")
    assert len(runs) == 12


def test_a_repeated_cycle_changes_nothing_and_says_so(twelve, tmp_path, monkeypatch):
    config = clone(twelve, tmp_path / "area")
    env = use_tracking(config.parent, monkeypatch)
    before = snapshot(config.parent)
    again = run_cli("cycle", "-c", str(config), env=env, cwd=config.parent)
    assert again.returncode == 0, again.stderr
    assert f"week of {PUBLISHED_WEEKS[-1]}: nothing to do; already published (all v1)" in again.stdout
    assert snapshot(config.parent) == before


def test_dry_run_says_what_it_would_do_and_changes_nothing(twelve, tmp_path, monkeypatch):
    config = clone(twelve, tmp_path / "area")
    env = use_tracking(config.parent, monkeypatch)
    deliver(config.parent, next_week_extract(config.parent))
    before = snapshot(config.parent)
    dry = run_cli("cycle", "-c", str(config), "--dry-run", env=env, cwd=config.parent)
    assert dry.returncode == 0, dry.stderr
    assert "dry run for the week of 2020-01-06: nothing was changed" in dry.stdout
    assert "append next-1.parquet: 176 new rows" in dry.stdout
    assert "all: forecast the week of 2020-01-06 with auto and publish it" in dry.stdout
    assert "all: score 1 published week(s) (2019-12-30 .. 2019-12-30)" in dry.stdout
    assert snapshot(config.parent) == before


def test_a_stale_extract_is_refused_with_exit_code_3_and_nothing_changes(twelve, tmp_path, monkeypatch):
    config = clone(twelve, tmp_path / "area")
    env = use_tracking(config.parent, monkeypatch)
    deliver(config.parent, "partial-2019-12-30")
    before = snapshot(config.parent)
    refused = run_cli("cycle", "-c", str(config), env=env, cwd=config.parent)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "week of 2020-01-06 refused: stale" in refused.stderr
    assert "--accept-incomplete" in refused.stderr
    assert snapshot(config.parent) == before  # the extract stays in the inbox for the next try


def test_a_collapsed_week_is_refused_then_flagged_when_accepted(twelve, tmp_path, monkeypatch):
    config = clone(twelve, tmp_path / "area")
    use_tracking(config.parent, monkeypatch)
    monkeypatch.chdir(config.parent)
    deliver(config.parent, next_week_extract(config.parent, share=0.1))
    before = snapshot(config.parent)
    with pytest.raises(CycleRefused, match=r"week of 2020-01-06 refused: incomplete: .* 10% of the"):
        cycle(config)
    assert snapshot(config.parent) == before
    done = cycle(config, accept_incomplete=True)
    assert done.status == "done" and done.report["freshness"]["accepted_anyway"]
    volume = next(c for c in done.report["flags"] if c["kind"] == "volume")
    assert volume["product"] == "all" and volume["observed"] < volume["lo"]
    assert "volume" in done.sentence
    html = done.paths["html"].read_text()
    assert "accepted with problems" in html and "to look at" in html


def test_late_records_rescore_the_week_and_say_how_much_it_moved(twelve, tmp_path, monkeypatch):
    config = clone(twelve, tmp_path / "area")
    use_tracking(config.parent, monkeypatch)
    monkeypatch.chdir(config.parent)
    store = PublicationStore(make_engine(f"sqlite:///{config.parent / 'hotspot.db'}"))
    scored = {s.week: s for s in store.live_scores(AREA, "all") if s.model == PUBLISHED}
    # 40 incidents of 2019-12-16 that the agency recorded late (new ids), delivered with no new week
    rows = pd.read_parquet(config.parent / "extracts" / "2019-12-16.parquet").head(40)
    rows["row_id"] = rows["row_id"] + 20_000_000
    late = config.parent / "late.parquet"
    rows.to_parquet(late)
    done = cycle(config, append=[late], week=PUBLISHED_WEEKS[-1])
    assert done.status == "done" and done.report["history"]["appended"][0]["late"] == 40
    entry = done.report["products"]["all"]
    assert entry["published"] is None and entry["already_published"] == 1  # the week stays as published
    (moved,) = entry["rescored"]
    assert moved["week"] == "2019-12-16" and moved["observed_now"] == moved["observed_before"] + 40
    assert moved["observed_before"] == scored["2019-12-16"].observed_total
    now = {s.week: s for s in store.live_scores(AREA, "all") if s.model == PUBLISHED}
    assert now["2019-12-16"].observed_total == scored["2019-12-16"].observed_total + 40
    history = [s for s in store.live_scores(AREA, "all", current=False) if s.week == "2019-12-16"
               and s.model == PUBLISHED]
    assert len(history) == 2  # the first score is kept: the live report says how much the week moved
    assert "Weeks re-scored after late records" in done.paths["html"].read_text()


SEAMS = ["stage_history", "check_fresh", "retrain", "forecast", "score_publications", "watch", "area_mix",
         "commit", "inside the transaction"]


def test_a_crash_in_any_step_leaves_the_stores_as_they_were(twelve, tmp_path, monkeypatch):
    config = clone(twelve, tmp_path / "area")
    use_tracking(config.parent, monkeypatch)
    monkeypatch.chdir(config.parent)
    deliver(config.parent, next_week_extract(config.parent))
    before = snapshot(config.parent)

    def boom(*_args, **_kwargs):
        raise RuntimeError("injected crash")

    for seam in SEAMS:
        with monkeypatch.context() as mp:
            if seam == "inside the transaction":  # the publications and scores are written, then the cycle fails
                def commit(store, area, pending, scores, record):
                    return store.commit_cycle(area, pending, scores, record,
                                              on_step=lambda step: boom() if step == "cycle" else None)
                mp.setattr(cycle_mod, "commit", commit)
            else:
                mp.setattr(cycle_mod, seam, boom)
            with pytest.raises(RuntimeError, match="injected crash"):
                cycle(config)
        assert snapshot(config.parent) == before, seam
    done = cycle(config)  # nothing was left half-done: the next run does the week
    assert done.status == "done" and done.week == "2020-01-06"
    assert snapshot(config.parent)["history"] != before["history"]


def test_a_decayed_champion_is_flagged_and_replaced_through_the_gate(tmp_path, monkeypatch):
    # the champion is a flat forecast (every cell the same rate); decay is judged over 3 scored weeks
    config = make_area(tmp_path / "area", cycle='model = "champion"\nretrain_every = 52\nretrain_model = "flat"\n'
                                              "[cycle.drift]\nwindow_weeks = 3\nmin_weeks = 3\n"
                                              'on_decay = "baseline"')
    use_tracking(config.parent, monkeypatch)
    monkeypatch.chdir(config.parent)
    results = []
    for week in EXTRACT_WEEKS[:5]:
        deliver(config.parent, str(week.date()))
        results.append(cycle(config))
    first = results[0].report["products"]["all"]
    assert first["retrain"]["model"] == "flat" and first["retrain"]["promoted"]
    assert first["published"]["model_version"] == "1"
    flagged = results[3].report["products"]["all"]
    decay = next(c for c in flagged["drift"]["flags"] if c["kind"] == "decay")
    assert decay["flag"] and decay["difference"] < 0 and decay["hi"] < 0 and len(decay["weeks"]) == 3
    assert flagged["next"]["action"] == "baseline" and flagged["next"]["model"] == decay["baseline_name"]
    assert not any(c["kind"] == "decay" for c in results[2].report["flags"])  # 2 weeks scored: too few to judge
    recovered = results[4].report["products"]["all"]
    assert recovered["retrain"]["model"] == decay["baseline_name"] and recovered["retrain"]["promoted"]
    assert "decay flagged" in recovered["retrain"]["why"]
    assert recovered["published"]["model_version"] == str(recovered["retrain"]["version"]) != "1"
    from hotspot.training.registry import champion_version

    assert str(champion_version(load_config(config).for_product("all"))) == str(recovered["retrain"]["version"])
    # the new champion starts a new record: its weeks are judged on their own
    assert not any(c["kind"] == "decay" for c in results[4].report["flags"])


def test_a_report_that_cannot_be_written_leaves_the_cycle_stored_and_the_next_run_writes_it(twelve, tmp_path,
                                                                                           monkeypatch):
    config = clone(twelve, tmp_path / "area")
    use_tracking(config.parent, monkeypatch)
    monkeypatch.chdir(config.parent)
    deliver(config.parent, next_week_extract(config.parent))
    said: list[str] = []
    with monkeypatch.context() as mp:
        mp.setattr(cycle_mod, "write_report", lambda *_a: (_ for _ in ()).throw(OSError("disk full")))
        done = run_cycle(load_config(config), f"sqlite:///{config.parent / 'hotspot.db'}",
                         out_dir=config.parent / "reports", say=said.append)
    assert done.status == "done" and done.paths == {} and any("disk full" in s for s in said)
    assert not (config.parent / "reports" / "2020-01-06").exists()
    store = PublicationStore(make_engine(f"sqlite:///{config.parent / 'hotspot.db'}"))
    assert store.find(AREA, "all", "2020-01-06") is not None and store.cycles(AREA, 1)[0]["week"] == "2020-01-06"
    again = cycle(config)
    assert again.status == "noop" and again.paths["html"].exists()
    assert json.loads(again.paths["json"].read_text())["cycle_id"] == done.cycle_id
