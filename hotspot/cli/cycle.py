"""The `cycle` command: one idempotent run of the week, for cron or a systemd timer (deploy/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hotspot.cli.common import ConfigOption, app, err, handles_errors, load_config, out
from hotspot.cli.service import DatabaseOption
from hotspot.serving import DEFAULT_DATABASE_URL


@app.command("cycle")
@handles_errors
def cycle_cmd(
    config: ConfigOption,
    product: Annotated[list[str] | None, typer.Option(
        "--product", "-p", help="product to run (repeat for several) (default: cycle.products, else every "
                                "product of the config)", show_default=False)] = None,
    week: Annotated[str | None, typer.Option(help="YYYY-MM-DD: the week to publish (default: the week after "
                                                  "the newest record)")] = None,
    append: Annotated[list[Path] | None, typer.Option(
        "--append", help="extract to append besides the inbox's (CSV or Parquet; repeat for several)",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what the cycle would do; change nothing")] = False,
    accept_incomplete: Annotated[bool, typer.Option(
        "--accept-incomplete", help="publish even when the week's data is stale or incomplete (flagged in the "
                                    "report)")] = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="folder for the cycle report (default: outputs/AREA/cycle/WEEK)", show_default=False)] = None,
    database_url: DatabaseOption = DEFAULT_DATABASE_URL,
):
    """The weekly cycle: append the inbox's new extracts (cycle.inbox, default inbox/AREA beside the config),
    refuse stale or incomplete data (exit code 3, nothing changed), retrain and run the promotion gate when
    cycle.retrain_every (or last cycle's decay or drift flag) says so, forecast and publish the week for each
    product, score every published week now recorded (beside the count baselines), watch drift and decay, and
    write the cycle report (JSON, HTML, MLflow). Stored in one transaction: a failure changes nothing. Run twice
    for the same week, the second run changes nothing and says so."""
    from hotspot.steps.cycle import EXIT_REFUSED, CycleRefused, run_cycle

    cfg = load_config(config)
    try:
        result = run_cycle(cfg, database_url, week=week, append=append, products=product or None,
                           dry_run=dry_run, accept_incomplete=accept_incomplete, out_dir=out_dir,
                           say=lambda text: err.print(f"[dim]{text}[/]", highlight=False))
    except CycleRefused as exc:
        err.print(f"[bold red]refused:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_REFUSED) from None
    if result.status == "dry-run":
        out.print(f"dry run for the week of {result.week}: nothing was changed; the cycle would", highlight=False)
        for line in result.report["would"]:
            out.print(f"  - {line}", highlight=False)
        return
    out.print(result.sentence, highlight=False)
    if result.status == "noop":
        if result.paths:
            out.print(f"wrote the missing report {result.paths.get('html')}", highlight=False)
        return
    for name, entry in result.report["products"].items():
        live = entry.get("live") or {}
        out.print(f"{name}: live record: {live.get('sentence', 'n/a')}", highlight=False)
        if entry.get("next"):
            out.print(f"{name}: next cycle will {entry['next']['action']}: {entry['next']['reason']}",
                      highlight=False)
    if result.paths:
        out.print(f"cycle #{result.cycle_id}: report {result.paths.get('html')} (and cycle.json beside it)",
                  highlight=False)
