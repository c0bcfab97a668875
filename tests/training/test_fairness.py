"""Demographic groups on cells: area-weighted interpolation, group definitions, and the errors an auditor meets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS

from hotspot.features.area import StudyArea
from hotspot.features.config import ConfigError, FairnessConfig, GroupDefinition, load_config
from hotspot.features.errors import HotspotError, InputError
from hotspot.features.grid import Grid
from hotspot.training.audit.fairness import cell_demography, polygon_labels, weighted_quantile_edges
from tests.conftest import write_config

UTM = CRS.from_epsg(32617)
X0, Y0 = 600_000.0, 4_800_000.0
# a 1 km x 1 km square of 100 m cells
GRID = Grid.from_area(StudyArea(UTM, shapely.box(X0, Y0, X0 + 1000, Y0 + 1000), "test"), 100.0, 1000)


def write_areas(path: Path, polygons, crs=UTM, **columns) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame(columns, geometry=list(polygons), crs=crs).to_file(path)
    return path


def fairness(areas: Path, groups: list, **extra) -> FairnessConfig:
    return FairnessConfig.model_validate({"areas": str(areas), "population": "pop", "groups": groups, **extra})


def two_halves(tmp_path: Path) -> Path:
    """West half (400 m wide, group A, 1000 residents) and east part (600 m, group B, 3000 residents); the
    boundary at x = 450 m cuts through the middle of a column of cells."""
    west = shapely.box(X0, Y0, X0 + 450, Y0 + 1000)
    east = shapely.box(X0 + 450, Y0, X0 + 1000, Y0 + 1000)
    return write_areas(tmp_path / "areas.geojson", [west, east], pop=[1000.0, 3000.0], share_a=[0.9, 0.2],
                       share_b=[0.1, 0.8], income=[30_000.0, 80_000.0])


def test_area_weighted_interpolation_conserves_population(tmp_path):
    cfg = fairness(two_halves(tmp_path), [{"name": "majority", "kind": "majority", "columns": ["share_a", "share_b"],
                                           "labels": ["A", "B"]}])
    demo = cell_demography(cfg, GRID)
    assert demo.population.sum() == pytest.approx(4000.0)
    groups = demo.definition("majority")
    np.testing.assert_allclose(groups.population.sum(0), [1000.0, 3000.0])
    # a cell wholly in the west polygon holds its share by area: 1000 residents over 0.45 km2, 0.01 km2 per cell
    west_cell = (GRID.x < X0 + 400)
    np.testing.assert_allclose(demo.population[west_cell], 1000 / 45)
    straddling = (GRID.x > X0 + 400) & (GRID.x < X0 + 500)
    np.testing.assert_allclose(groups.population[straddling], [[1000 / 90, 3000 / 110]] * 10)
    # the straddling cells count for the group with more residents in them (B); the others for their polygon
    assert (groups.label[west_cell] == 0).all() and (groups.label[~west_cell] == 1).all()
    # estimated residents of each share column
    assert demo.residents["share_a"].sum() == pytest.approx(0.9 * 1000 + 0.2 * 3000)
    assert demo.summary()["share_of_population_on_grid"] == pytest.approx(1.0)


def test_areas_in_another_crs_are_projected_first(tmp_path):
    wgs = gpd.GeoSeries([shapely.box(X0 - 500, Y0 - 500, X0 + 1500, Y0 + 1500)], crs=UTM).to_crs(4326)
    path = write_areas(tmp_path / "wgs.geojson", wgs, crs=4326, pop=[500.0], v=[1.0])
    demo = cell_demography(fairness(path, ["v"]), GRID)
    # the polygon is 2 km x 2 km around the 1 km grid: a quarter of its residents live on the grid
    assert demo.population.sum() == pytest.approx(125.0, rel=1e-3)
    assert demo.summary()["share_of_population_on_grid"] == pytest.approx(0.25, rel=1e-3)


def test_population_weighted_quantiles():
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    equal = pd.DataFrame({"v": values})
    definition = GroupDefinition(name="v", kind="quantile", column="v", quantiles=5)
    labels, describe = polygon_labels(equal, definition, np.ones(5))
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert "quantile 1 of 5 weighted by the residents of the study area (0.1 to 0.1)" in describe["Q1"]
    # the first polygon holds half the residents: it alone is the lower half
    halves = GroupDefinition(name="v", kind="quantile", column="v", quantiles=2)
    labels, _ = polygon_labels(equal, halves, np.array([4.0, 1, 1, 1, 1]))
    assert labels.tolist() == [0, 1, 1, 1, 1]
    np.testing.assert_allclose(weighted_quantile_edges(values, np.ones(5), 5), [0.1, 0.2, 0.3, 0.4])


def test_bins_and_majority_labels():
    frame = pd.DataFrame({"v": [5.0, 10.0, 20.0, 25.0, np.nan], "a": [0.6, 0.1, np.nan, 0.3, np.nan],
                          "b": [0.4, 0.9, 0.5, 0.2, np.nan]})
    bins = GroupDefinition(name="v", kind="bins", column="v", edges=[0, 10, 20])
    labels, describe = polygon_labels(frame, bins, np.ones(5))
    assert labels.tolist() == [0, 1, 1, -1, -1]  # 20 is the last bin's right edge; 25 and NaN are in no bin
    assert bins.group_labels == ["0-10", "10-20"] and describe["10-20"] == "v from 10 to 20"
    majority = GroupDefinition(name="m", kind="majority", columns=["a", "b"])
    labels, _ = polygon_labels(frame, majority, np.ones(5))
    assert labels.tolist() == [0, 1, 1, 0, -1]


def test_reference_defaults_and_overrides(tmp_path):
    path = two_halves(tmp_path)
    demo = cell_demography(fairness(path, [
        {"name": "majority", "kind": "majority", "columns": ["share_a", "share_b"], "labels": ["A", "B"]},
        {"name": "income", "kind": "bins", "column": "income", "edges": [0, 50_000, 100_000],
         "labels": ["low", "high"], "reference": "high"}, "share_a"]), GRID)
    assert demo.definition("majority").reference == "B"  # most residents
    assert demo.definition("income").reference == "high"
    assert demo.definition("share_a").reference == "Q1"  # the lowest quantile


def test_missing_column_names_the_file_and_column(tmp_path):
    path = two_halves(tmp_path)
    with pytest.raises(InputError, match=r"areas.geojson: no column 'share_c' \(named by fairness.groups 'm'\)"):
        cell_demography(fairness(path, [{"name": "m", "kind": "majority", "columns": ["share_a", "share_c"]}]), GRID)
    no_population = write_areas(tmp_path / "nopop.geojson", [shapely.box(X0, Y0, X0 + 10, Y0 + 10)],
                                people=[1.0], income=[1.0])
    with pytest.raises(InputError, match=r"nopop.geojson: no column 'pop' \(named by fairness.population\)"):
        cell_demography(fairness(no_population, ["income"]), GRID)
    with pytest.raises(InputError, match="fairness.areas: file not found"):
        cell_demography(fairness(path, ["income"]).model_copy(update={"areas": tmp_path / "gone.geojson"}), GRID)


def test_areas_that_miss_the_grid_are_refused(tmp_path):
    far = write_areas(tmp_path / "far.geojson", [shapely.box(X0 + 50_000, Y0, X0 + 51_000, Y0 + 1000)],
                      pop=[10.0], v=[1.0])
    with pytest.raises(HotspotError, match="far.geojson: no polygon of the fairness areas overlaps"):
        cell_demography(fairness(far, ["v"]), GRID)


def test_config_errors_name_the_key(tmp_path):
    areas = two_halves(tmp_path / "cfg")
    cases = {
        'groups = [{name = "m", kind = "majority", column = "share_a"}]': "fairness.groups.0",
        'groups = ["income"]\nreporting_rates = {Q9 = 0.5}': "reporting_rates: ['Q9'] are not groups",
        'groups = ["income"]\nprimary = "nope"': "primary 'nope' is not a group definition",
        'groups = [{name = "b", kind = "bins", column = "income", edges = [3, 1]}]': "strictly increasing",
        'groups = ["income"]\ncoverage = 2': "fairness.coverage",
    }
    for text, expected in cases.items():
        extra = textwrap.dedent(f"""
            [fairness]
            areas = "{areas}"
            population = "pop"
            """) + text
        path = write_config(tmp_path / "cfg", extra=extra)
        with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("(", r"\(")):
            load_config(path)


def test_plain_column_names_mean_quintiles(tmp_path):
    cfg = fairness(two_halves(tmp_path), ["income"])
    definition = cfg.groups[0]
    assert (definition.kind, definition.column, definition.group_labels) == (
        "quantile", "income", ["Q1", "Q2", "Q3", "Q4", "Q5"])


def test_quantiles_are_taken_within_the_study_area(tmp_path):
    """Polygons far off the grid hold most residents; quantiles over the whole file would leave a quantile with no
    cell of the study area. Weighted by residents inside the area, each quantile holds cells."""
    west = shapely.box(X0, Y0, X0 + 450, Y0 + 1000)
    east = shapely.box(X0 + 450, Y0, X0 + 1000, Y0 + 1000)
    far = [shapely.box(X0 + 5000 + i * 1000, Y0, X0 + 5900 + i * 1000, Y0 + 900) for i in range(3)]
    path = write_areas(tmp_path / "areas.geojson", [west, east, *far], pop=[2000.0, 2000.0, 1e5, 1e5, 1e5],
                       v=[1.0, 2.0, 10.0, 11.0, 12.0])
    groups = cell_demography(fairness(path, [{"name": "v", "kind": "quantile", "column": "v", "quantiles": 2}]),
                             GRID).definition("v")
    assert groups.labels == ("Q1", "Q2") and groups.left_out == ()
    assert np.bincount(groups.label, minlength=2).min() > 0
    assert "(1 to 1)" in groups.describe["Q1"] and "(2 to 2)" in groups.describe["Q2"]


def test_bins_without_cells_are_left_out_and_named(tmp_path):
    path = two_halves(tmp_path)
    groups = cell_demography(fairness(path, [{"name": "inc", "kind": "bins", "column": "income",
                                              "edges": [0, 50_000, 100_000, 200_000], "labels": ["low", "mid", "top"],
                                              "reference": "top"}]), GRID).definition("inc")
    assert groups.labels == ("low", "mid") and groups.left_out == ("top",)
    assert groups.reference == "low"  # the configured reference holds no cell: the first remaining group


def test_fairness_config_groups_from():
    assert FairnessConfig().groups_from == "places" and FairnessConfig().primary_name == "place"
    with pytest.raises(ValueError, match="groups_from = 'areas' needs areas, groups"):
        FairnessConfig(population="pop")
    with pytest.raises(ValueError, match="groups_from = 'places' takes its groups from the cells' place names; "
                                         "remove population"):
        FairnessConfig(groups_from="places", population="pop")


def test_place_groups_without_place_names_are_refused():
    from hotspot.training.audit.fairness import audit_demography

    with pytest.raises(HotspotError, match="no demographic areas .* and no place names"):
        audit_demography(FairnessConfig(), GRID, None)
