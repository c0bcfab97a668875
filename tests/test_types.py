"""mypy finds no type errors in features/ and models/, checked under their installed names (hotspot.features,
hotspot.models) so that imports between modules are followed, not taken as unknown."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

CHECKED = ("features", "models")  # packages whose types are checked (the earliest stages; the rest may follow)


def typecheck_tree() -> str:
    """A folder where hotspot.features and hotspot.models resolve to the repository's folders (symlinks), as the
    installed namespace maps them; mypy does not read the editable install's import hook."""
    tree = REPO_ROOT / "build" / "typecheck" / "hotspot"
    tree.mkdir(parents=True, exist_ok=True)
    for name, target in (("__init__.py", REPO_ROOT / "hotspot" / "__init__.py"),
                         *((p, REPO_ROOT / p) for p in CHECKED)):
        link = tree / name
        if not (link.is_symlink() and link.resolve() == target.resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    return str(tree.parent)


def test_features_and_models_have_no_type_errors():
    args = [sys.executable, "-m", "mypy", "--cache-dir", str(REPO_ROOT / ".mypy_cache"),
            *(a for p in CHECKED for a in ("-p", f"hotspot.{p}"))]
    proc = subprocess.run(args, cwd=REPO_ROOT, env={**os.environ, "MYPYPATH": typecheck_tree()},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "Success: no issues found" in proc.stdout, proc.stdout
