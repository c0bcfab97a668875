"""`hotspot audit`: the fairness audit command (registered on the shared app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hotspot.cli.common import (
    ConfigOption,
    EngineOption,
    ProductOption,
    SchedulerOption,
    app,
    handles_errors,
    load,
    on_engine,
    out,
)


@app.command("audit")
@handles_errors
def audit_cmd(
    config: ConfigOption,
    model_version: Annotated[str | None, typer.Option("--model-version", help="registered version to audit "
                                                                                  "[default: the champion]")] = None,
    weeks: Annotated[int | None, typer.Option(help="backtest weeks audited [default: backtest.weeks]",
                                                 min=1)] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD: audit the weeks starting before this date "
                                                    "[default: end of the data]")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for audit.json, audit.html and PNGs "
                                                                  "[default: outputs/AREA/PRODUCT/audit]")] = None,
    baselines: Annotated[str | None, typer.Option(help="comma-separated baselines beside the model, or 'none' "
                                                          "[default: the naive and EWM count baselines]")] = None,
    refit_every: Annotated[int | None, typer.Option(help="refit every K weeks [default: backtest.refit_every]",
                                                       min=1)] = None,
    product: ProductOption = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
):
    """Fairness audit of a registered model beside the baselines: flag shares and rates by demographic group,
    disparate impact, accuracy within groups, persistence, feedback-loop simulation, reporting-rate sensitivity,
    fairness-accuracy trade-off and a model card."""
    from hotspot.steps import audit_step

    cfg = load(config, product)
    names = None if baselines is None else [n.strip() for n in baselines.split(",") if n.strip() not in ("", "none")]
    with on_engine(cfg, engine, scheduler):
        audit, paths = audit_step(cfg, model_version, weeks, end, out_dir, names, refit_every)
    _print_audit(audit)
    out.print(f"[dim]{audit['note']}[/]")
    out.print(f"took {sum(audit['seconds'].values()):.1f} s; report: {paths['audit_html']} "
              f"(JSON {paths['audit_json']}); logged to the run of {audit['model_card']['model']['name']} "
              f"v{audit['model_version']['version']}")


def _print_audit(audit: dict, most: int = 15) -> None:
    primary, audited = audit["primary"], audit["audited_model"]
    definition = audit["definitions"][primary]
    has_pop = definition.get("has_population", True)
    groups = definition["models"][audited]["groups"]
    shown = sorted(groups, key=lambda g: -(groups[g]["flag_share"]["value"] or 0))[:most]
    more = f", the {len(shown)} with the most flags of {len(groups)}" if len(shown) < len(groups) else ""
    table = Table(title=f"{audited}: top {audit['coverage']:.1%} of cells by {primary} group{more}, "
                        f"{len(audit['weeks'])} weeks {audit['weeks'][0]} .. {audit['weeks'][-1]} [95% interval]")
    for col in ("group", *(["residents"] if has_pop else []), "recorded incidents", "flagged cells",
                f"flag-rate ratio to {definition['reference']} (0.8-1.25)", "hit rate"):
        table.add_column(col, justify="left" if col == "group" else "right")
    pct = lambda f: f"{_n(f['value'], True)} [{_n(f['ci95'][0], True)}, {_n(f['ci95'][1], True)}]"  # noqa: E731
    for label in shown:
        g = groups[label]
        di = g["disparate_impact"]
        ratio = "ref." if di["status"] == "reference" else f"{_n(di['value'])} [{_n(di['ci95'][0])}, " \
                                                             f"{_n(di['ci95'][1])}]"
        colour = "" if di["status"] in ("reference", "within band") else "[yellow]"
        table.add_row(label, *([f"{definition['groups'][label]['population_share'] * 100:.1f}%"] if has_pop else []),
                      pct(g["incident_share"]), pct(g["flag_share"]), f"{colour}{ratio} {di['status']}",
                      pct(g["hit_rate"]))
    out.print(table)
    summary = audit.get("summary") or {}
    if summary:
        out.print(f"[bold]Groups:[/] {summary['groups_used']}", highlight=False)
        out.print("[bold]Summary[/]")
        for line in summary["lines"]:
            out.print(f"  - {line}", highlight=False)
    for warning in audit.get("warnings", []):
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _n(value, pct: bool = False) -> str:
    if value is None or value != value or abs(value) == float("inf"):
        return "-"
    return f"{value * 100:.1f}%" if pct else f"{value:.2f}"
