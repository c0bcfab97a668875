"""The `briefing` command: the weekly briefing for command staff as a printable PDF or HTML page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hotspot.cli.common import (
    ConfigOption,
    ModelOption,
    ProductOption,
    VersionOption,
    app,
    handles_errors,
    load,
    out,
)


@app.command("briefing")
@handles_errors
def briefing_cmd(
    config: ConfigOption,
    out_file: Annotated[Path, typer.Option("--out", help="file to write: .pdf or .html (or say which with --format)",
                                           show_default=False)],
    week: Annotated[str | None, typer.Option(help="YYYY-MM-DD: start of the week to brief on [default: the first "
                                                  "week not yet recorded]")] = None,
    top: Annotated[int, typer.Option(help="cells in the top list and on the map", min=1, max=100)] = 10,
    fmt: Annotated[str | None, typer.Option("--format", help="pdf or html [default: from the suffix of --out]")]
    = None,
    paper: Annotated[str, typer.Option(help="a4 or letter")] = "a4",
    model: ModelOption = "auto",
    version: VersionOption = None,
    product: ProductOption = None,
):
    """Weekly briefing of the week's forecast (auto, as `hotspot forecast` and the map, or a pinned version): map of
    the top cells, the top list with places and reasons, what changed since last week, how last week's forecast did
    beside the best baseline, and the caveat; one or two pages. With
    a publication store (HOTSPOT_DATABASE_URL, default sqlite:///hotspot.db) whose weeks `hotspot cycle` has scored,
    also the live record of the published forecasts."""
    from hotspot.steps import briefing_step
    from hotspot.training.forecast_model import pin_from

    cfg = load(config, product)
    start = time.perf_counter()
    briefing, path = briefing_step(cfg, out_file, week, top, fmt, paper, pin=pin_from(model, version))
    lw = briefing.last_week
    out.print(f"briefing for the week of {briefing.week_start} to {briefing.week_end} ({briefing.model_label}): "
              f"top {len(briefing.top)} cells, "
              f"{sum(c.new for c in briefing.top)} new since last week", highlight=False)
    if lw is not None:
        out.print(f"last week ({lw.week_start}): the top {lw.n_cells} cells held {lw.forecast.hits:g} of "
                  f"{lw.recorded} recorded incidents; best baseline {lw.best_baseline.model} "
                  f"{lw.best_baseline.hits:g}", highlight=False)
    else:
        out.print(f"last week not scored: {briefing.last_week_missing}", highlight=False)
    if briefing.live is not None:
        out.print(f"live record: {briefing.live['sentence']}", highlight=False)
    out.print(f"wrote {path} in {time.perf_counter() - start:.1f} s", highlight=False)
