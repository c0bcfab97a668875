"""The weekly cycle (`hotspot cycle`): one idempotent run of the week, the way an agency would schedule it.

In order: (1) stage the incident history and append the new extracts of the inbox (and `--append` files) to the
staged copy; (2) refuse stale or incomplete data (features.freshness, exit code 3); (3) per product, retrain and run
the promotion gate when the cadence (or the previous cycle's decay or drift flag) says so; (4) forecast the week
with `cycle.model` (auto by default); (5) score every earlier published week whose outcome is now recorded, beside
the count baselines on the same weeks, and again when late records changed what a week recorded; (6) watch drift
and decay (training/monitoring/drift.py); (7) commit the publications, live scores and the cycle record in ONE
transaction of the publications store, then put the staged history in place with one `os.replace`, then move the
extracts to inbox/processed; (8) write the cycle report (JSON, HTML) and log it to MLflow.

Nothing is stored before (7): a failure at any earlier step leaves the history and the publications as they were
(the staged copy is dropped). What a retrain registers in MLflow stays, as a record of what was tried (a version
promoted by a cycle that then failed is the champion; the next cycle uses it). Running the cycle again for a week
it already completed, with no new records, changes nothing and says so.

The week: the one after the week holding the newest record (or `--week`); the cycle sets `period.data_end` to the
day before it, so the panel observes every week before it and forecasts it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.prepared import Prepared
from hotspot.steps.common import prepare

EXIT_REFUSED = 3  # stale or incomplete data: the cycle changed nothing
COVERAGES = [0.01, 0.05]


class CycleRefused(HotspotError):
    """The week's data is stale or incomplete; nothing was changed (exit code 3)."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass
class CycleResult:
    week: str
    status: str  # done | noop | dry-run
    sentence: str
    report: dict
    paths: dict[str, Path] = field(default_factory=dict)
    cycle_id: int | None = None


def clean(value):
    """JSON-safe copy: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------------- (1) staging
def extracts_in(cfg: StudyConfig) -> list[Path]:
    """The inbox's extracts not yet processed, in name order (name them by date: 2024-05-06.csv)."""
    inbox = cfg.inbox_dir
    if inbox is None or not inbox.is_dir():
        return []
    return sorted(p for p in inbox.glob(cfg.cycle.pattern) if p.is_file() and not p.name.startswith("."))


def staged_config(cfg: StudyConfig, folder: Path) -> StudyConfig:
    """The config with its history in `folder` (the cycle's staged copy)."""
    return cfg.model_copy(update={"history": cfg.history.model_copy(update={"path": folder})})


def until_week(cfg: StudyConfig, week: pd.Timestamp) -> StudyConfig:
    """The config observing every week before `week`: period.data_end the day before it."""
    end = (pd.Timestamp(week) - pd.Timedelta(days=1)).date()
    return cfg.model_copy(update={"period": cfg.period.model_copy(update={"data_end": end})})


def stage_history(cfg: StudyConfig, staging: Path, files: list[Path], source: str | None,
                  quarantine_dir: Path) -> tuple[StudyConfig, list[dict], bool]:
    """Copy the history into `staging` (or build it from the config's sources when none exists) and append each
    file to the copy. Returns the staged config, one summary per file, and whether the history was built."""
    from hotspot.features import history, safe_csv

    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    real = history.stored_file(cfg)
    staged = staged_config(cfg, staging)
    built = real is None
    if built:
        history.build(staged)
    else:
        shutil.copy2(real, staging / history.FILE_NAME)
    done = []
    for f in files:
        report = history.append(staged, f, source)
        q_path = None
        if report.quarantine is not None and len(report.quarantine):
            q_path = safe_csv.write_csv(report.quarantine, quarantine_dir / f"quarantine-{f.stem}.csv")
        done.append({"file": f.name, "added": report.added, "already_stored": report.already_stored,
                     "quarantined": int(len(report.quarantine)) if report.quarantine is not None else 0,
                     "quarantine_file": str(q_path) if q_path else None, "late": report.late,
                     "late_periods": report.late_periods})
    return staged, done, built


# ---------------------------------------------------------------------------------------------------- (2) the week
def choose_week(cfg: StudyConfig, occurred_at: pd.Series, week: str | None) -> pd.Timestamp:
    """`week` (checked to be a period start), else the period after the one holding the newest record."""
    offset = pd.tseries.frequencies.to_offset(cfg.period.freq)
    if week is not None:
        ts = pd.Timestamp(week)
        if not offset.is_on_offset(ts):
            raise HotspotError(f"--week {week}: not the start of a {cfg.period.freq} period (e.g. "
                               f"{offset.rollback(ts).date()})")
        return ts
    return offset.rollback(pd.Timestamp(occurred_at.max()).normalize()) + offset


def check_fresh(cfg: StudyConfig, occurred_at: pd.Series, week: pd.Timestamp, accept_incomplete: bool) -> dict:
    """features.freshness on the staged history; CycleRefused when it fails and `accept_incomplete` is off."""
    from hotspot.features import freshness

    offset = pd.tseries.frequencies.to_offset(cfg.period.freq)
    days = int(((week + offset) - week) / pd.Timedelta(days=1))
    result = freshness.check(occurred_at, week, days, cfg.cycle.freshness)
    summary = {"ok": result.ok, "problems": result.problems, "figures": clean(result.figures),
               "accepted_anyway": bool(not result.ok and accept_incomplete)}
    if not result.ok and not accept_incomplete:
        raise CycleRefused(f"week of {week.date()} refused: " + "; ".join(result.problems)
                           + " (nothing was changed; rerun with --accept-incomplete to publish anyway)",
                           {"week": str(week.date()), "status": "refused", "freshness": summary})
    return summary


# ---------------------------------------------------------------------------------------------------- (3) retrain
def retrain_due(cfg: StudyConfig, week: pd.Timestamp, action: dict | None) -> tuple[str | None, str]:
    """Why this product is retrained this cycle (None: not due), and the model a retrain registers."""
    from hotspot.training.registry import list_versions

    model = cfg.cycle.retrain_model
    if action:
        return action["reason"], (action.get("model") or model) if action["action"] == "baseline" else model
    every = cfg.cycle.retrain_every
    if every <= 0:
        return None, model
    versions = list_versions(cfg)
    if not versions:
        return "no registered version yet", model
    last = versions[0]["tags"].get("train_last_period")
    if not last:
        return None, model
    observed = pd.Timestamp(week) - pd.Timedelta(weeks=1)
    age = int(round((observed - pd.Timestamp(last)) / pd.Timedelta(weeks=1)))
    if age >= every:
        return f"the newest version (v{versions[0]['version']}) was trained on weeks up to {last}, {age} weeks " \
               f"before the last observed week; cycle.retrain_every = {every}", model
    return None, model


def retrain(cfg: StudyConfig, prepared: Prepared, week: pd.Timestamp, action: dict | None) -> dict | None:
    """Register a freshly trained version when due and put it through the promotion gate; what happened, or None."""
    from hotspot.steps.modelling import promote_step, train_step
    from hotspot.training.promotion import decision_words

    why, model_name = retrain_due(cfg, week, action)
    if why is None:
        return None
    start = time.perf_counter()
    _, ref = train_step(cfg, prepared=prepared, model_name=model_name)
    from hotspot.training.registry import champion_version

    out = {"why": why, "model": model_name, "version": ref.version}
    if champion_version(cfg) == ref.version and not action:
        out.update({"promoted": True, "decision": "the first registered version is the champion"})
    else:
        decision = promote_step(cfg, ref.version, prepared=prepared)
        # the words are the registry description's (Markdown); the cycle report shows them as text
        out.update({"promoted": bool(decision.promoted), "decision": decision_words(decision).replace("**", "")})
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


# ---------------------------------------------------------------------------------------------------- (4) forecast
def forecast(cfg: StudyConfig, prepared: Prepared, week: pd.Timestamp):
    """The week's forecast rows with cycle.model (auto by default), ready for the store."""
    from hotspot.serving.publishing import Forecaster

    forecaster = Forecaster(cfg, pin=cfg.cycle.model)
    forecaster.prepared = prepared
    return forecaster.forecast(str(week.date()))


# ---------------------------------------------------------------------------------------------------- (5) scoring
def baseline_models(cfg: StudyConfig) -> list:
    """The baselines a live score compares the published forecast with."""
    from hotspot.training.backtest import COUNT_BASELINES, available_models

    return [factory() for name, factory in available_models(cfg).items() if name.startswith(COUNT_BASELINES)]


def score_publications(cfg: StudyConfig, prepared: Prepared, store, week: pd.Timestamp, fingerprint: str
                       ) -> tuple[list, list[dict]]:
    """Live scores for every publication of the product (latest version per week) whose week is observed and not
    yet scored with what is recorded now: the published forecast and each count baseline, fitted on the weeks
    before it. Returns (scores, rescored: weeks whose recorded count changed since they were last scored)."""
    from hotspot.serving.db import PUBLISHED, LiveScore
    from hotspot.training.evaluation.metrics import week_metrics

    panel = prepared.panel
    area, product = cfg.area.name, cfg.product.name
    current = {(s.publication_id, s.model): s for s in store.live_scores(area, product)}
    latest: dict[str, object] = {}
    for pub in store.list(area, product, limit=100_000):
        if pub.week < str(week.date()) and pub.week not in latest:  # highest version first
            latest[pub.week] = pub
    baselines = baseline_models(cfg)
    index = {int(c): i for i, c in enumerate(panel.grid.cell_id)}
    scores, rescored = [], []
    for wk, pub in sorted(latest.items()):
        try:
            t = panel.period_index(wk)
        except ValueError:
            continue  # before the panel's first week
        if t >= panel.n_periods or t <= panel.min_history:
            continue
        observed = panel.target[t]
        total = int(observed.sum())
        before = current.get((pub.id, PUBLISHED))
        if before is not None and before.observed_total == total:
            continue
        risk = np.zeros(panel.grid.n_cells)
        for c in store.cells(pub.id):
            i = index.get(int(c.cell_id))
            if i is not None:
                risk[i] = c.risk
        metrics = clean(week_metrics(risk, observed, COVERAGES))
        scores.append(LiveScore(pub.id, product, wk, PUBLISHED, total, metrics, fingerprint))
        known = panel.until(t)
        for model in baselines:
            b = clean(week_metrics(model.fit(known).predict(known), observed, COVERAGES))
            scores.append(LiveScore(pub.id, product, wk, model.name, total, b, fingerprint))
        if before is not None:
            rescored.append({"week": wk, "observed_before": before.observed_total, "observed_now": total,
                             "pai@1%_before": before.metrics.get("pai@1%"), "pai@1%_now": metrics.get("pai@1%")})
    return scores, rescored


def live_rows(store, cfg: StudyConfig, new_scores: list) -> list[dict]:
    """The product's current live scores with this cycle's new ones in place of what they re-score."""
    current = {(s.publication_id, s.model): s for s in store.live_scores(cfg.area.name, cfg.product.name)}
    for s in new_scores:
        current[(s.publication_id, s.model)] = s
    return [{"week": s.week, "model": s.model, "observed_total": s.observed_total, "metrics": s.metrics,
             "publication_id": s.publication_id} for s in sorted(current.values(), key=lambda s: (s.week, s.model))]


# ---------------------------------------------------------------------------------------------------- (6) drift
def watch(cfg: StudyConfig, prepared: Prepared, live: list[dict], store, week: pd.Timestamp) -> dict:
    """Drift and decay of one product: the last observed week's volume, incidents in cells with none before, the
    forecast week's feature distributions against the lookback weeks, and live PAI against the best baseline."""
    from hotspot.serving.db import PUBLISHED
    from hotspot.training.monitoring import drift

    dc = cfg.cycle.drift
    panel = prepared.panel
    T = panel.n_periods
    last = str(panel.period_starts[T - 1].date())
    weekly = pd.Series(panel.target.sum(axis=1), index=panel.period_starts[:T])
    checks = [drift.volume_check(weekly, panel.period_starts[T - 1], dc.lookback_weeks, dc.volume_level)]
    seen = panel.grid.cell_id[panel.target[: T - 1].sum(axis=0) > 0]
    week_cells = np.repeat(panel.grid.cell_id, panel.target[T - 1].astype(int))
    checks.append(drift.outside_share(week_cells, seen, dc.outside_share, week=last,
                                      usual=usual_outside(panel.target[:T - 1], dc.lookback_weeks),
                                      alpha=dc.outside_alpha))
    ref = panel.X[max(0, T - dc.lookback_weeks):T].reshape(-1, panel.X.shape[2])
    checks.append(drift.feature_psi(panel.X[T], ref, list(panel.feature_names), dc.psi_threshold,
                                    week=str(week.date())))
    # decay: the published forecasts against the best count baseline on the same weeks; when a pinned champion
    # publishes, only the weeks it published count (a new champion starts a new record)
    judged = live
    if cfg.cycle.model == "champion":
        from hotspot.training.registry import champion_version

        champ = champion_version(cfg)
        pubs = {p.id: p for p in store.list(cfg.area.name, cfg.product.name, limit=100_000)}
        ids = {r["publication_id"] for r in live if r["publication_id"] in pubs
               and pubs[r["publication_id"]].model_version == str(champ)}
        judged = [r for r in live if r["publication_id"] in ids]
    published = {r["week"]: r["metrics"].get("pai@1%") for r in judged if r["model"] == PUBLISHED}
    weeks = sorted(w for w, v in published.items() if v is not None)[-dc.window_weeks:]
    by_model: dict[str, dict[str, float]] = {}
    for r in judged:
        if r["model"] != PUBLISHED and r["week"] in weeks and r["metrics"].get("pai@1%") is not None:
            by_model.setdefault(r["model"], {})[r["week"]] = r["metrics"]["pai@1%"]
    complete = {m: v for m, v in by_model.items() if all(w in v for w in weeks)}
    if complete and weeks:
        best = max(complete, key=lambda m: np.mean([complete[m][w] for w in weeks]))
        checks.append(drift.decay_check(weeks, [published[w] for w in weeks], [complete[best][w] for w in weeks],
                                        best, dc.window_weeks, dc.min_weeks, compared=len(complete),
                                        alpha=dc.decay_alpha))
    else:
        checks.append(drift.decay_check([], [], [], "", dc.window_weeks, dc.min_weeks))
    for c in checks:
        c["product"] = cfg.product.name
    return {"checks": checks, **drift.summarise(checks)}


def usual_outside(target: np.ndarray, lookback_weeks: int) -> tuple[int, int]:
    """(incidents in cells with none before their week, incidents) summed over the last `lookback_weeks` weeks of
    `target` (weeks x cells), each week against the cells seen in the weeks before it."""
    seen_before = np.vstack([np.zeros((1, target.shape[1]), bool), np.cumsum(target, axis=0)[:-1] > 0])
    weeks = slice(max(1, len(target) - lookback_weeks), len(target))
    counts = target[weeks]
    return int(counts[~seen_before[weeks]].sum()), int(counts.sum())


def next_action(cfg: StudyConfig, watched: dict) -> dict | None:
    """What the next cycle does about this cycle's flags ([cycle.drift] on_decay, on_drift), with its reason."""
    dc = cfg.cycle.drift
    for c in watched["flags"]:
        if c["kind"] == "decay" and dc.on_decay != "flag":
            return {"action": dc.on_decay, "model": c.get("baseline_name") if dc.on_decay == "baseline" else None,
                    "reason": f"decay flagged in the cycle of {c.get('week') or 'the last week'}: {c['sentence']}"}
    for c in watched["flags"]:
        if c["kind"] in ("volume", "outside", "features", "mix") and dc.on_drift == "retrain":
            return {"action": "retrain", "model": None, "reason": f"data drift flagged: {c['sentence']}"}
    return None


def area_mix(cfg: StudyConfig, rows: pd.DataFrame, week: pd.Timestamp) -> dict:
    """The offence mix of the last observed week against the lookback weeks (all offences of the area)."""
    from hotspot.training.monitoring import drift

    offset = pd.tseries.frequencies.to_offset(cfg.period.freq)
    times = pd.to_datetime(rows["occurred_at"])
    keep = times < week
    starts = times[keep].dt.normalize().map(offset.rollback)
    table = pd.crosstab(starts, rows.loc[keep, "offense"].astype(str))
    table.index = pd.DatetimeIndex(table.index)
    check = drift.mix_check(table, offset.rollback(week - pd.Timedelta(days=1)), cfg.cycle.drift.lookback_weeks,
                            cfg.cycle.drift.mix_alpha)
    check["product"] = None
    return check


# ---------------------------------------------------------------------------------------------------- the cycle
def pending_actions(cycles: list[dict], week: str) -> dict[str, dict]:
    """The actions the newest completed cycle before `week` left for this one, per product."""
    for c in cycles:
        if c["status"] == "done" and c["week"] < week:
            return {p: r["next"] for p, r in c["report"].get("products", {}).items() if r.get("next")}
    return {}


def run_cycle(cfg: StudyConfig, database_url: str, week: str | None = None, append: list[Path] | None = None,
              products: list[str] | None = None, dry_run: bool = False, accept_incomplete: bool = False,
              out_dir: Path | None = None, say=print) -> CycleResult:
    """One cycle (see the module docstring); `say(text)` reports progress. CycleRefused (exit 3) on stale or
    incomplete data; HotspotError on bad input; either way nothing stored has changed."""
    from hotspot.features import history
    from hotspot.features.locking import locked, replace_atomically
    from hotspot.serving.db import PendingPublication, PublicationStore, create_schema, make_engine, now_utc

    started = now_utc()
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        seconds[name] = round(seconds.get(name, 0.0) + now - since, 2)
        return now

    names = products or cfg.cycle.products or cfg.product_names
    for name in names:
        cfg.for_product(name)  # an unknown product is a ConfigError before anything is read
    files = extracts_in(cfg) + [Path(p) for p in (append or [])]
    real = history.history_file(cfg)
    staging = real.parent / ".cycle-staging"
    root = out_dir or Path("outputs") / cfg.area.name / "cycle"  # one report for the area's products
    engine = make_engine(database_url)
    create_schema(engine)
    store = PublicationStore(engine)
    area = cfg.area.name
    with locked(real, what="running the weekly cycle"):
        try:
            t0 = time.perf_counter()
            say(f"staging the history and appending {len(files)} extract(s)")
            staged, appended, built = stage_history(cfg, staging, files, cfg.cycle.source, root / "quarantine")
            rows, fingerprint = history.load(staged)
            t0 = lap("append", t0)
            wk = choose_week(cfg, rows["occurred_at"], week)
            wk_s = str(wk.date())
            fresh = check_fresh(cfg, rows["occurred_at"], wk, accept_incomplete or dry_run)
            t0 = lap("freshness", t0)
            added = sum(a["added"] for a in appended)
            published = {p: store.find(area, p, wk_s) for p in names}
            recorded = store.cycles(area, limit=200)
            same = next((c for c in recorded if c["week"] == wk_s and c["status"] == "done"), None)
            if not built and added == 0 and all(published.values()) and same is not None \
                    and same["data_fingerprint"] == fingerprint:
                _move(files, cfg)  # extracts that added nothing (already stored) leave the inbox
                paths = {}
                if not (root / wk_s / "cycle.html").exists():  # the run that committed could not write it
                    paths = _report_files(cfg, {**same["report"], "cycle_id": same["id"]}, root / wk_s, say)
                words = (f"week of {wk_s}: nothing to do; already published ("
                         + ", ".join(f"{p} v{published[p].version}" for p in names)
                         + f") by cycle #{same['id']}, no new records, every published week scored")
                return CycleResult(wk_s, "noop", words, {"week": wk_s, "status": "noop", "sentence": words}, paths)
            actions = pending_actions(recorded, wk_s)
            if dry_run:
                plan = _plan(cfg, names, wk, published, appended, built, actions, store, fresh, accept_incomplete)
                return CycleResult(wk_s, "dry-run", plan["sentence"], plan)
            week_cfg = until_week(staged, wk)
            report_products, pending, scores = {}, [], []
            incidents = None  # validated once: the records and the grid are the area's, whatever the product
            for name in names:
                pcfg = week_cfg.for_product(name)
                t0 = time.perf_counter()
                say(f"{name}: building the panel")
                prepared = prepare(pcfg, quiet=True, incidents=incidents)
                incidents = prepared.incidents
                t0 = lap("panel", t0)
                trained = retrain(pcfg, prepared, wk, actions.get(name))
                t0 = lap("retrain", t0)
                entry: dict = {"retrain": trained}
                if published[name] is None:
                    say(f"{name}: forecasting the week of {wk_s} ({pcfg.cycle.model})")
                    rows_f = forecast(pcfg, prepared, wk)
                    pending.append(PendingPublication(name, rows_f.week, rows_f.metadata, rows_f.cells))
                    sel = rows_f.metadata.get("selection") or {}
                    entry["published"] = {"week": rows_f.week, "model": rows_f.metadata["model"],
                                          "model_version": str(rows_f.metadata["model_version"]),
                                          "expected_incidents": rows_f.metadata["expected_incidents"],
                                          "selection": sel.get("sentence")}
                else:
                    entry["published"] = None
                    entry["already_published"] = published[name].version
                t0 = lap("forecast", t0)
                say(f"{name}: scoring published weeks")
                new, rescored = score_publications(pcfg, prepared, store, wk, fingerprint)
                scores.extend(new)
                t0 = lap("score", t0)
                live = live_rows(store, pcfg, new)
                watched = watch(pcfg, prepared, live, store, wk)
                t0 = lap("drift", t0)
                entry.update({"scored_weeks": sorted({s.week for s in new}), "rescored": rescored,
                              "live": _live_summary(live), "drift": watched, "next": next_action(pcfg, watched)})
                report_products[name] = clean(entry)
            t0 = time.perf_counter()
            mix = clean(area_mix(cfg, rows, wk))
            lap("drift", t0)
            flags = [c for r in report_products.values() for c in r["drift"]["flags"]] + ([mix] if mix["flag"]
                                                                                          else [])
            report = clean({
                "area": area, "week": wk_s, "status": "done", "started_at": started.isoformat(),
                "history": {"built": built, "appended": appended, "added": added, "fingerprint": fingerprint,
                            "rows": int(len(rows))},
                "freshness": fresh, "products": report_products, "offence_mix": mix, "flags": flags,
                "seconds": seconds})
            report["sentence"] = _sentence(report)
            t0 = time.perf_counter()
            say("committing")
            pubs, cycle_id = commit(store, area, pending, scores, {"week": wk_s, "status": "done",
                                                                   "started_at": started,
                                                                   "data_fingerprint": fingerprint,
                                                                   "report": report})
            if built or added:
                replace_atomically(real, lambda tmp: shutil.copy2(staging / history.FILE_NAME, tmp))
            _move(files, cfg)
            lap("commit", t0)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    report["cycle_id"] = cycle_id
    report["publications"] = [{"product": p.product, "week": p.week, "version": p.version, "id": p.id}
                              for p in pubs]
    seconds["total"] = report["seconds"]["total"] = round(time.perf_counter() - clock, 1)
    paths = _report_files(cfg, report, root / wk_s, say)
    return CycleResult(wk_s, "done", report["sentence"], report, paths, cycle_id)


def _report_files(cfg: StudyConfig, report: dict, folder: Path, say) -> dict[str, Path]:
    """write_report after the commit: a failure there is reported, not raised (the cycle is stored, its report too,
    in the cycle record; the next run of the week writes the files it finds missing)."""
    try:
        return write_report(cfg, report, folder)
    except Exception as exc:  # noqa: BLE001 - what was committed stays; the files can be written again
        say(f"warning: the cycle is stored, but its report files could not be written to {folder}: {exc}; "
            "run the cycle again to write them")
        return {}


def commit(store, area, pending, scores, cycle):
    """(7) The store's single transaction (a seam for the crash tests)."""
    return store.commit_cycle(area, pending, scores, cycle)


def _move(files: list[Path], cfg: StudyConfig) -> None:
    """Move the inbox's processed extracts to inbox/processed (files given with --append stay where they are)."""
    inbox = cfg.inbox_dir
    if inbox is None:
        return
    for f in files:
        if f.parent.resolve() == inbox.resolve() and f.exists():
            done = inbox / "processed"
            done.mkdir(exist_ok=True)
            f.replace(done / f.name)


def _live_summary(live: list[dict]) -> dict:
    from hotspot.training.monitoring.live import live_record

    return live_record([{k: r[k] for k in ("week", "model", "observed_total", "metrics")} | {"scored_at": None}
                        for r in live])


def _sentence(report: dict) -> str:
    from hotspot.training.monitoring.drift import flag_words

    pubs = [f"{p} ({r['published']['model']}: {r['published']['model_version']})"
            for p, r in report["products"].items() if r.get("published")]
    scored = sum(len(r["scored_weeks"]) for r in report["products"].values())
    flags = report["flags"]
    return (f"Week of {report['week']}: {report['history']['added']:,} new records; published "
            + (", ".join(pubs) if pubs else "nothing new") + f"; {scored} published week(s) scored; "
            + (f"{len(flags)} flag(s): " + "; ".join((f"{f['product']}: " if f.get("product") else "")
                                                      + flag_words(f) for f in flags) + " (see the report)"
               if flags else "no drift or decay flagged."))


def _plan(cfg, names, wk, published, appended, built, actions, store, fresh, accept_incomplete) -> dict:
    """What the cycle would do (--dry-run), from the staged copy; nothing is stored."""
    wk_s = str(wk.date())
    todo = []
    if built:
        todo.append("build the history from the config's sources")
    for a in appended:
        todo.append(f"append {a['file']}: {a['added']:,} new rows ({a['already_stored']:,} already stored, "
                    f"{a['quarantined']:,} quarantined)")
    if not fresh["ok"]:
        problems = "; ".join(fresh["problems"])
        if not accept_incomplete:
            todo.append(f"refuse the week of {wk_s}: {problems} (exit code 3; nothing would change)")
            return {"week": wk_s, "status": "dry-run", "would": todo, "freshness": fresh, "refuse": True,
                    "sentence": f"dry run for the week of {wk_s}: " + "; ".join(todo)}
        todo.append(f"publish the week of {wk_s} despite: {problems} (--accept-incomplete; flagged in the report)")
    for name in names:
        pcfg = until_week(cfg, wk).for_product(name)
        why, model = retrain_due(pcfg, wk, actions.get(name))
        if why:
            todo.append(f"{name}: retrain {model} and run the promotion gate ({why})")
        todo.append(f"{name}: already published (v{published[name].version})" if published[name] else
                    f"{name}: forecast the week of {wk_s} with {cfg.cycle.model} and publish it")
        scored = {s.publication_id for s in store.live_scores(cfg.area.name, name)}
        waiting = [p.week for p in store.list(cfg.area.name, name, limit=100_000)
                   if p.week < wk_s and p.id not in scored]
        if waiting:
            todo.append(f"{name}: score {len(set(waiting))} published week(s) ({min(waiting)} .. {max(waiting)})")
    todo.append("re-score any published week whose records changed, watch drift and decay, write the report")
    sentence = f"dry run for the week of {wk_s}: " + "; ".join(todo)
    return {"week": wk_s, "status": "dry-run", "would": todo, "freshness": fresh, "sentence": sentence}


def write_report(cfg: StudyConfig, report: dict, folder: Path) -> dict[str, Path]:
    """cycle.json and cycle.html in `folder`, logged to MLflow (a failure here leaves what was committed)."""
    import logging

    from hotspot.features.locking import replace_atomically
    from hotspot.training import tracking
    from hotspot.training.monitoring.report import render_cycle_html

    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str)
    json_path = replace_atomically(folder / "cycle.json", lambda tmp: tmp.write_text(text))
    html = render_cycle_html(report)
    html_path = replace_atomically(folder / "cycle.html", lambda tmp: tmp.write_text(html, encoding="utf-8"))
    try:
        with tracking.step_run(cfg, "cycle", report["history"]["fingerprint"],
                               run_name=f"cycle {report['week']} (#{report.get('cycle_id')})"):
            import mlflow

            mlflow.log_params({"week": report["week"], "cycle_id": report.get("cycle_id")})
            mlflow.log_metrics({"records_added": report["history"]["added"], "flags": len(report["flags"]),
                                **{f"seconds_{k}": v for k, v in report["seconds"].items()}})
            mlflow.log_artifact(str(json_path), "cycle")
            mlflow.log_artifact(str(html_path), "cycle")
            mlflow.set_tag(tracking.NOTE_TAG, report["sentence"][:4000])
    except Exception as exc:  # noqa: BLE001 - the cycle is committed; the report files are on disk
        logging.getLogger("hotspot").warning("cycle report not logged to MLflow: %s", exc)
    return {"json": json_path, "html": html_path}
