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


def _metadata(wheel: Path):
    from email.parser import Parser

    zf = zipfile.ZipFile(wheel)
    (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(zf.read(name).decode()), zf.namelist()


def test_the_wheel_says_what_it_is_its_licence_and_its_readme(wheel):
    meta, names = _metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()[:200]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)  # the licence text travels with it
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith((REPO_ROOT / "README.md").read_text()[:200])
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in classifiers)
    assert meta["Requires-Python"] == ">=3.11"


def test_dependency_floors_are_met_by_the_tested_pins_and_mlflow_is_3(wheel):
    """Every floor in Requires-Dist is at or below the version constraints.txt pins (the tested one), and MLflow's
    floor is 3: the code logs models by `name=` and registers a pyfunc logged as code."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    meta, _ = _metadata(wheel)
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = Version(version.strip())
    floors = {}
    for text in meta.get_all("Requires-Dist"):
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"extra": "dev"}):
            continue
        name = canonicalize_name(req.name)
        for spec in req.specifier:
            if spec.operator == ">=":
                floors[name] = Version(spec.version)
                assert name in pins, f"{req.name} has a floor but no tested pin in constraints.txt"
                assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    assert floors["mlflow"] >= Version("3.1")
    assert {"lightgbm", "pandas", "numpy", "fastapi"} <= set(floors)
