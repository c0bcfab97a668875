"""Context layers: point counts, distances and kernel densities, polygon area-weighted means, and bad input."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS

from hotspot.features.area import StudyArea
from hotspot.features.config import ConfigError, ContextLayerConfig, FeaturesConfig, PeriodConfig, load_config
from hotspot.features.errors import InputError
from hotspot.features.grid import Grid
from hotspot.features.panel import build_panel
from tests.conftest import synthetic_incidents, write_config

UTM = CRS.from_epsg(32617)
X0, Y0 = 600_000, 4_800_000

# 3 x 3 cells of 100 m; compact index = row * 3 + col, row 0 in the south
#   6 7 8
#   3 4 5
#   0 1 2
SMALL = Grid.from_area(StudyArea(UTM, shapely.box(X0, Y0, X0 + 300, Y0 + 300), "test"), 100.0, 1000)
# 40 x 40 cells of 50 m (2 km square), for kernel densities
BIG = Grid.from_area(StudyArea(UTM, shapely.box(X0, Y0, X0 + 2000, Y0 + 2000), "test"), 50.0, 10_000)


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory):
    return load_config(write_config(tmp_path_factory.mktemp("context"), synthetic_incidents(n=20, weeks=2)))


def point_file(path: Path, xy, crs=UTM, **columns) -> Path:
    """Points given in UTM metres, written to `path` in `crs`."""
    gdf = gpd.GeoDataFrame(columns, geometry=[shapely.Point(x, y) for x, y in xy], crs=UTM)
    gdf.to_crs(crs).to_file(path, driver="GeoJSON")
    return path


def context_features(base, grid: Grid, *layers: tuple[str, Path, list[str]], bandwidths=(100.0,)) -> dict:
    """Build the context family through build_panel, as the pipeline does; return {feature name: (C,) values}."""
    cfg = base.model_copy(update={
        "period": PeriodConfig(data_end=date(2024, 1, 14)),
        "features": FeaturesConfig(families=["context"], context_bandwidths_m=list(bandwidths)),
        "context": [ContextLayerConfig(name=name, path=str(path), attributes=attrs) for name, path, attrs in layers],
    })
    incidents = pd.DataFrame({"occurred_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-09 10:00"]),
                              "offense": pd.Categorical(["A", "A"]), "cell": np.array([0, 0], dtype=np.int32)})
    panel = build_panel(cfg, incidents, grid)
    assert panel.n_periods == 2 and set(panel.feature_families.values()) == {"context"}
    out = {}
    for f, name in enumerate(panel.feature_names):
        values = panel.X[:, :, f]
        np.testing.assert_array_equal(values, np.broadcast_to(values[0], values.shape))  # static
        out[name] = values[0]
    return out


def centre(cell: int, grid: Grid = SMALL) -> tuple[float, float]:
    return float(grid.x[cell]), float(grid.y[cell])


# --- point layers -----------------------------------------------------------------------------------------------------

POINTS = [(X0 + 150, Y0 + 150),  # exactly the centre of cell 4
          (X0 + 20, Y0 + 30), (X0 + 80, Y0 + 60),  # two in cell 0
          (X0 + 290, Y0 + 190),  # cell 5
          (X0 + 1010, Y0 + 160)]  # outside the area (not exactly 3 bandwidths from a centre: the kernel's cut)


def test_count_in_cell_and_distance_to_nearest(base_cfg, tmp_path):
    feats = context_features(base_cfg, SMALL, ("stops", point_file(tmp_path / "stops.geojson", POINTS), []))
    assert list(feats) == ["ctx_stops_count", "ctx_stops_dist_m", "ctx_stops_kde100m"]
    np.testing.assert_array_equal(feats["ctx_stops_count"], [2, 0, 0, 0, 1, 1, 0, 0, 0])
    dist = feats["ctx_stops_dist_m"]
    assert dist[4] == 0  # a point exactly at the cell centre
    assert dist[0] == pytest.approx(np.hypot(30, 10), rel=1e-6)  # (80, 60) is nearer the centre (50, 50) than (20, 30)
    assert dist[8] == pytest.approx(np.hypot(40, 60), rel=1e-6)  # centre (250, 250) to (290, 190)
    assert dist[5] == pytest.approx(np.hypot(40, 40), rel=1e-6)  # its own point, from its centre (250, 150)
    pts = np.array(POINTS, dtype=float)
    expected = [np.hypot(pts[:, 0] - x, pts[:, 1] - y).min() for x, y in zip(SMALL.x, SMALL.y)]
    np.testing.assert_allclose(dist, expected, rtol=1e-6)


def test_same_points_in_another_crs_give_the_same_features(base_cfg, tmp_path):
    bands = (100.0, 250.0)
    utm = context_features(base_cfg, SMALL, ("stops", point_file(tmp_path / "utm.geojson", POINTS), []),
                           bandwidths=bands)
    for crs in ("EPSG:4326", "EPSG:3857"):
        path = point_file(tmp_path / f"{crs.replace(':', '_')}.geojson", POINTS, crs=crs)
        assert gpd.read_file(path).crs.to_epsg() == int(crs.split(":")[1])  # the file really is in that CRS
        other = context_features(base_cfg, SMALL, ("stops", path, []), bandwidths=bands)
        assert list(other) == list(utm)
        np.testing.assert_array_equal(other["ctx_stops_count"], utm["ctx_stops_count"])
        np.testing.assert_allclose(other["ctx_stops_dist_m"], utm["ctx_stops_dist_m"], atol=0.01)
        for bw in bands:
            np.testing.assert_allclose(other[f"ctx_stops_kde{bw:g}m"], utm[f"ctx_stops_kde{bw:g}m"], rtol=1e-4)


def test_kernel_density_at_a_point_and_near_the_points(base_cfg, tmp_path):
    c = 20 * 40 + 20  # a cell near the middle of the big grid
    path = point_file(tmp_path / "one.geojson", [centre(c, BIG)])
    kde = context_features(base_cfg, BIG, ("one", path, []), bandwidths=(100.0,))["ctx_one_kde100m"]
    # one point at the cell centre: the Gaussian peak, 1 / (2 pi bw^2) with bw = 0.1 km
    assert kde[c] == pytest.approx(1 / (2 * np.pi * 0.1**2), rel=1e-5)
    d = np.hypot(BIG.x - BIG.x[c], BIG.y - BIG.y[c])
    np.testing.assert_allclose(kde[d <= 300], np.exp(-0.5 * (d[d <= 300] / 100) ** 2) * kde[c], rtol=1e-5)
    assert np.all(kde[d > 300] == 0)  # beyond three bandwidths
    # larger near the point: strictly decreasing with the distance of the cell centre
    order = np.argsort(d[d <= 300])
    assert np.all(np.diff(kde[d <= 300][order]) <= 1e-6 * kde[c]) and kde[c] > 50 * kde[d <= 300].min()


def test_kernel_density_integrates_to_the_number_of_points(base_cfg, tmp_path):
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(X0 + 700, X0 + 1300, 25), rng.uniform(Y0 + 700, Y0 + 1300, 25)])
    path = point_file(tmp_path / "many.geojson", pts)
    feats = context_features(base_cfg, BIG, ("many", path, []), bandwidths=(100.0, 150.0))
    cell_km2 = (BIG.cell_size_m / 1000) ** 2
    for bw in (100.0, 150.0):
        # bandwidth small against the 2 km area, points far from its edge: the density sums to ~25 points
        # (the kernel is cut at 3 bandwidths, which drops 1.1% of its mass)
        assert feats[f"ctx_many_kde{bw:g}m"].sum() * cell_km2 == pytest.approx(25, rel=0.03)
    assert feats["ctx_many_count"].sum() == 25
    kde = feats["ctx_many_kde100m"]
    inside = (BIG.x > X0 + 700) & (BIG.x < X0 + 1300) & (BIG.y > Y0 + 700) & (BIG.y < Y0 + 1300)
    far = np.hypot(BIG.x - (X0 + 1000), BIG.y - (Y0 + 1000)) > 800
    assert kde[inside].mean() > 10 * max(kde[far].max(), 1e-9)


def test_multipoints_count_each_point(base_cfg, tmp_path):
    gdf = gpd.GeoDataFrame({"name": ["pair", "single"]}, crs=UTM, geometry=[
        shapely.MultiPoint([(X0 + 150, Y0 + 150), (X0 + 160, Y0 + 140)]), shapely.Point(X0 + 50, Y0 + 250)])
    gdf.to_file(tmp_path / "multi.geojson", driver="GeoJSON")
    feats = context_features(base_cfg, SMALL, ("multi", tmp_path / "multi.geojson", []))
    np.testing.assert_array_equal(feats["ctx_multi_count"], [0, 0, 0, 0, 2, 0, 1, 0, 0])


# --- bad point layers -------------------------------------------------------------------------------------------------


def write_geojson(path: Path, features: list[dict], crs: str | None = None) -> Path:
    doc = {"type": "FeatureCollection", "features": features}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def point(x, y, **props) -> dict:
    return {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [x, y]}}


UTM_URN = "urn:ogc:def:crs:EPSG::32617"


def test_an_empty_layer_is_an_input_error_naming_the_file(base_cfg, tmp_path):
    path = write_geojson(tmp_path / "empty.geojson", [])
    with pytest.raises(InputError) as info:
        context_features(base_cfg, SMALL, ("empty", path, []))
    assert str(path) in str(info.value) and "no features" in str(info.value)


def test_a_missing_layer_file_is_a_config_error_naming_the_path(tmp_path):
    extra = '[[context]]\nname = "stops"\npath = "layers/stops.geojson"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "study", synthetic_incidents(n=20, weeks=2), extra=extra))
    message = str(info.value)
    assert "context.0.path" in message and str(tmp_path / "study" / "layers" / "stops.geojson") in message
    assert "file not found" in message


def test_a_layer_in_the_config_is_read_relative_to_the_config(base_cfg, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    point_file(folder / "stops.geojson", POINTS)
    cfg = load_config(write_config(folder, synthetic_incidents(n=20, weeks=2),
                                   extra='[[context]]\nname = "stops"\npath = "stops.geojson"\n'))
    assert cfg.context[0].path == (folder / "stops.geojson").resolve() and cfg.context[0].attributes == []


LINE = {"type": "LineString", "coordinates": [[X0 + 10, Y0 + 10], [X0 + 290, Y0 + 290]]}
SQUARE = {"type": "Polygon", "coordinates": [[[X0, Y0], [X0 + 100, Y0], [X0 + 100, Y0 + 100], [X0, Y0 + 100],
                                              [X0, Y0]]]}


@pytest.mark.parametrize("geometry, found", [(LINE, "LineString"), (SQUARE, "Polygon")])
def test_lines_or_polygons_without_attributes_are_refused(base_cfg, tmp_path, geometry, found):
    path = write_geojson(tmp_path / "shapes.geojson", [{"type": "Feature", "properties": {"value": 1},
                                                        "geometry": geometry}], UTM_URN)
    with pytest.raises(InputError) as info:
        context_features(base_cfg, SMALL, ("shapes", path, []))
    message = str(info.value)
    assert str(path) in message and "must hold points" in message and found in message


def test_points_with_attributes_are_refused_as_polygons_expected(base_cfg, tmp_path):
    path = write_geojson(tmp_path / "pts.geojson", [point(X0 + 50, Y0 + 50, value=3)], UTM_URN)
    with pytest.raises(InputError, match="must hold polygons .*Point"):
        context_features(base_cfg, SMALL, ("pts", path, ["value"]))


def test_a_layer_with_nothing_in_the_area_warns_and_counts_zero(base_cfg, tmp_path):
    path = point_file(tmp_path / "far.geojson", [(X0 + 5000, Y0 + 5000), (X0 - 3000, Y0 + 100)])
    with pytest.warns(UserWarning, match=r"far\.geojson: no feature of context layer 'far' lies in the study area"):
        feats = context_features(base_cfg, SMALL, ("far", path, []), bandwidths=(100.0,))
    np.testing.assert_array_equal(feats["ctx_far_count"], 0)
    np.testing.assert_array_equal(feats["ctx_far_kde100m"], 0)  # more than 3 bandwidths away
    assert np.all(np.isfinite(feats["ctx_far_dist_m"])) and feats["ctx_far_dist_m"].min() > 2500


def test_features_with_null_geometry_are_skipped_with_a_warning(base_cfg, tmp_path):
    path = write_geojson(tmp_path / "gaps.geojson", [
        point(X0 + 150, Y0 + 150, name="a"),
        {"type": "Feature", "properties": {"name": "b"}, "geometry": None},
        point(X0 + 50, Y0 + 50, name="c"),
        {"type": "Feature", "properties": {"name": "d"}, "geometry": None},
    ], UTM_URN)
    with pytest.warns(UserWarning, match=r"gaps\.geojson: 2 feature\(s\) of 'gaps' have no geometry and are skipped"):
        feats = context_features(base_cfg, SMALL, ("gaps", path, []))
    np.testing.assert_array_equal(feats["ctx_gaps_count"], [1, 0, 0, 0, 1, 0, 0, 0, 0])
    assert feats["ctx_gaps_dist_m"][4] == 0 and feats["ctx_gaps_dist_m"][0] == 0


def test_a_layer_of_only_null_geometries_is_an_input_error(base_cfg, tmp_path):
    path = write_geojson(tmp_path / "nulls.geojson", [{"type": "Feature", "properties": {"n": 1}, "geometry": None}])
    with pytest.raises(InputError) as info:
        context_features(base_cfg, SMALL, ("nulls", path, []))
    assert str(path) in str(info.value)


def test_an_unreadable_layer_is_an_input_error_naming_the_file(base_cfg, tmp_path):
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(InputError) as info:
        context_features(base_cfg, SMALL, ("broken", path, []))
    assert str(path) in str(info.value) and "cannot read" in str(info.value)


# --- polygon layers ---------------------------------------------------------------------------------------------------


def polygon_file(path: Path, boxes: list[tuple[tuple[float, float, float, float], dict]]) -> Path:
    gdf = gpd.GeoDataFrame([props for _, props in boxes], crs=UTM,
                           geometry=[shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d) for (a, b, c, d), _ in boxes])
    gdf.to_file(path, driver="GeoJSON")
    return path


def test_polygon_attributes_are_area_weighted_means(base_cfg, tmp_path):
    path = polygon_file(tmp_path / "zones.geojson", [
        ((100, 100, 150, 200), {"value": 10.0, "other": 1.0}),  # west half of cell 4
        ((150, 100, 300, 200), {"value": 20.0, "other": 3.0}),  # east half of cell 4 and all of cell 5
        ((0, 100, 25, 200), {"value": 40.0, "other": 2.0}),  # a quarter of cell 3 ...
        ((25, 100, 100, 200), {"value": 0.0, "other": 2.0}),  # ... and the other three quarters
        ((0, 0, 50, 50), {"value": 7.0, "other": None}),  # a quarter of cell 0 only; `other` missing
    ])
    feats = context_features(base_cfg, SMALL, ("zones", path, ["value", "other"]))
    assert list(feats) == ["ctx_zones_value", "ctx_zones_other"]
    value = feats["ctx_zones_value"]
    assert value[4] == pytest.approx(15.0, rel=1e-6)  # halves of 10 and 20
    assert value[5] == pytest.approx(20.0, rel=1e-6)
    assert value[3] == pytest.approx(10.0, rel=1e-6)  # 40 * 1/4 + 0 * 3/4, not the plain mean 20
    assert value[0] == pytest.approx(7.0, rel=1e-6)  # the mean over the covered part of the cell
    assert np.isnan(value[[1, 2, 6, 7, 8]]).all()  # no polygon: missing, not 0
    other = feats["ctx_zones_other"]
    assert other[4] == pytest.approx(2.0, rel=1e-6) and other[3] == pytest.approx(2.0, rel=1e-6)
    assert np.isnan(other[0])  # only a missing value covers it


def test_polygons_in_another_crs_give_the_same_means(base_cfg, tmp_path):
    # edges inside cells, not on their borders (a reprojected border leaves slivers in the next cell)
    boxes = [((110, 110, 150, 190), {"value": 10.0}), ((150, 110, 190, 190), {"value": 20.0}),
             ((210, 110, 290, 190), {"value": 20.0})]
    utm = polygon_file(tmp_path / "utm.geojson", boxes)
    wgs = tmp_path / "wgs.geojson"
    gpd.read_file(utm).to_crs(4326).to_file(wgs, driver="GeoJSON")
    a = context_features(base_cfg, SMALL, ("zones", utm, ["value"]))["ctx_zones_value"]
    b = context_features(base_cfg, SMALL, ("zones", wgs, ["value"]))["ctx_zones_value"]
    np.testing.assert_allclose(b, a, rtol=1e-4)
    assert b[4] == pytest.approx(15.0, rel=1e-4) and b[5] == pytest.approx(20.0, rel=1e-4)
    assert np.isnan(b[[0, 1, 2, 3, 6, 7, 8]]).all()


def test_a_missing_attribute_column_is_an_input_error(base_cfg, tmp_path):
    path = polygon_file(tmp_path / "zones.geojson", [((0, 0, 300, 300), {"value": 1.0})])
    with pytest.raises(InputError, match=r"zones\.geojson.*no column\(s\) \['income'\]"):
        context_features(base_cfg, SMALL, ("zones", path, ["value", "income"]))


def test_polygons_outside_the_area_warn_and_give_missing_values(base_cfg, tmp_path):
    path = polygon_file(tmp_path / "away.geojson", [((5000, 5000, 6000, 6000), {"value": 1.0})])
    with pytest.warns(UserWarning, match="no polygon of context layer 'away' overlaps the study area"):
        feats = context_features(base_cfg, SMALL, ("away", path, ["value"]))
    assert np.isnan(feats["ctx_away_value"]).all()


# --- config: demographics are not features unless asked for -----------------------------------------------------


def fairness_study(folder: Path, *, layer_path: str, allow: bool | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame({"pop": [100.0], "share_a": [0.3]}, crs="EPSG:4326",
                     geometry=[shapely.box(-79.41, 43.64, -79.33, 43.70)]).to_file(folder / "areas.geojson",
                                                                                   driver="GeoJSON")
    polygon_file(folder / "zones.geojson", [((0, 0, 300, 300), {"value": 1.0})])
    extra = ('[fairness]\nareas = "areas.geojson"\npopulation = "pop"\ngroups = ["share_a"]\n\n'
             f'[[context]]\nname = "layer"\npath = "{layer_path}"\nattributes = ["pop"]\n')
    path = write_config(folder, synthetic_incidents(n=20, weeks=2), extra=extra)
    if allow is not None:
        path.write_text(path.read_text().replace(
            "[features]\n", f"[features]\ndemographics_as_features = {str(allow).lower()}\n", 1))
    return path


@pytest.mark.parametrize("layer_path", ["areas.geojson", "./sub/../areas.geojson"])
@pytest.mark.parametrize("allow", [None, False])
def test_the_fairness_areas_as_a_context_layer_are_refused(tmp_path, layer_path, allow):
    (tmp_path / "study" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        load_config(fairness_study(tmp_path / "study", layer_path=layer_path, allow=allow))
    message = str(info.value)
    assert "'layer' is the fairness areas file" in message and "demographics_as_features = true" in message


def test_the_fairness_areas_as_a_context_layer_are_allowed_when_asked_for(tmp_path):
    cfg = load_config(fairness_study(tmp_path / "study", layer_path="areas.geojson", allow=True))
    assert cfg.features.demographics_as_features
    assert cfg.context[0].path == cfg.fairness.areas


def test_another_polygon_layer_beside_fairness_is_accepted(tmp_path):
    cfg = load_config(fairness_study(tmp_path / "study", layer_path="zones.geojson"))
    assert cfg.context[0].path != cfg.fairness.areas and not cfg.features.demographics_as_features
