"""The literature baselines: kernel density, prospective hotspotting, grid ETAS/SEPP and the RTM regression."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import CRS

from hotspot.features.area import StudyArea
from hotspot.features.config import load_config
from hotspot.features.grid import Grid
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.models import SEPP, KernelDensity, ProspectiveHotspots, RiskTerrain
from hotspot.models.sepp import fit_sepp, simulate_sepp
from tests.conftest import write_config


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("baselines")))
    result = validate(cfg)
    return build_panel(cfg, result.accepted, result.grid)


@pytest.mark.parametrize("model", [KernelDensity(500, 26), ProspectiveHotspots(1, 8), SEPP(train_days=300)])
def test_planted_hotspot_ranks_first(panel, model):
    known = panel.until(60)
    risk = model.fit(known).predict(known)
    assert risk.shape == (panel.grid.n_cells,) and np.isfinite(risk).all() and (risk >= 0).all()
    hot = panel.target[:60].sum(axis=0).argmax()
    assert risk.argmax() == hot


def test_kde_keeps_the_expected_count_away_from_edges():
    grid = Grid.from_area(StudyArea(CRS.from_epsg(32617), shapely.box(600_000, 4_800_000, 610_000, 4_810_000), "t"),
                          250.0, 10_000)
    values = np.zeros(grid.n_cells)
    values[grid.locate(np.array([605_100.0]), np.array([4_805_100.0]))[0]] = 4.0
    from hotspot.features.spatial import gaussian_smooth

    smooth = gaussian_smooth(grid, values, 500.0)
    assert smooth.sum() == pytest.approx(4.0, rel=1e-6)
    assert smooth.argmax() == grid.locate(np.array([605_100.0]), np.array([4_805_100.0]))[0]


def test_prospective_weights_decay_with_distance_and_time(panel):
    known = panel.until(60)
    model = ProspectiveHotspots(bandwidth_cells=1, weeks=2)
    score = model.fit(known).predict(known)
    # scaled to the recent mean total incidents per period
    assert score.sum() == pytest.approx(known.target[-52:].sum(axis=1).mean(), rel=1e-6)


def test_sepp_em_recovers_simulated_parameters():
    rng = np.random.default_rng(7)
    mu = rng.gamma(2.0, 0.02, 200)
    times, cells = simulate_sepp(mu, theta=0.4, omega=0.15, horizon_days=1500, rng=rng)
    est_mu, theta, omega, _ = fit_sepp(times, cells, 200, 1500, max_lag_days=180)
    assert theta == pytest.approx(0.4, abs=0.05)  # stated tolerance: +-0.05 on the branching ratio
    assert omega == pytest.approx(0.15, rel=0.15)  # +-15% on the decay rate
    assert np.corrcoef(est_mu, mu)[0, 1] > 0.9
    assert est_mu.sum() == pytest.approx(mu.sum(), rel=0.1)


def test_sepp_without_excitation_finds_little():
    rng = np.random.default_rng(3)
    mu = rng.gamma(2.0, 0.02, 200)
    times, cells = simulate_sepp(mu, theta=0.0, omega=0.15, horizon_days=1500, rng=rng)
    _, theta, _, _ = fit_sepp(times, cells, 200, 1500, max_lag_days=180)
    assert theta < 0.05


def _recorded_to_the_hour_with_repeats(times, cells, rng, share=0.05):
    """Times rounded down to the hour, and `share` of the records repeated at the same cell and time (several
    offences of one event), as in real incident data."""
    times = np.floor(times * 24) / 24
    again = rng.random(len(times)) < share
    t, c = np.concatenate([times, times[again]]), np.concatenate([cells, cells[again]])
    order = np.argsort(t, kind="stable")
    return t[order], c[order]


def test_coincident_records_draw_omega_to_infinity_unless_set_aside():
    """Without excitation, 5% of records repeated at the same time make EM explain them as instant excitation
    (omega beyond 1e6 per day, theta the repeated share): the degenerate fit benchmarks/sepp_fit.py finds on Toronto.
    With `min_gap_days=0` those pairs are not parent and child, and no excitation is found."""
    rng = np.random.default_rng(3)
    mu = rng.gamma(2.0, 0.02, 200)
    times, cells = _recorded_to_the_hour_with_repeats(*simulate_sepp(mu, theta=0.0, omega=0.15, horizon_days=1500,
                                                                     rng=rng), rng)
    _, theta, omega, _ = fit_sepp(times, cells, 200, 1500, max_lag_days=180, iterations=500)
    assert omega > 1e6 and theta == pytest.approx(0.05, abs=0.01)
    _, theta, _, _ = fit_sepp(times, cells, 200, 1500, max_lag_days=180, iterations=500, min_gap_days=0.0)
    assert theta < 0.01


def test_setting_coincident_records_aside_recovers_the_decay():
    rng = np.random.default_rng(7)
    mu = rng.gamma(2.0, 0.02, 200)
    times, cells = _recorded_to_the_hour_with_repeats(*simulate_sepp(mu, theta=0.4, omega=0.15, horizon_days=1500,
                                                                     rng=rng), rng)
    _, theta, omega, _ = fit_sepp(times, cells, 200, 1500, max_lag_days=180, iterations=500, min_gap_days=0.0)
    assert theta == pytest.approx(0.4, abs=0.05) and omega == pytest.approx(0.15, rel=0.15)
    _, _, omega_all, _ = fit_sepp(times, cells, 200, 1500, max_lag_days=180, iterations=500)
    assert abs(omega_all - 0.15) > abs(omega - 0.15)  # the repeats pull the decay up when they are pairs
    model = SEPP(train_days=300, min_gap_days=0.0)
    assert model.get_params()["min_gap_days"] == 0.0  # a constructor argument like the others (clone keeps it)


def test_sepp_forecast_integrates_the_week(panel):
    known = panel.until(60)
    model = SEPP(train_days=300).fit(known)
    risk = model.predict(known)
    # the background alone gives mu * 7 days; excitation only adds
    assert np.all(risk >= model.mu_ * 7 - 1e-12)
    assert risk.sum() == pytest.approx(known.target[-43:].sum(axis=1).mean(), rel=0.35)


def test_rtm_needs_context_features(panel):
    with pytest.raises(ValueError, match="context"):
        RiskTerrain().fit(panel.until(60))


def test_rtm_learns_from_a_context_layer_near_the_hotspot(tmp_path):
    import geopandas as gpd

    from tests.conftest import ORIGIN_LAT, ORIGIN_LON

    rng = np.random.default_rng(0)
    # "bars" clustered where the synthetic incidents cluster, plus a few scattered ones
    lon = np.concatenate([rng.normal(ORIGIN_LON + 0.03, 0.001, 30), rng.uniform(ORIGIN_LON, ORIGIN_LON + 0.06, 10)])
    lat = np.concatenate([rng.normal(ORIGIN_LAT + 0.0225, 0.0008, 30), rng.uniform(ORIGIN_LAT, ORIGIN_LAT + 0.045, 10)])
    folder = tmp_path / "rtm"
    folder.mkdir()
    gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=4326).to_file(folder / "bars.geojson")
    cfg = load_config(write_config(folder, extra='[[context]]\nname = "bars"\npath = "bars.geojson"\n'))
    result = validate(cfg)
    panel = build_panel(cfg, result.accepted, result.grid)
    known = panel.until(60)
    risk = RiskTerrain().fit(known).predict(known)
    hot = panel.target[:60].sum(axis=0).argmax()
    assert np.isfinite(risk).all()
    assert (risk > risk[hot]).sum() < 5  # the hotspot cell is among the top five by context alone
    assert risk.sum() == pytest.approx(known.target[-52:].sum(axis=1).mean(), rel=0.2)
