"""What every command module shares: the Typer app, the consoles, the --config option, loading a config and turning
input problems into a message and exit code 2."""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hotspot.features.config import ConfigError, StudyConfig, load_config
from hotspot.features.errors import HotspotError
from hotspot.steps.common import default_out, output_root  # noqa: F401  (re-exported for the commands)

# the bundled sample's config is package data (hotspot.configs): found the same way in a checkout and an install
SAMPLE_CONFIG = Path(str(resources.files("hotspot.configs") / "toronto-sample.toml"))

app = typer.Typer(
    name="hotspot",
    help="Weekly crime-hotspot forecasting: ingest and validate inputs, build features, train, tune, promote, "
         "backtest, audit, forecast, serve, and trends, impact and exports for partners.\n\n"
         "Every command logs to MLflow (MLFLOW_TRACKING_URI, default sqlite:///mlflow.db).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show MLflow's, Optuna's and LightGBM's own log "
                                                                   "lines (off by default: only warnings)")] = False,
) -> None:
    """Options every command shares (given before the command: `hotspot -v train ...`)."""
    quiet_libraries(not verbose)


def quiet_libraries(quiet: bool) -> None:
    """Keep the libraries' INFO lines (MLflow's migrations and registrations, Alembic's) off the console unless
    --verbose; their warnings still show. Read by training/tracking.py when it first configures MLflow."""
    os.environ["HOTSPOT_LIBRARY_LOGS"] = "quiet" if quiet else "show"
    if quiet:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="study-area TOML file", show_default=False)]
ProductOption = Annotated[str | None, typer.Option(
    "--product", "-p", help="forecast product, by its name in the config's products [default: the first]",
    show_default=False)]
ModelOption = Annotated[str, typer.Option(
    "--model", "-m", help="what forecasts: 'auto' (the selection rule over [selection] candidates, fitted with only "
                          "the weeks before the week) or 'champion' (the registry's alias)")]
EngineOption = Annotated[str | None, typer.Option(
    "--engine", help="where the step runs: 'local' (this process) or 'dask' (a Dask cluster: --scheduler's, or a "
                     "LocalCluster started for this run) [default: [engine] kind, else local]", show_default=False)]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", help="address of a running Dask scheduler (tcp://HOST:8786); implies --engine dask "
                        "[default: [engine] scheduler]", show_default=False)]
VersionOption = Annotated[str | None, typer.Option(
    "--version", help="pin a registered version of the product's model (overrides --model)", show_default=False)]


def fail(message: str) -> None:
    """Print an error message (first line in red, the rest as given) and exit with code 2."""
    first, *rest = message.strip().splitlines() or ["unknown error"]
    err.print(f"[bold red]error:[/] {first}", highlight=False, soft_wrap=True)
    for line in rest:
        err.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def handles_errors(func):
    """Turn input problems into a clear message and exit code 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ConfigError, HotspotError) as exc:
            fail(str(exc))
        except (ValueError, IndexError) as exc:
            if os.environ.get("HOTSPOT_DEBUG"):
                raise
            fail(f"{exc}")

    return wrapper


def load(config: Path, product: str | None = None) -> StudyConfig:
    """Load and validate a study config for one of its products (None = the first); errors are turned into messages
    by `handles_errors`."""
    return load_config(config).for_product(product)


def on_engine(cfg: StudyConfig, engine: str | None, scheduler: str | None):
    """The engine the command runs on (features/engine.py), announced on the console when it is Dask."""
    from hotspot.features.engine import engine as open_engine

    return open_engine(cfg, engine, scheduler, say=lambda text: out.print(text, highlight=False))
