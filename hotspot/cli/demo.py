"""`hotspot demo`: the whole flow on the bundled sample in about a minute, and where each user looks next."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hotspot.cli.common import SAMPLE_CONFIG, ConfigOption, ProductOption, app, handles_errors, load, out
from hotspot.cli.pipeline import print_top_cells
from hotspot.features.config import StudyConfig
from hotspot.serving import DEFAULT_DATABASE_URL

# The demo's tuning budget (stated on screen): a taste of the study in seconds, not a study. LambdaRank is left to
# real studies: on the sample a trial of it takes 30 s, and a ranker needs a calibration to give counts.
DEMO_TRIALS, DEMO_FOLDS, DEMO_FOLD_WEEKS, DEMO_MAX_ROUNDS = 4, 2, 4, 300
DEMO_OBJECTIVES = ("poisson", "tweedie")


@app.command("demo")
@handles_errors
def demo_cmd(
    config: ConfigOption = SAMPLE_CONFIG,
    out_dir: Annotated[Path, typer.Option("--out", help="folder for every output")] = Path("outputs/demo"),
    weeks: Annotated[int | None, typer.Option(help="backtest weeks [default: backtest.weeks]")] = None,
    trials: Annotated[int, typer.Option(help="tuning trials (the demo's own study; it resumes across runs)",
                                        min=1)] = DEMO_TRIALS,
    product: ProductOption = None,
):
    """The whole flow on the bundled sample: validate, features, train, tune (a small budget, stated), backtest
    every model and the tuned candidate, let the promotion gate judge the candidate (trained on every week only if
    it wins), forecast with the champion (with reasons), audit, briefing, publish the last and the next week for the
    map, and say where each user looks."""
    from hotspot.steps import (
        backtest_step,
        briefing_step,
        demo_audit_step,
        features_step,
        forecast_step,
        publish_step,
        train_step,
        tune_step,
        validate_step,
    )
    from hotspot.steps.candidate import tuned_candidate_step
    from hotspot.training.backtest import forecast_periods

    cfg = load(config, product)
    start = time.perf_counter()
    last = [start]

    def took() -> str:
        """The seconds the step took (since the previous step's line), for the end of its line."""
        now = time.perf_counter()
        spent, last[0] = now - last[0], now
        return f"  [{spent:.1f} s]"

    out.rule(f"[bold]hotspot demo[/] on {cfg.area.name}")
    result, qpath = validate_step(cfg, out_dir / "validate")
    out.print(f"1. validate: {len(result.accepted):,} accepted, {len(result.quarantine):,} quarantined -> {qpath}"
              + took())
    prepared, panel_path, _ = features_step(cfg, out_dir / "features", incidents=result)
    out.print(f"2. features: {prepared.panel.n_periods} periods x {prepared.panel.grid.n_cells:,} cells x "
              f"{len(prepared.panel.feature_names)} features -> {panel_path}"
              + (" (panel from the cache: inputs unchanged)" if "cache_s" in prepared.seconds else "") + took())
    model, ref = train_step(cfg, prepared, params="config")
    out.print(f"3. train: registered {ref.label} with the config's parameters" + took())
    demo_cfg = demo_tuning(cfg)
    tc = demo_cfg.tune
    result, tune_paths = tune_step(demo_cfg, trials, prepared=prepared, out_dir=out_dir / "tune")
    out.print(f"4. tune, demo budget: {trials} trials, {tc.folds} rolling folds of {tc.fold_weeks} weeks, objectives "
              f"{'/'.join(tc.objectives)}, at most {tc.max_boost_round} rounds (a real study: `hotspot tune -c "
              f"{config} --trials {cfg.tune.trials}`); best {tc.metric} {result.best_value:.3f} "
              f"({result.best_spec['params']['objective']}) -> {tune_paths['best']}" + took(), highlight=False)
    n_weeks = weeks or cfg.backtest.weeks
    end = backtest_end(cfg)
    bt, paths = backtest_step(demo_cfg, ["all"], n_weeks, end, out_dir / "backtest", prepared=prepared)
    out.print(f"5. backtest: {len(bt.metrics['weeks'])} weeks, every model and the tuned candidate -> "
              f"{paths['predictions']}" + took())
    periods = forecast_periods(prepared.panel, n_weeks, end)
    decision, tuned_ref = tuned_candidate_step(demo_cfg, prepared, bt, periods, cfg.backtest.refit_every)
    if decision is None:
        out.print("6. promotion gate: no tuned candidate to judge" + took())
    else:
        trained = f"trained on every week as {tuned_ref.label} and " if tuned_ref else ""
        out.print(f"6. promotion gate, the tuned candidate {trained}{decision.reason}" + took(), highlight=False)
    week = str(prepared.panel.next_period_start.date())
    cells, meta = forecast_step(cfg, week, out_dir / "forecast.geojson", prepared, pin="champion")
    out.print(f"7. forecast for the week of {week} with the champion ({meta['model']} v{meta['model_version']}) "
              f"-> {out_dir / 'forecast.geojson'}" + took())
    audit, audit_paths = demo_audit_step(cfg, prepared, out_dir / "audit")
    out.print(f"8. audit: {audit['demography']['statement'].split(',')[0]}; {len(audit['weeks'])} weeks -> "
              f"{audit_paths['audit_html']}" + took(), highlight=False)
    briefing_path = out_dir / "briefing.pdf"
    briefing_step(cfg, briefing_path, week, prepared=prepared)
    out.print(f"9. briefing for the week of {week} -> {briefing_path}" + took())
    database_url = os.environ.get("HOTSPOT_DATABASE_URL", DEFAULT_DATABASE_URL)
    last_week = str(prepared.panel.period_starts[-2].date())
    # a new version on every run: the demo retrains, so an earlier run's publication is another model's
    published = publish_step(cfg, [last_week, week], database_url, prepared=prepared, new_version=True,
                             published_by="demo")
    out.print("10. published for the map with auto: " + ", ".join(
        f"the week of {p.week} (version {p.version}, auto chose {p.model_version})" for p in published)
        + f" -> {database_url}" + took())
    _print_summary(bt.metrics, f"backtest, {len(bt.metrics['weeks'])} weeks {bt.metrics['weeks'][0]} .. "
                               f"{bt.metrics['weeks'][-1]}")
    print_top_cells(cells, 10, meta)
    _print_where_to_look(cfg, config, database_url, briefing_path, audit_paths["audit_html"],
                         paths["accuracy_html"])
    out.print(f"demo finished in {time.perf_counter() - start:.0f} s")


def demo_tuning(cfg: StudyConfig) -> StudyConfig:
    """The config with the demo's tuning budget: its own study (a real one is not mixed with it), two folds of four
    weeks, the objectives that fit in seconds, fewer rounds."""
    from hotspot.training.tuning import study_name

    tune = cfg.tune.model_copy(update={
        "folds": DEMO_FOLDS, "fold_weeks": DEMO_FOLD_WEEKS, "max_boost_round": DEMO_MAX_ROUNDS,
        "objectives": [o for o in cfg.tune.objectives if o in DEMO_OBJECTIVES] or list(DEMO_OBJECTIVES),
        "study_name": f"{study_name(cfg)}-demo"})
    return cfg.model_copy(update={"tune": tune})


def backtest_end(cfg: StudyConfig) -> str | None:
    """Where the backtest ends: the config's `backtest.end` when it sets one, else the end of the data."""
    return str(cfg.backtest.end) if cfg.backtest.end else None


def _print_where_to_look(cfg: StudyConfig, config: Path, database_url: str, briefing: Path, audit_html: Path,
                         accuracy_html: Path) -> None:
    """The demo's last lines: where command staff, auditors and data scientists look next."""
    from hotspot.serving.auth import create_key
    from hotspot.serving.db import create_schema, make_engine

    engine = make_engine(database_url)
    create_schema(engine)
    key, record = create_key(engine, "auditor", "demo")  # reads forecasts, the map and the reports
    db = "" if database_url == DEFAULT_DATABASE_URL else f" --database-url {database_url}"
    out.rule("[bold]Where to look")
    out.print(f"Command staff:   the weekly briefing  {briefing.resolve()}", highlight=False)
    out.print(f"                 the map: run  hotspot serve -c {config}{db}", highlight=False)
    out.print("                 then open  http://127.0.0.1:8000/map  (last and next week are published)",
              highlight=False)
    out.print(f"Auditors:        the audit report  {audit_html.resolve()}", highlight=False)
    out.print("                 every report by model version: http://127.0.0.1:8000/reports", highlight=False)
    from hotspot.training.tracking import experiment_url, tracking_uri

    out.print(f"Data scientists: the accuracy report  {accuracy_html.resolve()}", highlight=False)
    out.print(f"                 the runs: run  mlflow ui --backend-store-uri {tracking_uri()}", highlight=False)
    out.print(f"                 then open  {experiment_url(cfg)}  (the backtest: one child run per model; "
              "the registered model returns expected incidents)", highlight=False)
    out.print(f"API key for the pages (auditor role, shown once; revoke with `hotspot keys revoke "
              f"{record.key_id}`):  {key}", highlight=False)


def _print_summary(metrics: dict, title: str) -> None:
    from rich.markup import escape

    from hotspot.training.backtest import summary_table

    headroom = metrics.get("headroom") or {}
    for sentence in [*(metrics.get("verdict") or {}).get("sentences", []), headroom.get("sentence", "")]:
        if sentence:
            out.print(escape(sentence), highlight=False)
    table_df = summary_table(metrics)
    share = headroom.get("share") or {}
    limit = metrics.get("limit") or {}
    table = Table(title=f"Accuracy, mean over {title} ({metrics['n_cells']:,} cells)")
    table.add_column("model")
    for col in [*table_df.columns, "headroom closed"]:
        table.add_column(col, justify="right")
    if limit.get("available"):
        table.add_row(f"{limit['name']} *", *(f"{limit['mean'].get(k, float('nan')):.3f}" for k in table_df.columns),
                      "", style="dim italic")
    best = headroom.get("best_baseline")
    for name, row in table_df.iterrows():
        closed = share.get(name)
        table.add_row(escape(f"{name} (best baseline)" if name == best else name), *(f"{v:.3f}" for v in row),
                      "" if closed is None else f"{closed:.0%}")
    out.print(table)
    if limit.get("available"):
        out.print(f"[dim]* {limit['name']}: a reference that uses future data, not a forecast; headroom closed = "
                  "(model - best baseline) / (limit - best baseline) at PAI@1%[/]", highlight=False)
    if metrics.get("demographics_as_features"):
        out.print("[bold yellow]Demographic columns were model inputs (features.demographics_as_features = true).[/]")
    out.print("[dim]Recorded incidents are policing data, not ground truth.[/]")
