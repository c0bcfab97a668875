"""hotspot: weekly crime-hotspot forecasting. The one installed namespace: the stage folders of the repository
install as hotspot.features, hotspot.models, hotspot.training, hotspot.analysis and hotspot.serving (pyproject.toml,
package-dir); hotspot.steps and hotspot.cli are the command line that wires them together.

Importing any part of the package runs this first, so the OpenMP setting below holds for every entry point."""
import os

# OpenMP threads (LightGBM, scikit-learn) sleep instead of spinning while they wait. On a 2-core laptop running
# anything else beside a fit, spinning threads made fits 5x slower in wall time (measured: 2m31s vs 30s for the
# sample's `hotspot train` beside another LightGBM job). Set before any OpenMP runtime loads; override by exporting it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from importlib.metadata import version as _version  # noqa: E402

__version__ = _version("hotspot")
