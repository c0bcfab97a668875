"""`auto`'s fits kept on disk, so that a weekly cycle (one process a week) refits only what the new weeks change.

`auto` forecasting a week is fitted at the week's refit week (training/forecast_model.py): each fit backtests every
candidate on the validation weeks before it, then fits the choice (or the blend's candidates) on every week before
it. A stored fit is reused when the data it saw is unchanged: the key is a digest of the panel's first periods
(labels, counts, features and incident times up to the refit week: everything a fit at that week can see, so a late
record for an earlier week makes a new key) and of what fits (the candidates' parameters, the selection settings, the
source of the models and of the selection rule, the LightGBM version). A refit seeds the selection with the
previous refit's stored scores and final fits when that one's data is unchanged too (`AutoSelect.seed`): on the
same weeks the result is exactly what a fit from scratch gives, in one LightGBM fit instead of three.

Entries are pickles under the features cache folder (`HOTSPOT_CACHE_DIR`, default the user cache folder; off with
`HOTSPOT_CACHE=off`), in `auto/MODEL_KEY/`, the newest `KEEP` per product kept. They hold fitted models; like the
panel cache they are read only by this package from a folder only its user writes. A file that cannot be read is
ignored (and refitted), never trusted in part.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from hotspot.features.locking import replace_atomically
from hotspot.features.panel import Panel
from hotspot.features.parts import PartitionedX

log = logging.getLogger(__name__)

KEEP = 6  # fits kept per product: the current refit and the one before, for a few data versions
FORMAT = 1  # bumped when an entry's shape changes


def folder(model_key: str) -> Path | None:
    """Where a product's fits are kept; None when the cache is off."""
    from hotspot.features.cache import cache_dir

    root = cache_dir()
    return None if root is None else root / "auto" / model_key


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The source of the models and of the selection and backtest loop that fit them, and LightGBM's version."""
    from importlib.metadata import version

    import hotspot.models as models
    import hotspot.training as training

    digest = hashlib.sha256(f"{FORMAT}|lightgbm={version('lightgbm')}|numpy={version('numpy')}".encode())
    files = sorted(Path(models.__file__).parent.glob("*.py")) + [
        Path(training.__file__).parent / name for name in ("selection.py", "rolling.py")]
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def spec_digest(auto) -> str:
    """What fits: the selection settings, each candidate's class, name and parameters, and the code (see above)."""
    def params(model) -> dict:
        return {k: repr(v) for k, v in sorted(model.get_params(deep=False).items()) if k != "candidates"}

    spec = {"auto": params(auto), "code": _code_digest(),
            "candidates": [[f"{type(c).__module__}.{type(c).__qualname__}", c.name, params(c)]
                           for c in auto.candidates]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _bytes(array: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(array)).cast("B")


def panel_digests(panel: Panel, stops: list[int]) -> dict[int, str]:
    """For each period index s in `stops`, a digest of what `panel.until(s)` holds: labels and counts of periods
    [0, s), features of periods [0, s] and the label's incident times before period s, with the grid, the feature
    names and the period starts. One pass over the arrays for all the stops: a running digest per array, copied at
    each stop, so that a stop's digest does not depend on the other stops asked for."""
    stops = sorted(set(stops))
    head = hashlib.sha256(json.dumps([panel.feature_names, list(panel.groups), panel.target_noun,
                                      str(panel.period_starts[0])]).encode())
    head.update(_bytes(np.asarray(panel.grid.cell_id)))
    parts = {name: hashlib.sha256() for name in ("target", "counts", "X", "days", "cells")}
    parts["X"].update(_bytes(panel.X[0]))
    lazy = isinstance(panel.X, PartitionedX)  # read a period at a time, never the whole cube (features/parts.py)
    days = panel.event_days
    out, done = {}, 0
    for s in stops:
        if not 0 <= s <= panel.n_periods:
            raise IndexError(f"period index {s} outside 0..{panel.n_periods}")
        parts["target"].update(_bytes(panel.target[done:s]))
        parts["counts"].update(_bytes(panel.counts[done:s]))
        for chunk in (panel.X[done + 1:s + 1].periods() if lazy else [panel.X[done + 1:s + 1]]):
            parts["X"].update(_bytes(chunk))
        if days is not None and panel.event_cell is not None:
            lo = int(np.searchsorted(days, panel.days_since_start(panel.period_starts[done]), side="left"))
            hi = int(np.searchsorted(days, panel.days_since_start(panel.period_starts[s]), side="left"))
            parts["days"].update(_bytes(days[lo:hi]))
            parts["cells"].update(_bytes(panel.event_cell[lo:hi]))
        done = s
        final = head.copy()
        for name, running in parts.items():
            final.update(name.encode() + running.copy().digest())
        final.update(f"|{s}".encode())
        out[s] = final.hexdigest()
    return out


def _path(model_key: str, spec: str, week: str, data: str) -> Path | None:
    root = folder(model_key)
    return None if root is None else root / f"{week}-{hashlib.sha256((spec + data).encode()).hexdigest()[:24]}.pkl"


def load(model_key: str, spec: str, week: str, data: str) -> dict | None:
    """The stored fit for (what fits, refit week, data digest), or None."""
    path = _path(model_key, spec, week, data)
    if path is None or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            entry = pickle.load(fh)  # noqa: S301 - written by store() below, in the user's own cache folder
    except Exception as exc:  # noqa: BLE001 - a damaged entry is refitted, never trusted in part
        log.warning("ignoring the stored auto fit %s: %s", path, exc)
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("spec") != spec \
            or entry.get("data") != data:
        return None
    return entry


def store(model_key: str, spec: str, week: str, data: str, entry: dict) -> None:
    """Keep a fit (atomically; the oldest entries beyond KEEP go). A failure to write costs only time later."""
    path = _path(model_key, spec, week, data)
    if path is None:
        return
    try:
        payload = pickle.dumps({**entry, "format": FORMAT, "spec": spec, "data": data},
                               protocol=pickle.HIGHEST_PROTOCOL)
        replace_atomically(path, lambda tmp: tmp.write_bytes(payload))
        entries = sorted(path.parent.glob("*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not keep the auto fit in %s: %s", path.parent, exc)
