"""The pipeline commands: validate, ingest, features, train, tune, promote, rollback, backtest, forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hotspot.cli.common import (
    ConfigOption,
    EngineOption,
    ModelOption,
    ProductOption,
    SchedulerOption,
    VersionOption,
    app,
    default_out,
    fail,
    handles_errors,
    load,
    on_engine,
    out,
)
from hotspot.features.config import StudyConfig


@app.command("validate")
@handles_errors
def validate_cmd(
    config: ConfigOption,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for quarantine.csv and validation.json "
                                                                  "[default: outputs/AREA/validate]")] = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
):
    """Read and validate the incidents: counts of accepted and quarantined rows by reason, quarantine file."""
    from hotspot.steps import reason_table, validate_step

    cfg = load(config)
    out_dir = out_dir or default_out(cfg, "validate")
    with on_engine(cfg, engine, scheduler):
        result, path = validate_step(cfg, out_dir)
    table = Table(title=f"{cfg.area.name}: {result.n_read:,} rows read from {cfg.incidents.path.name}")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_column("meaning")
    table.add_row("accepted", f"{len(result.accepted):,}", f"in {result.grid.n_cells:,} cells of "
                  f"{cfg.area.cell_size_m:g} m ({result.area.origin})")
    for reason, count, meaning in reason_table(result):
        table.add_row(f"quarantined: {reason}", f"{count:,}", meaning)
    out.print(table)
    out.print(f"quarantined rows with their reason: {path}")
    if len(cfg.sources) > 1 or result.history is not None:
        _print_sources(result.source_counts(), "rows from the stored history " + str(result.history)
                       if result.history is not None else "")


def _print_sources(by_source: dict, title: str = "") -> None:
    counts = sorted({k for c in by_source.values() for k in c}, key=lambda k: (k.startswith("quarantined_"), k))
    table = Table(title=title or "per source")
    table.add_column("source")
    for k in counts:
        table.add_column(k.replace("quarantined_", "q: "), justify="right")
    for name, c in by_source.items():
        table.add_row(name, *(f"{c.get(k, 0):,}" for k in counts))
    out.print(table)


@app.command("ingest")
@handles_errors
def ingest_cmd(
    config: ConfigOption,
    append: Annotated[Path | None, typer.Option("--append", help="a new file of incidents to add to the stored "
                                                                    "history (default: build it from every source)",
                                                   exists=True, dir_okay=False)] = None,
    source: Annotated[str | None, typer.Option("--source", help="the source whose mapping --append's file uses "
                                                                   "[default: the first]")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for quarantine.csv and ingest.json "
                                                                  "[default: outputs/AREA/ingest]")] = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
):
    """Store the validated incidents as a history, or append a new file to it (idempotent; late rows flagged).

    Later steps (features, train, backtest, forecast) read the history instead of the sources once it exists."""
    from hotspot.steps import ingest_step

    if source is not None and append is None:
        fail("--source goes with --append")
    cfg = load(config)
    with on_engine(cfg, engine, scheduler):
        report, summary = ingest_step(cfg, out_dir or default_out(cfg, "ingest"), append, source)
    verb = f"appended {append.name}:" if append is not None else "built from every source:"
    out.print(f"history {verb} {report.added:,} rows added, {report.rows_stored:,} stored in {report.path}")
    if append is not None:
        out.print(f"{report.already_stored:,} rows were already stored (not added again)")
        if report.late:
            out.print(f"[yellow]{report.late:,} late rows[/] in past periods {', '.join(report.late_periods)}: "
                      "re-score the backtest weeks that include them")
    if report.after_data_end:
        out.print(f"[yellow]{report.after_data_end:,} rows occurred after period.data_end ({report.data_end})[/]: "
                  f"they are stored, but no panel, model or forecast sees them until you raise or remove "
                  f"period.data_end in {config}")
    _print_sources(report.by_source)
    out.print(f"quarantined rows with their reason: {Path(out_dir or default_out(cfg, 'ingest')) / 'quarantine.csv'}")


@app.command("features")
@handles_errors
def features_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="study-area TOML file")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for panel.parquet and panel_schema.json "
                                                                  "[default: outputs/AREA/PRODUCT/features]")] = None,
    list_families: Annotated[bool, typer.Option("--list", help="print the feature families and exit")] = False,
    product: ProductOption = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
):
    """Build the cell x period panel (counts, label, features) and write it as Parquet with its schema."""
    if list_families:
        _print_families(load(config) if config else None)
        return
    if config is None:
        fail("--config is required (or use --list)")
    from hotspot.steps import features_step

    cfg = load(config, product)
    with on_engine(cfg, engine, scheduler):
        prepared, panel_path, schema_path = features_step(cfg, out_dir or default_out(cfg, "features"))
    p = prepared.panel
    out.print(f"panel: {p.n_periods} periods x {p.grid.n_cells:,} cells x {len(p.feature_names)} features "
              f"(+ the forecast period {p.next_period_start.date()}) -> {panel_path}")
    for fam, reason in p.skipped_families.items():
        out.print(f"[yellow]skipped family {fam}:[/] {reason}")
    out.print(f"schema: {schema_path}; took " + ", ".join(f"{k} {v:.1f}" for k, v in prepared.seconds.items()))


def _print_families(cfg: StudyConfig | None) -> None:
    from hotspot.features.families import FAMILIES, selected_families

    chosen = set(selected_families(cfg)) if cfg else set(FAMILIES)
    table = Table(title="Feature families" + (f" ({cfg.area.name})" if cfg else ""))
    for col in ("family", "selected", "inputs", "look-back", "description"):
        table.add_column(col)
    for fam in FAMILIES.values():
        lookback = fam.lookback_text(cfg) if cfg else "see config"
        table.add_row(fam.name, "yes" if fam.name in chosen else "no", fam.inputs, lookback, fam.description)
    out.print(table)


@app.command("train")
@handles_errors
def train_cmd(
    config: ConfigOption,
    params: Annotated[str, typer.Option(help="where the hyper-parameters come from: 'auto' (the tuned study's best "
                                             "when `hotspot tune` has run, else the config), 'study' or 'config'")
                      ] = "auto",
    model_name: Annotated[str, typer.Option("--model", "-m", help="the forecaster to fit and register: lightgbm, "
                                                                  "any baseline `hotspot backtest --model` takes "
                                                                  "(ewm_hl26, naive_4w, sepp...) or auto (the "
                                                                  "selection rule)")] = "lightgbm",
    product: ProductOption = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
):
    """Fit a forecaster (LightGBM by default, or any baseline, or auto) on all observed periods and register it as
    a version of the product's model in the MLflow registry (tags `model`, `model_family`).

    The first registered version becomes the champion; later ones must pass `hotspot promote`."""
    from hotspot.steps import train_step
    from hotspot.training.registry import champion_version

    cfg = load(config, product)
    with on_engine(cfg, engine, scheduler):
        model, ref = train_step(cfg, params=params, model_name=model_name)
    champion = champion_version(cfg)
    if hasattr(model, "train_periods_"):
        first, last = model.train_periods_
        what = f"{ref.label} ({model.name}, {model.objective}) on periods {first.date()} .. {last.date()}"
    else:
        what = (f"{ref.label} ({model.name}) on the periods up to {model_panel_end(model, cfg)}"
                + (f"; auto chose {model.chosen_}" if hasattr(model, "chosen_") else ""))
    out.print(f"trained {what} (run {ref.run_id}); champion is v{champion}"
              + ("" if champion == ref.version else f"; promote with `hotspot promote --version {ref.version}`"),
              highlight=False)


def model_panel_end(model, cfg: StudyConfig) -> str:
    """The last training period of a registered baseline or auto version (from its registry tags)."""
    from hotspot.training.registry import list_versions

    latest = list_versions(cfg)
    return latest[0]["tags"].get("train_last_period", "?") if latest else "?"


@app.command("tune")
@handles_errors
def tune_cmd(
    config: ConfigOption,
    trials: Annotated[int | None, typer.Option(help="finished trials the study should have in all (a resumed "
                                                       "study runs only the rest) [default: tune.trials]", min=1)
                      ] = None,
    before: Annotated[str | None, typer.Option(help="YYYY-MM-DD: the folds end before this week, e.g. the first "
                                                       "week of the backtest you will judge the model on [default: "
                                                       "the start of the backtest, the last backtest.weeks before "
                                                       "backtest.end or the end of the data]")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for trials.csv, best_spec.json and the "
                                                     "plot [default: outputs/AREA/PRODUCT/tune]")] = None,
    product: ProductOption = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
):
    """Tune LightGBM with Optuna over rolling-origin folds (never a random split); the study is stored (tune.storage)
    and resumes where it stopped; `hotspot train` then uses its best parameters."""
    from hotspot.steps import tune_step

    cfg = load(config, product)
    with on_engine(cfg, engine, scheduler):
        result, paths = tune_step(cfg, trials, before, out_dir=out_dir)
    table = Table(title=f"study {result.study.study_name}: {len(result.study.trials)} trials "
                        f"({result.trials_run} run now in {result.seconds:.0f} s)")
    table.add_column("best " + cfg.tune.metric, justify="right")
    table.add_column("objective")
    table.add_column("parameters")
    spec = result.best_spec
    shown = {k: v for k, v in spec["params"].items() if k in ("learning_rate", "num_leaves", "min_data_in_leaf",
                                                              "feature_fraction", "tweedie_variance_power")}
    table.add_row(f"{result.best_value:.4f}", spec["params"]["objective"],
                  ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
                  + f", rounds={spec['num_boost_round']}, train_periods={spec['train_periods']}")
    out.print(table)
    out.print(f"trials: {paths['trials']}; best spec: {paths['best']}; `hotspot train` now uses it")


@app.command("promote")
@handles_errors
def promote_cmd(
    config: ConfigOption,
    version: Annotated[str, typer.Option(help="registered version to promote")],
    weeks: Annotated[int | None, typer.Option(help="backtest weeks to judge on [default: promotion.weeks or "
                                                      "backtest.weeks]", min=1)] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD: judge on the weeks before this date [default: end "
                                                    "of the data]")] = None,
    product: ProductOption = None,
):
    """Make a registered version the champion only if its backtest beats the champion's on the same weeks
    (promotion.metric and promotion.margin); the decision and its reason are recorded either way."""
    from hotspot.steps import promote_step

    cfg = load(config, product)
    decision = promote_step(cfg, version, weeks, end)
    colour = "green" if decision.promoted else "yellow"
    out.print(f"[bold {colour}]{'promoted' if decision.promoted else 'not promoted'}[/] v{version}: "
              f"{decision.reason}", highlight=False)
    if not decision.promoted:
        raise typer.Exit(code=1)


@app.command("rollback")
@handles_errors
def rollback_cmd(
    config: ConfigOption,
    to: Annotated[str | None, typer.Option(help="version to make champion [default: the previous champion]")] = None,
    why: Annotated[str, typer.Option(help="reason, recorded with the move")] = "",
    product: ProductOption = None,
):
    """Move the champion alias back to the previous champion (or to --to); recorded in the champion history."""
    from hotspot.steps import rollback_step

    cfg = load(config, product)
    before, after = rollback_step(cfg, to, why)
    out.print(f"champion moved back from v{before} to v{after}")


@app.command("backtest")
@handles_errors
def backtest_cmd(
    config: ConfigOption,
    weeks: Annotated[int | None, typer.Option(help="number of forecast weeks [default: backtest.weeks]")] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD: backtest the weeks starting before this date "
                                                    "[default: backtest.end, else the end of the data]")] = None,
    model: Annotated[list[str], typer.Option("--model", "-m", help="model name, repeatable or comma-separated; "
                                                                   "'all' for every model but 'auto'; 'auto' chooses "
                                                                   "among [selection] candidates at each refit with "
                                                                   "only earlier weeks (it refits every candidate on "
                                                                   "its validation weeks: several times the cost of "
                                                                   "lightgbm), so name it: -m all,auto")] = ["all"],
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for predictions.parquet, metrics.json "
                                                     "and plots [default: outputs/AREA/PRODUCT/backtest]")] = None,
    refit_every: Annotated[int | None, typer.Option(help="refit every K weeks [default: backtest.refit_every]",
                                                       min=1)] = None,
    without: Annotated[list[str], typer.Option("--without", help="feature family to switch off (repeatable)")] = [],
    target: Annotated[list[str], typer.Option("--target", help="offence the label counts (repeatable) "
                                                                "[default: model.target_offenses]")] = [],
    ablation: Annotated[bool, typer.Option("--ablation", help="LightGBM with all families and with each family "
                                                              "removed, beside the baselines; writes "
                                                              "ablation.csv/.png")] = False,
    product: ProductOption = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
):
    """Rolling weekly backtest: each week forecast by models fitted only on the weeks before it."""
    from hotspot.steps import backtest_step, with_overrides

    base = load(config, product)
    if target and base.has_products:
        fail(f"--target: {config} lists [[products]], each with its offences; choose one with --product "
             f"({', '.join(base.product_names)}) or add a product for these offences")
    cfg = with_overrides(base, without=without, targets=target)
    names = [n.strip() for item in model for n in item.split(",") if n.strip()]
    out_dir = out_dir or default_out(cfg, "backtest")
    with on_engine(cfg, engine, scheduler):
        result, paths = backtest_step(cfg, names, weeks or cfg.backtest.weeks, end, out_dir, refit_every,
                                      ablation=ablation)
    _print_report(paths["accuracy_json"])
    if ablation:
        _print_ablation(paths["ablation_table"])
    out.print(f"wrote {paths['predictions']} and {paths['metrics']}")


def _print_report(json_path: Path) -> None:
    import json

    import pandas as pd
    from rich.markup import escape

    from hotspot.training.evaluation.limit import LIMIT_NAME
    from hotspot.training.evaluation.report import summary_rows

    report = json.loads(json_path.read_text())
    for sentence in [*(report.get("verdict") or {}).get("sentences", []),
                     (report.get("headroom") or {}).get("sentence", ""),
                     *(report.get("selection") or {}).get("sentences", [])]:
        if sentence:
            out.print(escape(sentence), highlight=False)
    table_df = summary_rows(report)
    table = Table(title=f"Accuracy over {len(report['weeks'])} weeks {report['weeks'][0]} .. {report['weeks'][-1]} "
                        "(mean; [95% bootstrap interval over weeks])")
    table.add_column("model")
    for col in ("PAI@1%", "PAI@5%", "PEI@1%", "PEI*@1%", "deviance", "stability@1%", "headroom closed"):
        table.add_column(col, justify="right")
    best = report.get("best_baseline")
    for name, row in table_df.iterrows():
        label = {LIMIT_NAME: f"{name} *", best: f"{name} (best baseline)"}.get(name, name)
        closed = "" if pd.isna(row["headroom closed"]) else f"{row['headroom closed']:.0%}"
        table.add_row(escape(label), f"{row['PAI@1%']:.2f} [{row['PAI@1% lo']:.2f}, {row['PAI@1% hi']:.2f}]",
                      f"{row['PAI@5%']:.2f}", f"{row['PEI@1%']:.3f}", f"{row['PEI*@1%']:.3f}",
                      f"{row['deviance']:.4f}", f"{row['stability@1%']:.2f}", closed,
                      style="dim italic" if name == LIMIT_NAME else None)
    out.print(table)
    if (report.get("limit") or {}).get("available"):
        out.print(f"* {LIMIT_NAME}: a reference that uses future data, not a forecast (each cell's mean weekly count "
                  "over the weeks before and after); headroom closed = (model - best baseline) / (limit - best "
                  "baseline) at PAI@1%", highlight=False)
    for warning in report.get("warnings", []):
        out.print(f"[yellow]warning:[/] {warning}")
    out.print(f"[dim]{report['note']}[/] Report: {json_path.with_suffix('.html')}")


def _print_ablation(csv_path: Path) -> None:
    import pandas as pd

    table_df = pd.read_csv(csv_path, index_col="variant")
    table = Table(title="Ablation: LightGBM with each feature family removed (d = variant - full, 95% interval)")
    for col in ("variant", "features", "PAI@1%", "d PAI@1%", "deviance", "d deviance", "gain share"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for name, row in table_df.iterrows():
        fmt = lambda k, p=3: "" if pd.isna(row[k]) else f"{row[k]:.{p}f}"  # noqa: E731,B023 (used in this iteration)
        table.add_row(name, "" if pd.isna(row["features"]) else str(int(row["features"])), fmt("pai@1%", 2),
                      "" if name == "lightgbm" or pd.isna(row["d_pai@1%"]) else
                      f"{row['d_pai@1%']:+.2f} [{row['d_pai@1%_lo']:+.2f}, {row['d_pai@1%_hi']:+.2f}]",
                      fmt("poisson_deviance", 4),
                      "" if name == "lightgbm" or pd.isna(row["d_deviance"]) else f"{row['d_deviance']:+.4f}",
                      "" if pd.isna(row["gain_share_of_family"]) else f"{row['gain_share_of_family'] * 100:.1f}%")
    out.print(table)


@app.command("forecast")
@handles_errors
def forecast_cmd(
    config: ConfigOption,
    week: Annotated[str, typer.Option(help="YYYY-MM-DD: start of the period to forecast")],
    out_file: Annotated[Path, typer.Option("--out", help="GeoJSON file to write")],
    top: Annotated[int, typer.Option(help="rows of the ranked list to print", min=0)] = 10,
    model: ModelOption = "auto",
    version: VersionOption = None,
    product: ProductOption = None,
):
    """Forecast one period with `auto` (the selection rule, fitted with only the weeks before it) or a pinned
    version: GeoJSON of every cell with risk, rank and percentile; the metadata says what forecast."""
    from hotspot.steps import forecast_step
    from hotspot.training.forecast_model import pin_from

    cfg = load(config, product)
    cells, meta = forecast_step(cfg, week, out_file, pin=pin_from(model, version))
    print_top_cells(cells, top, meta)
    out.print(f"wrote {len(cells):,} cells to {out_file}")


def print_top_cells(cells, top: int, meta: dict) -> None:
    """The `top` highest-risk cells of a forecast as a table (rank, place, expected incidents), then their reasons."""
    if top <= 0:
        return
    selection = meta.get("selection")
    if selection:
        out.print(selection["sentence"], highlight=False)
    label = f"auto: {meta['model_version']}" if selection else f"{meta['model']} v{meta['model_version']}"
    table = Table(title=f"Top {top} cells for the week of {meta['period_start']} ({label})")
    for col in ("rank", "place", "expected incidents", "cell_id"):
        table.add_column(col, justify="left" if col == "place" else "right")
    for row in cells.head(top).itertuples():
        table.add_row(str(row.rank), str(getattr(row, "place", "")), f"{row.risk:.2f}", str(row.cell_id))
    out.print(table)
    if "reasons" in cells:
        out.print("[bold]Why (what raises each cell's risk most, from the model's own contributions):[/]")
        for row in cells.head(top).itertuples():
            out.print(f"  {row.rank:>3}. " + ("; ".join(row.reasons) or "nothing raises it above the average cell"),
                      highlight=False)
