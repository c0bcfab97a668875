"""The synthetic region of benchmarks/synth_region.py (issue 18's scale tests) on two tiles: each tile is a copy of
Toronto at its own rate, inside its own boundary, and the written config validates like Toronto's."""

from __future__ import annotations

import importlib.util

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from tests.conftest import REPO_ROOT, requires_shared_data

pytestmark = [requires_shared_data, pytest.mark.slow]


def synth():
    spec = importlib.util.spec_from_file_location("synth_region", REPO_ROOT / "benchmarks" / "synth_region.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_tiles_are_two_torontos_at_their_own_rates(tmp_path):
    from hotspot.features.config import load_config
    from hotspot.features.ingest import validate

    module = synth()
    figures = module.make_region(2, tmp_path, seed=1, rate_sd=0.3)
    rows = pd.read_parquet(tmp_path / "incidents.parquet")
    source = pd.read_parquet(module.SHARED / "incidents_mci_2014_2021.parquet")
    assert figures["incidents"] == len(rows) and rows["row_id"].is_unique
    tile = rows["Neighbourhood"].str.split(" ", n=1).str[0]
    counts = tile.value_counts()
    factors = figures["rate_factors"]
    for k, factor in enumerate(factors):
        # Poisson(factor) copies of each incident, less the few moved out of the boundary by the jitter
        assert counts[f"T{k + 1}"] == pytest.approx(factor * len(source), rel=0.02)
    assert set(rows["MCI"]) == set(source["MCI"])
    times = pd.to_datetime(rows["datetime_local"])
    assert times.min() >= source["datetime_local"].min() and times.max() <= source["datetime_local"].max()
    share = rows["MCI"].value_counts(normalize=True)
    assert np.allclose(share.sort_index(), source["MCI"].value_counts(normalize=True).sort_index(), atol=0.01)

    boundary = gpd.read_file(tmp_path / "boundary.geojson")
    assert len(boundary.geometry[0].geoms) >= 2
    inside = shapely.contains_xy(boundary.union_all(), rows["Long"].to_numpy(), rows["Lat"].to_numpy())
    assert inside.mean() > 0.999  # in degrees, a point on the edge may fall a hair outside
    hoods = gpd.read_file(tmp_path / "neighbourhoods.geojson")
    assert len(hoods) == 280 and hoods["hood_name"].str.startswith(("T1 ", "T2 ")).all()

    cfg = load_config(tmp_path / "region.toml")
    assert cfg.area.name == "synth-region" and not cfg.context
    toronto = validate(load_config(REPO_ROOT / "configs" / "toronto.toml")).grid.n_cells
    validated = validate(cfg)
    assert validated.grid.n_cells == pytest.approx(2 * toronto, rel=0.02)
    assert len(validated.accepted) == pytest.approx(len(rows), rel=0.01)
