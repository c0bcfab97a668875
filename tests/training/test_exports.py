"""Exports for partners' GIS: a forecast and the trend tables read back from GeoJSON, GeoPackage and CSV."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest

from hotspot.analysis.exports import export_forecast, export_trends, parse_formats
from hotspot.analysis.trends import compute_trends
from hotspot.features.config import load_config
from hotspot.features.errors import HotspotError
from hotspot.steps import prepare
from hotspot.training.backtest import make_models
from hotspot.training.forecast import forecast_cells
from tests.conftest import write_config


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("exports") / "a"))
    return cfg, prepare(cfg, quiet=True)


@pytest.fixture(scope="module")
def forecast(prepared):
    cfg, p = prepared
    model = make_models(cfg, ["naive_4w"])[0]
    t = p.panel.n_periods
    model.fit(p.panel.until(t))
    cells = forecast_cells(p.panel, model, t)
    # the list columns LightGBM adds
    cells["reasons"] = [["12 incidents here in the last 4 weeks", "near a hotspot"] for _ in range(len(cells))]
    cells["reason_details"] = [[{"feature": "count_w4", "value": 12.0, "factor": 1.5}] for _ in range(len(cells))]
    return cells, {"period_start": str(p.panel.next_period_start.date()), "model": "naive_4w", "model_version": "0"}


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "csv"])
def test_forecast_round_trips(forecast, tmp_path, fmt):
    cells, meta = forecast
    path = export_forecast(cells, tmp_path / f"forecast.{fmt}", fmt, meta)
    assert path.exists() and not list(tmp_path.glob(".*tmp*"))  # written atomically, no leftovers
    if fmt == "csv":
        back = pd.read_csv(path)
        assert json.loads((tmp_path / "forecast.csv.meta.json").read_text())["model"] == "naive_4w"
        assert "geometry" not in back.columns
    else:
        back = gpd.read_file(path, layer="forecast") if fmt == "gpkg" else gpd.read_file(path)
        assert back.crs.to_epsg() == 4326 and set(back.geom_type) == {"Polygon"}
    assert len(back) == len(cells)
    assert list(back["cell_id"]) == list(cells["cell_id"])
    assert back["risk"].to_numpy() == pytest.approx(cells["risk"].to_numpy())
    if fmt == "geojson":
        assert json.loads(path.read_text())["metadata"]["period_start"] == meta["period_start"]
    else:
        assert back["reasons"].iloc[0] == "12 incidents here in the last 4 weeks; near a hotspot"
        assert json.loads(back["reason_details"].iloc[0])[0]["feature"] == "count_w4"
    if fmt == "gpkg":
        assert set(pyogrio.list_layers(path)[:, 0]) == {"forecast", "metadata"}


@pytest.mark.parametrize("public", [False, True])
def test_trends_export_every_format(prepared, tmp_path, public):
    cfg, p = prepared
    trends = compute_trends(cfg, p.panel, public=public)
    paths = export_trends(trends, tmp_path, ["csv", "gpkg", "geojson"])
    layers = set(pyogrio.list_layers(paths["gpkg"])[:, 0])
    assert layers == {"cells", "weekly", "yearly", "change"}
    cells = gpd.read_file(paths["gpkg"], layer="cells")
    assert len(cells) == len(trends.cells)
    weekly = pd.read_csv(paths["weekly_csv"])
    assert len(weekly) == len(trends.weekly)
    geo = json.loads(paths["cells_geojson"].read_text())
    assert geo["metadata"]["view"] == ("public" if public else "full")
    if public:
        assert (weekly["count"].astype(str) == "< 5").any()
        assert "cell_id" not in cells.columns
    else:
        assert weekly["count"].sum() == p.panel.counts.sum() * 2  # each group, plus the all-offences rows


def test_unknown_format_is_refused():
    with pytest.raises(HotspotError, match="choose from geojson, gpkg, csv"):
        parse_formats("shp")
    assert parse_formats("CSV, gpkg") == ["csv", "gpkg"]
