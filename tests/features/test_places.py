"""Place names for cells: from polygons with a name column, or from the incidents' own area labels."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely

from hotspot.features.area import WGS84
from hotspot.features.config import load_config
from hotspot.features.errors import InputError
from hotspot.features.ingest import validate
from hotspot.features.places import build_places, position_name
from tests.conftest import ORIGIN_LAT, ORIGIN_LON, synthetic_incidents, write_config


def west_east(incidents):
    """Label each incident by the half of the square it lies in (a planted, known answer)."""
    mid = ORIGIN_LON + 0.03
    return incidents.assign(hood=np.where(incidents["lon"] < mid, "West End", "East End"))


def test_incident_labels_name_every_cell_by_its_most_common_label(tmp_path):
    incidents = west_east(synthetic_incidents(n=3000, hotspot_share=0.0))
    cfg = load_config(write_config(tmp_path, incidents, extra_incidents='place = "hood"'))
    result = validate(cfg)
    places = build_places(cfg, result.accepted, result.grid, result.area)
    assert places is not None and "hood" in places.origin
    grid = result.grid
    mid_x = np.median(grid.x)
    names = places.cell_place
    assert set(names) == {"West End", "East End"}
    # cells well away from the dividing line carry the label of their side (every cell has a name)
    far_west, far_east = grid.x < mid_x - 1000, grid.x > mid_x + 1000
    assert (names[far_west] == "West End").all() and (names[far_east] == "East End").all()
    assert sorted(places.areas["name"]) == ["East End", "West End"]
    assert places.areas["n_cells"].sum() == grid.n_cells
    # every label point lies inside its own area
    for geom, x, y in zip(places.areas.geometry, places.areas["label_x"], places.areas["label_y"]):
        assert geom.buffer(1).contains(shapely.Point(x, y))
    geojson = places.to_geojson(result.area)
    kinds = [f["properties"]["kind"] for f in geojson["features"]]
    assert kinds.count("outline") == 1 and kinds.count("area") == 2
    json.dumps(geojson)  # serialisable as is


def test_a_label_column_that_is_missing_is_named(tmp_path):
    cfg = load_config(write_config(tmp_path, synthetic_incidents(), extra_incidents='place = "hood"'))
    with pytest.raises(InputError, match="place column 'hood' not found"):
        validate(cfg)


def test_polygons_name_cells_and_take_precedence_over_labels(tmp_path):
    incidents = west_east(synthetic_incidents(n=2000))
    # a north and a south polygon: the cells' names must follow the polygons, not the incidents' west/east labels
    north = shapely.box(ORIGIN_LON - 0.1, ORIGIN_LAT + 0.0225, ORIGIN_LON + 0.2, ORIGIN_LAT + 0.2)
    south = shapely.box(ORIGIN_LON - 0.1, ORIGIN_LAT - 0.2, ORIGIN_LON + 0.2, ORIGIN_LAT + 0.0225)
    gpd.GeoDataFrame({"ward": ["North Ward", "South Ward"]}, geometry=[north, south], crs=WGS84).to_file(
        tmp_path / "wards.geojson", driver="GeoJSON")
    cfg = load_config(write_config(tmp_path, incidents, extra_incidents='place = "hood"',
                                   extra='[places]\nareas = "wards.geojson"\nname_column = "ward"'))
    result = validate(cfg)
    places = build_places(cfg, result.accepted, result.grid, result.area)
    assert "wards.geojson" in places.origin
    lat = result.grid.lat
    assert (places.cell_place[lat > ORIGIN_LAT + 0.03] == "North Ward").all()
    assert (places.cell_place[lat < ORIGIN_LAT + 0.015] == "South Ward").all()
    # the areas are clipped to the study area
    assert all(result.area.boundary.buffer(1).contains(g) for g in places.areas.geometry)


def test_a_wrong_name_column_is_named(tmp_path):
    square = shapely.box(ORIGIN_LON - 0.1, ORIGIN_LAT - 0.1, ORIGIN_LON + 0.2, ORIGIN_LAT + 0.2)
    gpd.GeoDataFrame({"ward": ["A"]}, geometry=[square], crs=WGS84).to_file(tmp_path / "w.geojson", driver="GeoJSON")
    cfg = load_config(write_config(tmp_path, extra='[places]\nareas = "w.geojson"\nname_column = "nom"'))
    result = validate(cfg)
    with pytest.raises(InputError, match=r"no column 'nom' \(named by places.name_column\); columns: \['ward'\]"):
        build_places(cfg, result.accepted, result.grid, result.area)


def test_no_names_without_polygons_or_labels(tmp_path):
    cfg = load_config(write_config(tmp_path))
    result = validate(cfg)
    assert build_places(cfg, result.accepted, result.grid, result.area) is None
    assert position_name(-79.3832, 43.6532) == "43.653 N 79.383 W"


def test_the_sample_names_its_cells_by_neighbourhood(sample_prepared):
    cfg, result, _ = sample_prepared
    places = build_places(cfg, result.accepted, result.grid, result.area)
    assert places is not None and "Neighbourhood" in places.origin
    assert (places.cell_place != None).all()  # noqa: E711
    assert 20 <= len(places.areas) <= 80
    assert "Bay Street Corridor" in set(places.areas["name"])
