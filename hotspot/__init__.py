"""Command-line layer: wires the steps of features/, models/, training/ and serving/ together."""
import os

# OpenMP threads (LightGBM, scikit-learn) sleep instead of spinning while they wait. On a 2-core laptop running
# anything else beside a fit, spinning threads made fits 5x slower in wall time (measured: 2m31s vs 30s for the
# sample's `hotspot train` beside another LightGBM job). Set before any OpenMP runtime loads; override by exporting it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from importlib.metadata import version as _version  # noqa: E402

__version__ = _version("hotspot")
