"""`hotspot` command line: one command per pipeline step (see DESIGN.md, Command-line contract).

`common` holds the Typer app and what every command shares; each command group is a module that adds its commands
to that app: `pipeline` (validate ... forecast), `briefing`, `audit`, `partners` (trends, impact, export),
`service` (serve, keys), `demo`. They are imported here, once, so `hotspot.cli:app` has every command.
"""

from hotspot.cli.common import SAMPLE_CONFIG, app

# each module adds its commands to `app`; imported in the order `hotspot --help` lists them (not sorted)
# isort: off
from hotspot.cli import pipeline  # noqa: F401
from hotspot.cli import briefing  # noqa: F401
from hotspot.cli import audit  # noqa: F401
from hotspot.cli import partners  # noqa: F401
from hotspot.cli import service  # noqa: F401
from hotspot.cli import cycle  # noqa: F401
from hotspot.cli import demo  # noqa: F401
# isort: on


def main() -> None:  # pragma: no cover - console-script entry
    """Run the `hotspot` command line (the console-script entry point)."""
    app(prog_name="hotspot")


__all__ = ["SAMPLE_CONFIG", "app", "main"]
