"""`hotspot trends`, `evaluate-intervention` and `export`: outputs for partners and the public (registered on the
shared app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hotspot.cli.common import (
    ConfigOption,
    ModelOption,
    ProductOption,
    VersionOption,
    app,
    default_out,
    handles_errors,
    load,
    out,
)


@app.command("trends")
@handles_errors
def trends_cmd(
    config: ConfigOption,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for trends.json, PNGs and tables "
                                                                  "[default: outputs/AREA/PRODUCT/trends]")] = None,
    public: Annotated[bool | None, typer.Option("--public/--full", help="public view: area units and blocks of "
                                                   "privacy.public_cell_size_m, counts below privacy.min_count_k "
                                                   "shown as '< k' [default: privacy.public]")] = None,
    formats: Annotated[str, typer.Option("--format", help="table formats, comma-separated: csv, gpkg, geojson")
                       ] = "csv",
    product: ProductOption = None,
):
    """Counts and rates per offence group and area, weekly and yearly, with the seasonally adjusted change (last 52
    weeks vs the 52 before; recent weeks vs the same weeks a year earlier) and 95% intervals."""
    import pandas as pd

    from hotspot.analysis.exports import parse_formats
    from hotspot.analysis.trends import ALL_GROUPS
    from hotspot.steps import trends_step

    cfg = load(config, product)
    chosen = parse_formats(formats)
    trends, paths = trends_step(cfg, out_dir or default_out(cfg, "trends"), public, chosen)
    meta = trends.meta
    table = Table(title=f"{cfg.area.name}: {meta['weeks']} weeks {meta['first_week']} .. {meta['last_week']} "
                        f"({meta['view']} view)")
    recent = meta["recent_weeks"]
    for col in ("area", "group", "last 52 weeks", "52 before", "change % [95%]", f"last {recent} w",
                "change vs a year before % [95%]"):
        table.add_column(col, justify="left" if col in ("area", "group") else "right")
    fmt = lambda v: "" if v is None or (isinstance(v, float) and v != v) else (  # noqa: E731
        f"{v:+.1f}" if isinstance(v, float) else str(v))
    change = trends.change
    whole = change[change["area"] == meta["areas"][0]]
    units = change[(change["area"] != meta["areas"][0]) & (change["group"] == ALL_GROUPS)]
    busiest = units.assign(_n=pd.to_numeric(units["last_52w"], errors="coerce").fillna(-1)).sort_values(
        "_n", ascending=False).head(10).drop(columns="_n")  # the ten busiest units
    for row in pd.concat([whole, busiest]).to_dict(orient="records"):
        table.add_row(row["area"], row["group"], fmt(row["last_52w"]), fmt(row["previous_52w"]),
                      f"{fmt(row['change_pct'])} [{fmt(row['change_ci95_lo'])}, {fmt(row['change_ci95_hi'])}]"
                      if row["change_pct"] is not None else "",
                      fmt(row[f"last_{recent}w"]),
                      f"{fmt(row['recent_change_pct'])} [{fmt(row['recent_change_ci95_lo'])}, "
                      f"{fmt(row['recent_change_ci95_hi'])}]" if row["recent_change_pct"] is not None else "")
    out.print(table)
    out.print(f"[dim]{meta['method']}[/]")
    out.print("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("evaluate-intervention")
@handles_errors
def evaluate_intervention_cmd(
    config: ConfigOption,
    cells: Annotated[Path, typer.Option("--cells", help="the treated cells: CSV with a cell_id column, or GeoJSON/"
                                                        "GPKG polygons (cells whose centre is inside) or points")],
    start: Annotated[str, typer.Option(help="YYYY-MM-DD: first day of the intervention")],
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD: last day [default: the end of the data]")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for intervention.json and .png "
                                                     "[default: outputs/AREA/PRODUCT/intervention]")] = None,
    offence: Annotated[list[str], typer.Option("--offence", help="offence to count (repeatable) [default: all]")
                       ] = [],
    product: ProductOption = None,
):
    """Effect of an intervention in a set of cells: difference-in-differences against matched control cells, with a
    95% interval, a placebo test on the pre-period and a check for displacement into the surrounding cells."""
    from hotspot.steps import intervention_step

    cfg = load(config, product)
    result, paths = intervention_step(cfg, cells, start, end, out_dir or default_out(cfg, "intervention"),
                                      offences=offence or None)
    table = Table(title=f"Intervention in {len(result.treated_cells)} cells from {result.start} to {result.end} "
                        "(difference-in-differences vs matched controls)")
    for col in ("comparison", "cells", "effect %", "95% interval", "per cell-week", "95% interval ", "reads"):
        table.add_column(col, justify="left" if col in ("comparison", "reads") else "right")
    rows = [("estimate", result.estimate, "significant" if result.estimate and not result.estimate.includes_zero
             else "interval includes 0"),
            ("placebo (pre-period)", result.placebo, "ok: includes 0" if result.placebo.includes_zero else
             "[yellow]fails: pre-trends differ, read the estimate with care[/]"),
            ("displacement (ring)", result.displacement, "")]
    for name, e, reads in rows:
        if e is None:
            table.add_row(name, "0", "", "", "", "", "no ring cells")
            continue
        if name.startswith("displacement"):
            reads = ("[yellow]rise next door: possible displacement[/]" if e.ci95[0] > 0 else
                     "fall next door: possible diffusion of benefits" if e.ci95[1] < 0 else "no detectable change")
        sign = lambda v: "n/a" if v != v else f"{v:+.1f}"  # noqa: E731
        table.add_row(name, str(e.cells), sign(e.effect_pct), f"\\[{sign(e.pct_ci95[0])}, {sign(e.pct_ci95[1])}]",
                      f"{e.effect_per_cell_week:+.3f}", f"[{e.ci95[0]:+.3f}, {e.ci95[1]:+.3f}]", reads)
    out.print(table)
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print("[dim]Recorded incidents are policing data: an intervention that changes patrols can change recording "
              "as well as crime.[/]")
    out.print(f"wrote {paths['json']} and {paths['png']}")


@app.command("export")
@handles_errors
def export_cmd(
    config: ConfigOption,
    week: Annotated[str, typer.Option(help="YYYY-MM-DD: start of the period to forecast")],
    fmt: Annotated[str, typer.Option("--format", help="gpkg, geojson or csv")],
    out_file: Annotated[Path, typer.Option("--out", help="file to write")],
    model: ModelOption = "auto",
    version: VersionOption = None,
    product: ProductOption = None,
):
    """Forecast one period as `hotspot forecast` does (auto, or a pinned version) and write it for partners' GIS:
    GeoPackage, GeoJSON or CSV (cells only, never incidents); the metadata says what forecast."""
    from hotspot.steps import export_step
    from hotspot.training.forecast_model import pin_from

    cfg = load(config, product)
    cells, meta, path = export_step(cfg, week, fmt, out_file, pin=pin_from(model, version))
    label = (f"auto: {meta['model_version']}" if meta.get("selection")
             else f"{meta['model']} v{meta['model_version']}")
    out.print(f"wrote {len(cells):,} cells of the week of {meta['period_start']} ({label}) to {path}")
