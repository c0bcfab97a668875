"""What `pip install .` installs: one top-level package, `hotspot`, with the bundled sample, configs, templates and
static files as package data, so the installed copy runs from any directory (not only from a checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_architecture import package_dirs

DATA_SUFFIXES = {".toml", ".parquet", ".html", ".js", ".css", ".png", ".j2"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, built from a copy of the working tree (setuptools writes build/
    beside the sources; the copy keeps that out of the checkout)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for f in listed:
        if (REPO_ROOT / f).is_file():
            (source / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / f, source / f)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("hotspot-*.whl")
    return found


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def test_the_wheel_installs_only_the_hotspot_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"hotspot", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "hotspot/features/config.py" in names and "hotspot/models/gbm.py" in names
    assert "hotspot/training/audit/run.py" in names and "hotspot/analysis/trends.py" in names
    assert not any(n.endswith("/lightgbm.py") for n in names)  # nothing shadows the library


def test_every_data_file_the_packages_ship_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = []
    for package, folder in package_dirs().items():
        for f in tracked_files():
            path = Path(f)
            if path.suffix in DATA_SUFFIXES and path.parts[0] == folder and (REPO_ROOT / folder).is_dir():
                expected.append("/".join([*package.split("."), *path.parts[1:]]))
    assert "hotspot/configs/toronto-sample.toml" in expected
    assert "hotspot/data/toronto_sample/incidents.parquet" in expected
    assert sorted(set(expected) - names) == []


@pytest.mark.slow
def test_the_installed_copy_runs_from_an_empty_directory(wheel, tmp_path):
    """Unpacked outside the checkout, the package finds its own sample and config (package data) and validates it
    from a directory with nothing in it; the modules come from the installed copy, not the repository."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import sys, hotspot.features.config as c, hotspot.cli.common as common; "
            "print(c.__file__); print(common.SAMPLE_CONFIG); "
            "sys.argv = ['hotspot', 'validate', '--config', str(common.SAMPLE_CONFIG), '--out', 'val']; "
            "from hotspot.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    module_file, sample_config = proc.stdout.splitlines()[:2]
    assert Path(module_file).is_relative_to(site) and Path(sample_config).is_relative_to(site)
    assert (empty / "val" / "validation.json").exists()
