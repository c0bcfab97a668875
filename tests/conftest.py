"""Shared fixtures: synthetic study areas whose right answers are known, the bundled sample, the real data."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see hotspot/__init__.py
# the panel cache (features/cache.py) of this test session: shared by its tests (keys are by content, so a test that
# changes an input gets its own entry), never the user's own cache folder
os.environ["HOTSPOT_CACHE_DIR"] = tempfile.mkdtemp(prefix="hotspot-test-cache-")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CONFIG = REPO_ROOT / "configs" / "toronto-sample.toml"
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()
TORONTO_CONFIG = REPO_ROOT / "configs" / "toronto.toml"

requires_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "toronto" / "incidents_mci_2014_2021.parquet").exists(),
    reason=f"real data not present at {SHARED_DATA}",
)

# A 5 km x 5 km square in central Toronto (WGS84 corners), used by synthetic tests.
ORIGIN_LON, ORIGIN_LAT = -79.40, 43.65


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path, monkeypatch):
    """Every test gets its own MLflow SQLite store and working directory, so nothing leaks between tests."""
    import mlflow
    import mlflow.tracking.fluent as fluent

    # mlflow.set_experiment() exports MLFLOW_EXPERIMENT_ID into os.environ; an id from another test's store would
    # leak into the next test's subprocesses (`mlflow run`, the CLI), so every test starts and ends without it
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    fluent._active_experiment_id = None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # an in-process step may have set MLflow's global tracking URI to an earlier test's store
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    fluent._active_experiment_id = None


def synthetic_incidents(n: int = 2000, weeks: int = 80, seed: int = 0, hotspot_share: float = 0.3,
                        start: str = "2020-01-06") -> pd.DataFrame:
    """Incidents spread over a ~5 km square with a planted hotspot near its centre, over `weeks` weeks."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    n_hot = int(n * hotspot_share)
    lon = np.concatenate([rng.uniform(ORIGIN_LON, ORIGIN_LON + 0.06, n - n_hot),
                          rng.normal(ORIGIN_LON + 0.03, 0.0008, n_hot)])
    lat = np.concatenate([rng.uniform(ORIGIN_LAT, ORIGIN_LAT + 0.045, n - n_hot),
                          rng.normal(ORIGIN_LAT + 0.0225, 0.0006, n_hot)])
    seconds = rng.uniform(0, weeks * 7 * 86400, n)
    when = t0 + pd.to_timedelta(np.sort(seconds), unit="s")
    offense = rng.choice(["Assault", "Robbery", "Break and Enter"], size=n, p=[0.5, 0.2, 0.3])
    return pd.DataFrame({"when": when.strftime("%Y-%m-%d %H:%M:%S"), "lon": lon, "lat": lat, "offence": offense,
                         "case_ref": np.arange(n)})


def write_config(folder: Path, incidents: pd.DataFrame | None = None, *, fmt: str = "csv",
                 extra_incidents: str = "", extra: str = "", area: str = "", name: str = "synthetic") -> Path:
    """Write incidents (CSV by default) and a study-area TOML mapping them; return the TOML path."""
    folder.mkdir(parents=True, exist_ok=True)
    incidents = synthetic_incidents() if incidents is None else incidents
    data_path = folder / f"incidents.{fmt}"
    if fmt == "csv":
        incidents.to_csv(data_path, index=False)
    else:
        incidents.to_parquet(data_path, index=False)
    text = textwrap.dedent(f"""
        [area]
        name = "{name}"
        cell_size_m = 500
        {area}

        [incidents]
        path = "{data_path.name}"
        timestamp = "when"
        lon = "lon"
        lat = "lat"
        offense = "offence"
        latest_date = 2030-01-01
        allow_columns = ["case_ref"]  # a record id: read, never published (features/privacy.py)
        {extra_incidents}

        [features]
        windows = [1, 2, 4, 8]
        group_windows = [4]
        ewm_halflives = [4.0]
        ring_windows = [1, 4]
        kernel_windows = [4]
        idw_window = 4
        mix_window = 8

        [model]
        train_periods = 30

        [model.lightgbm]
        num_boost_round = 30
        min_data_in_leaf = 20

        [backtest]
        weeks = 6
        refit_every = 3
        naive_weeks = [4]
        ewm_halflife = 8
        {extra}
    """)
    path = folder / "area.toml"
    path.write_text(text)
    return path


@pytest.fixture
def synthetic_config(tmp_path) -> Path:
    return write_config(tmp_path / "synthetic")


@pytest.fixture(scope="session")
def sample_prepared():
    """The bundled sample validated and built into a panel once per session (read-only for tests)."""
    from hotspot.features.config import load_config
    from hotspot.features.ingest import validate
    from hotspot.features.panel import build_panel

    cfg = load_config(SAMPLE_CONFIG)
    result = validate(cfg)
    return cfg, result, build_panel(cfg, result.accepted, result.grid)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600):
    """Run the installed `hotspot` console script as a user would; return the CompletedProcess."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("hotspot")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=cwd)
