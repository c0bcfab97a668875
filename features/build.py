"""Building the chosen feature families on a build context into the panel's feature cube (features.registry):
one function for the whole grid (features/panel.py) and for each tile of it on the Dask engine (features/tiles.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hotspot.features.families import FAMILIES
from hotspot.features.registry import BuildContext


@dataclass
class Built:
    """The features of a panel as `build_features` makes them: names and metadata in build order, the cube."""

    names: list[str]
    descriptions: dict[str, str]
    units: dict[str, str]
    families: dict[str, str]
    reasons: dict[str, str]
    skipped: dict[str, str]
    lookback: int
    X: np.ndarray  # (T + 1, C, F) float32


def build_features(ctx: BuildContext, chosen: list[str],
                   on_family: Callable[[str, int, int], None] | None = None) -> Built:
    """Build the `chosen` families (features.registry) on the context, in order; `on_family(name, i, n)` is told
    before each one."""
    cfg = ctx.cfg
    skipped: dict[str, str] = {}
    names, descriptions, units, families, reasons, columns = [], {}, {}, {}, {}, []
    lookback = 0
    for i, fam_name in enumerate(chosen):
        if on_family is not None:
            on_family(fam_name, i, len(chosen))
        fam = FAMILIES[fam_name]
        reason = fam.unavailable(ctx)
        if reason:
            if cfg.features.families and fam_name in cfg.features.families:
                raise ValueError(f"feature family '{fam_name}' was asked for in [features] families but cannot be "
                                 f"built: {reason}")
            skipped[fam_name] = reason
            continue
        lookback = max(lookback, fam.lookback(cfg, ctx.periods_per_year))
        for feat in fam.build(ctx):
            if feat.name in descriptions:
                raise ValueError(f"feature {feat.name!r} is built by two families")
            names.append(feat.name)
            descriptions[feat.name] = feat.description
            units[feat.name] = feat.unit
            families[feat.name] = fam_name
            reasons[feat.name] = feat.reason
            columns.append(feat.values)
    X = np.empty((ctx.n_periods + 1, ctx.grid.n_cells, len(columns)), dtype=np.float32)
    for f, values in enumerate(columns):
        X[:, :, f] = values  # a static (C,) feature broadcasts over periods
    return Built(names, descriptions, units, families, reasons, skipped, lookback, X)
