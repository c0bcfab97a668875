"""The prepared inputs (validated incidents, panel, place names) cached by content, so `train`, `forecast`,
`export`, `audit` and the service build the panel once per change of inputs, not once per command.

The key is a hash of everything the panel is made from: the config's data sections, the bytes of every input file
the config names (and of the stored history), the source of the `features` package that builds it, the versions of
the libraries whose arithmetic it uses, and today's date (validation sets aside records dated in the future, so
the same files can validate differently tomorrow). A change to any of them is a new key; stale entries are
removed, keeping the newest `KEEP` per area.

Entries are pickles in the cache folder (`HOTSPOT_CACHE_DIR`, default the user cache folder, e.g.
`~/.cache/hotspot`): they are read only by this package, from a folder only its user writes, and hold numpy
arrays that pickle without copies. `HOTSPOT_CACHE=off` switches the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sys
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from hotspot.features.candidates import file_sha256
from hotspot.features.config import StudyConfig
from hotspot.features.locking import locked, replace_atomically

KEEP = 2  # entries kept per area (the current inputs and the ones before, e.g. before and after an append)
FORMAT = 1  # bumped when what an entry holds changes shape
# config sections that do not change the validated incidents, the panel or the place names
NOT_DATA = ("tune", "promotion", "backtest", "selection", "fairness", "trends", "privacy", "cycle", "engine")
LIBRARIES = ("numpy", "pandas", "scipy", "geopandas", "shapely", "pyproj", "holidays", "pyarrow")


def cache_dir() -> Path | None:
    """The cache folder, or None when `HOTSPOT_CACHE` is off."""
    if os.environ.get("HOTSPOT_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    folder = os.environ.get("HOTSPOT_CACHE_DIR")
    if folder:
        return Path(folder)
    import platformdirs

    return Path(platformdirs.user_cache_dir("hotspot"))


def _input_files(value: Any, found: set[Path]) -> None:
    """Every existing file a config value names (files in named folders too), found by walking the dumped config,
    so an input added to the config later is part of the key without a change here."""
    if isinstance(value, dict):
        for item in value.values():
            _input_files(item, found)
    elif isinstance(value, list):
        for item in value:
            _input_files(item, found)
    elif isinstance(value, str) and os.sep in value:
        path = Path(value)
        if path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.resolve() for p in path.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


@lru_cache(maxsize=1)
def code_digest() -> str:
    """Hash of the source of the package that validates and builds the panel, and of the libraries it uses."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256(f"{FORMAT}|{sys.version_info[:2]}".encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for name in LIBRARIES:
        try:
            digest.update(f"{name}={version(name)}".encode())
        except PackageNotFoundError:
            digest.update(f"{name}=-".encode())
    return digest.hexdigest()


def cache_key(cfg: StudyConfig, today: date | None = None) -> str:
    """The content key of a config's prepared inputs (see the module docstring)."""
    data = cfg.model_dump(mode="json", exclude=set(NOT_DATA))
    files: set[Path] = set()
    _input_files(data, files)
    if cfg.history_dir is not None and Path(cfg.history_dir).is_dir():
        _input_files(str(cfg.history_dir), files)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode())
    for path in sorted(files):
        digest.update(f"{path}:{file_sha256(path)}".encode())
    digest.update(code_digest().encode())
    digest.update(str(today or date.today()).encode())
    return digest.hexdigest()[:24]


def _entry(folder: Path, cfg: StudyConfig, key: str) -> Path:
    return folder / cfg.model_key / f"{key}.pkl"


def load(cfg: StudyConfig, key: str) -> Any | None:
    """The cached object for `key`, or None (absent, switched off, or unreadable: then it is built again)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = _entry(folder, cfg, key)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception:  # a truncated or foreign file: rebuilt and replaced, never trusted
        path.unlink(missing_ok=True)
        return None


def store(cfg: StudyConfig, key: str, value: Any) -> Path | None:
    """Write `value` under `key` (whole or not at all) and drop the area's oldest entries beyond KEEP."""
    folder = cache_dir()
    if folder is None:
        return None
    path = _entry(folder, cfg, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path, what="writing the panel cache"):
            replace_atomically(path, lambda tmp: tmp.write_bytes(pickle.dumps(value, protocol=5)))
        entries = sorted(path.parent.glob("*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
            shutil.rmtree(old.with_suffix(".parts"), ignore_errors=True)  # a partitioned panel's files (panel.py)
    except OSError as exc:  # a full or read-only disk costs the next command a rebuild, not this one its result
        print(f"hotspot: panel cache not written ({exc})", file=sys.stderr)
        return None
    return path
