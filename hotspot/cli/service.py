"""`hotspot serve` and `hotspot keys`: the API service and its keys (registered on the shared app)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hotspot.cli.common import ModelOption, ProductOption, VersionOption, app, err, fail, handles_errors, load, out
from hotspot.serving import DEFAULT_DATABASE_URL

DatabaseOption = Annotated[str, typer.Option("--database-url", envvar="HOTSPOT_DATABASE_URL",
                                             help="publications and keys database (SQLite file or PostgreSQL URL)")]


@app.command("serve")
@handles_errors
def serve_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="HOTSPOT_CONFIG",
                                                   help="study-area TOML file")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes", min=1)] = 1,
    database_url: DatabaseOption = DEFAULT_DATABASE_URL,
    access_log: Annotated[bool, typer.Option(help="print one JSON line per request (the access_log table is "
                                                  "written either way)")] = True,
):
    """Run the API (FastAPI under uvicorn): forecasts, reports, models and the map page at /map."""
    import uvicorn

    if config is None:
        fail("--config is required (or set HOTSPOT_CONFIG)")
    load(config)  # refuse a bad config here, with its key path, rather than inside the server
    os.environ["HOTSPOT_CONFIG"] = str(config.resolve())
    os.environ["HOTSPOT_DATABASE_URL"] = database_url
    os.environ["HOTSPOT_ACCESS_LOG_LINES"] = "true" if access_log else "false"
    uvicorn.run("hotspot.serving.app:create_app", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_level="info", timeout_graceful_shutdown=5,
                server_header=False)  # no `server: uvicorn` banner


@app.command("publish")
@handles_errors
def publish_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="study-area TOML file")],
    week: Annotated[list[str] | None, typer.Option(
        help="week to publish (YYYY-MM-DD, a period start; repeat for several) [default: the first unrecorded "
             "week]")] = None,
    new_version: Annotated[bool, typer.Option(help="publish a new version of a week already published")] = False,
    database_url: DatabaseOption = DEFAULT_DATABASE_URL,
    model: ModelOption = "auto",
    version: VersionOption = None,
    product: ProductOption = None,
):
    """Forecast a week with `auto` (or a pinned version) and publish it for the map and the API (as POST
    /v1/forecasts does); exits 2 when the week is already published (unless --new-version)."""
    from hotspot.serving.db import PublicationExists
    from hotspot.steps.publish import publish_step
    from hotspot.training.forecast_model import pin_from

    cfg = load(config, product)
    try:
        done = publish_step(cfg, list(week or [None]), database_url, new_version=new_version,
                            pin=pin_from(model, version))
    except PublicationExists as exc:
        fail(f"the week of {exc.week} is already published (version {exc.version}); publications are immutable: "
             f"add --new-version to publish version {exc.version + 1}")
    for p in done:
        if p.selection:
            out.print(p.selection, highlight=False)
        model_text = f"auto: {p.model_version}" if p.selection else f"model v{p.model_version}"
        out.print(f"published the week of {p.week} (version {p.version}, {model_text}): {p.cells:,} "
                  f"cells, {p.expected_incidents:.1f} expected incidents -> {database_url}", highlight=False)


keys_app = typer.Typer(help="API keys for the service: create (printed once), revoke, list.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _keys_engine(database_url: str):
    from hotspot.serving.db import create_schema, make_engine

    engine = make_engine(database_url)
    create_schema(engine)
    return engine


@keys_app.command("create")
@handles_errors
def keys_create_cmd(
    role: Annotated[str, typer.Option(help="public (aggregated public trends only), viewer (forecasts, map), "
                                           "auditor (+ reports, models) or analyst (+ publish)")],
    name: Annotated[str | None, typer.Option(help="who or what the key is for")] = None,
    database_url: DatabaseOption = DEFAULT_DATABASE_URL,
):
    """Create an API key; the key is printed once (only its hash is stored)."""
    from hotspot.serving.auth import create_key

    key, record = create_key(_keys_engine(database_url), role, name)
    print(key)
    err.print(f"created {record.role} key {record.key_id} (shown once; store it now; revoke with `hotspot keys "
              f"revoke {record.key_id}`)", highlight=False)


@keys_app.command("revoke")
@handles_errors
def keys_revoke_cmd(
    key_id: Annotated[str, typer.Argument(help="the key id (hs_ and 8 characters) or the key itself")],
    database_url: DatabaseOption = DEFAULT_DATABASE_URL,
):
    """Revoke an API key: requests with it get 401 from then on."""
    from hotspot.serving.auth import revoke_key

    try:
        record = revoke_key(_keys_engine(database_url), key_id)
    except LookupError as exc:
        fail(str(exc))
    out.print(f"revoked {record.role} key {record.key_id} at {record.revoked_at.isoformat()}")


@keys_app.command("list")
@handles_errors
def keys_list_cmd(database_url: DatabaseOption = DEFAULT_DATABASE_URL):
    """List API keys (ids, roles, when created and revoked; never the keys)."""
    from hotspot.serving.auth import list_keys

    table = Table(title="API keys")
    for col in ("key id", "role", "name", "created", "revoked"):
        table.add_column(col)
    for k in list_keys(_keys_engine(database_url)):
        table.add_row(k.key_id, k.role, k.name or "", k.created_at.isoformat(),
                      k.revoked_at.isoformat() if k.revoked_at else "")
    out.print(table)
