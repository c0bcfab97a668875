"""Every forecaster honours one contract: fit(panel) on what was known, predict(panel) -> risk per cell."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from sklearn.base import clone

from hotspot.features.area import WGS84
from hotspot.features.config import load_config
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.models import (
    SEPP,
    EWMCounts,
    FlatRate,
    Forecaster,
    HistoryCounts,
    KernelDensity,
    LightGBMForecaster,
    ProspectiveHotspots,
    RecentCounts,
    RiskTerrain,
)
from tests.conftest import ORIGIN_LAT, ORIGIN_LON, write_config

LGB_PARAMS = {"min_data_in_leaf": 20, "num_threads": 1, "seed": 7}


def lightgbm(**params) -> LightGBMForecaster:
    return LightGBMForecaster(params={**LGB_PARAMS, **params}, num_boost_round=30, train_periods=30)


MODELS = {
    "recent": lambda: RecentCounts(weeks=8),
    "history": HistoryCounts,
    "ewm": lambda: EWMCounts(halflife=8),
    "lightgbm": lightgbm,
    "kde": lambda: KernelDensity(bandwidth_m=500, weeks=26),
    "prospective": lambda: ProspectiveHotspots(bandwidth_cells=1, weeks=8),
    "sepp": lambda: SEPP(train_days=300),
    "rtm": RiskTerrain,
    "flat": FlatRate,
}
NEEDS_CONTEXT = {"rtm"}  # the panel must have context-layer features


def test_every_forecaster_is_covered():
    import hotspot.models

    exported = {getattr(hotspot.models, n) for n in hotspot.models.__all__} - {Forecaster}
    assert exported == {type(make()) for make in MODELS.values()}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("contract")))
    result = validate(cfg)
    return cfg, result, build_panel(cfg, result.accepted, result.grid)


@pytest.fixture(scope="module")
def with_context(tmp_path_factory):
    """The same incidents with one point context layer ("bars", clustered at the planted hotspot)."""
    import geopandas as gpd

    rng = np.random.default_rng(0)
    lon = np.concatenate([rng.normal(ORIGIN_LON + 0.03, 0.001, 30), rng.uniform(ORIGIN_LON, ORIGIN_LON + 0.06, 10)])
    lat = np.concatenate([rng.normal(ORIGIN_LAT + 0.0225, 0.0008, 30), rng.uniform(ORIGIN_LAT, ORIGIN_LAT + 0.045, 10)])
    folder = tmp_path_factory.mktemp("contract_context")
    gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=4326).to_file(folder / "bars.geojson")
    cfg = load_config(write_config(folder, extra='[[context]]\nname = "bars"\npath = "bars.geojson"\n'))
    result = validate(cfg)
    return cfg, result, build_panel(cfg, result.accepted, result.grid)


@pytest.fixture(scope="module")
def prepared(plain):
    return plain


@pytest.fixture(scope="module")
def panel(prepared):
    return prepared[2]


def prepared_for(request, name: str):
    """(config, validation result, panel) a forecaster can be fitted on: with context layers where it needs them."""
    return request.getfixturevalue("with_context" if name in NEEDS_CONTEXT else "plain")


def planted_cell(panel) -> int:
    """Compact index of the cell holding the planted hotspot's centre (synthetic_incidents plants it there)."""
    x, y = Transformer.from_crs(WGS84, panel.grid.crs, always_xy=True).transform(ORIGIN_LON + 0.03, ORIGIN_LAT + 0.0225)
    cell = int(panel.grid.locate(np.array([x]), np.array([y]))[0])
    assert cell >= 0 and panel.target[:, cell].sum() > 5 * np.delete(panel.target, cell, axis=1).sum(axis=0).max()
    return cell


@pytest.fixture(scope="module")
def hot_cell(panel):
    return planted_cell(panel)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("t", [40, 60])
def test_fit_on_the_past_predicts_a_finite_non_negative_risk_per_cell(request, name, t):
    panel = prepared_for(request, name)[2]
    past = panel.until(t)
    model = MODELS[name]()
    assert isinstance(model, Forecaster) and isinstance(model.name, str) and model.name
    assert model.fit(past) is model
    risk = model.predict(past)
    assert isinstance(risk, np.ndarray) and risk.shape == (panel.grid.n_cells,) and risk.dtype == np.float64
    assert np.all(np.isfinite(risk)) and np.all(risk >= 0)
    assert risk.sum() > 0


@pytest.mark.parametrize("name", [n for n in MODELS if n != "flat"])  # flat ranks nothing: the floor of the tests
def test_planted_hotspot_ranks_first(request, name):
    panel = prepared_for(request, name)[2]
    hot_cell = planted_cell(panel)
    past = panel.until(60)
    risk = MODELS[name]().fit(past).predict(past)
    assert int(np.argmax(risk)) == hot_cell
    assert risk[hot_cell] > np.delete(risk, hot_cell).max()  # strictly first, not a tie


def test_flat_forecasts_every_cell_the_mean_rate(request):
    panel = prepared_for(request, "flat")[2]
    past = panel.until(60)
    risk = FlatRate().fit(past).predict(past)
    assert np.ptp(risk) == 0 and risk.sum() == pytest.approx(past.target[-52:].sum() / 52)


@pytest.mark.parametrize("name", MODELS)
def test_predictions_for_period_t_ignore_data_from_period_t_on(request, name):
    """Change every incident of period t and later (half dropped, the rest moved into another cell): forecasts made
    before t do not change, while a forecast made one period later does."""
    cfg, result, panel = prepared_for(request, name)
    t = 50
    accepted = result.accepted.copy()
    later = (accepted["occurred_at"] >= panel.period_starts[t]).to_numpy()
    drop = later & (np.arange(len(accepted)) % 2 == 1)
    drop[accepted["occurred_at"].to_numpy().argmax()] = False  # the last incident sets the panel's end
    accepted = accepted[~drop].copy()
    accepted.loc[accepted["occurred_at"] >= panel.period_starts[t], "cell"] = 0
    changed = build_panel(cfg, accepted, result.grid)
    assert changed.n_periods == panel.n_periods and not np.array_equal(changed.target[t:], panel.target[t:])
    np.testing.assert_array_equal(changed.target[:t], panel.target[:t])
    a = MODELS[name]().fit(panel.until(t)).predict(panel.until(t))
    b = MODELS[name]().fit(changed.until(t)).predict(changed.until(t))
    np.testing.assert_array_equal(a, b)
    # a model fitted on the unchanged past also forecasts week t the same from the changed panel
    np.testing.assert_array_equal(MODELS[name]().fit(panel.until(t)).predict(changed.until(t)), a)
    # while a forecast made one period later does see period t
    c = MODELS[name]().fit(panel.until(t + 1)).predict(panel.until(t + 1))
    d = MODELS[name]().fit(changed.until(t + 1)).predict(changed.until(t + 1))
    assert not np.array_equal(c, d)


# --- scikit-learn estimator conventions -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_clone_gives_an_unfitted_copy_with_equal_params(request, name):
    past = prepared_for(request, name)[2].until(50)
    model = MODELS[name]()
    before = set(vars(model))
    model.fit(past)
    learned = set(vars(model)) - before
    assert all(a.endswith("_") for a in learned), f"fitted state outside trailing-underscore attributes: {learned}"
    copy = clone(model)  # raises if __init__ altered an argument
    assert type(copy) is type(model) and copy is not model
    assert copy.get_params() == model.get_params() and copy.name == model.name
    assert not set(vars(copy)) & learned  # nothing learned is copied
    np.testing.assert_array_equal(copy.fit(past).predict(past), model.predict(past))


@pytest.mark.parametrize("name", MODELS)
def test_get_params_round_trips_through_set_params(name):
    model = MODELS[name]()
    params = model.get_params()
    assert set(params) == set(type(model)._get_param_names())
    rebuilt = type(model)().set_params(**params)
    assert rebuilt.get_params() == params and rebuilt.name == model.name
    assert type(model)(**params).get_params() == params


def test_derived_names_follow_set_params():
    assert RecentCounts(weeks=4).set_params(weeks=13).name == "naive_13w"
    assert KernelDensity().set_params(bandwidth_m=400).name == "kde_400m"
    assert lightgbm().set_params(name="lightgbm-no_context").name == "lightgbm-no_context"
    assert clone(lightgbm().set_params(name="renamed")).name == "renamed"


# --- baselines: exact values on a hand-made label ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(panel):
    """The synthetic panel's grid with 5 observed periods and a label chosen by hand (cells 0 and 2 non-zero)."""
    target = np.zeros((5, panel.grid.n_cells), dtype=np.float32)
    target[:, 0] = [1, 2, 3, 4, 6]
    target[:, 2] = [5, 0, 0, 0, 1]
    return dataclasses.replace(panel.until(5), target=target)


@pytest.mark.parametrize("weeks, cell0, cell2", [(1, 6.0, 1.0), (2, 5.0, 0.5), (4, 3.75, 0.25), (5, 3.2, 1.2),
                                                 (52, 3.2, 1.2)])
def test_recent_counts_is_the_mean_of_the_last_weeks(small, weeks, cell0, cell2):
    model = RecentCounts(weeks=weeks)
    risk = model.fit(small).predict(small)
    assert model.name == f"naive_{weeks}w"
    assert risk[0] == cell0 and risk[2] == cell2
    assert np.all(np.delete(risk, [0, 2]) == 0)


def test_recent_counts_equals_the_mean_of_the_last_target_rows(panel):
    past = panel.until(37)
    for w in (1, 3, 8, 13):
        expected = np.array([sum(float(v) for v in past.target[-w:, c]) / w for c in range(panel.grid.n_cells)])
        np.testing.assert_allclose(RecentCounts(weeks=w).fit(past).predict(past), expected, rtol=1e-12)


def test_history_counts_is_the_mean_of_all_periods(small):
    risk = HistoryCounts().fit(small).predict(small)
    assert risk[0] == pytest.approx(3.2, rel=1e-12) and risk[2] == pytest.approx(1.2, rel=1e-12)


def test_ewm_counts_weights_halve_every_half_life(small):
    # half-life 1: ages 4..0 weigh 1/16, 1/8, 1/4, 1/2, 1 (sum 31/16)
    risk = EWMCounts(halflife=1).fit(small).predict(small)
    assert risk[0] == pytest.approx(145 / 31, rel=1e-12)  # (1/16 + 2/8 + 3/4 + 4/2 + 6) / (31/16)
    assert risk[2] == pytest.approx(21 / 31, rel=1e-12)  # (5/16 + 1) / (31/16)
    # half-life 2: weights 1/4, 1/sqrt8, 1/2, 1/sqrt2, 1
    w = 0.5 ** (np.arange(4, -1, -1) / 2)
    assert EWMCounts(halflife=2).fit(small).predict(small)[0] == pytest.approx(w @ [1, 2, 3, 4, 6] / w.sum())
    # a very long half-life is the plain mean, a very short one the last period
    assert EWMCounts(halflife=1e9).fit(small).predict(small)[0] == pytest.approx(3.2, rel=1e-6)
    assert EWMCounts(halflife=1e-3).fit(small).predict(small)[0] == pytest.approx(6.0, rel=1e-6)
    assert EWMCounts(halflife=26).name == "ewm_hl26"


@pytest.mark.parametrize("name", ["recent", "history", "ewm"])
def test_baselines_refuse_a_panel_without_observed_periods(panel, name):
    with pytest.raises(ValueError, match="at least 1 observed period"):
        MODELS[name]().fit(panel.until(0))
    with pytest.raises(ValueError, match="at least 1 observed period"):
        MODELS[name]().predict(panel.until(0))


# --- LightGBM ---------------------------------------------------------------------------------------------------------


def test_lightgbm_refuses_predict_before_fit(panel):
    with pytest.raises(RuntimeError, match="before fit"):
        lightgbm().predict(panel.until(40))


def test_lightgbm_refuses_a_panel_with_other_features(panel):
    model = lightgbm().fit(panel.until(40))
    names = list(panel.feature_names)
    names[names.index("count_w2")] = "count_w3"
    other = dataclasses.replace(panel.until(41), feature_names=tuple(names))
    with pytest.raises(ValueError, match=r"lacks the model's feature\(s\) \['count_w2'\]"):
        model.predict(other)
    fewer = dataclasses.replace(panel.until(41), X=panel.X[:42, :, 1:], feature_names=panel.feature_names[1:])
    with pytest.raises(ValueError, match=r"\['count_w1'\]"):
        model.predict(fewer)
    # features are matched by name: the same columns in another order give the same forecast
    order = np.arange(len(panel.feature_names))[::-1]
    reordered = dataclasses.replace(panel.until(41), X=panel.X[:42][:, :, order],
                                    feature_names=tuple(panel.feature_names[i] for i in order))
    np.testing.assert_allclose(model.predict(reordered), model.predict(panel.until(41)))


def test_lightgbm_on_a_feature_subset_uses_only_those(panel):
    subset = ["count_w4", "count_w8", "rate_all"]
    model = lightgbm()
    model.features = subset
    model.fit(panel.until(40))
    assert model.booster_.feature_name() == subset
    assert set(model.gain_importance()) == set(subset)
    assert np.isfinite(model.predict(panel.until(40))).all()


def test_lightgbm_needs_full_look_back(panel):
    with pytest.raises(ValueError, match=f"need at least {panel.min_history + 1} observed"):
        lightgbm().fit(panel.until(panel.min_history))


def test_lightgbm_trains_only_on_the_periods_before_t(panel):
    model = lightgbm().fit(panel.until(45))
    assert model.train_periods_ == (panel.period_starts[15], panel.period_starts[44])
    assert model.training_window(panel.until(45)) == (15, 45)
    assert LightGBMForecaster(train_periods=None).training_window(panel.until(45)) == (panel.min_history, 45)
    assert model.feature_names_ == panel.feature_names


def test_lightgbm_is_deterministic_with_the_same_seed(panel):
    past = panel.until(50)
    bagged = {"bagging_fraction": 0.6, "bagging_freq": 1, "feature_fraction": 0.6}
    a = lightgbm(**bagged).fit(past).predict(past)
    b = lightgbm(**bagged).fit(past).predict(past)
    np.testing.assert_array_equal(a, b)
    c = lightgbm(**bagged, seed=8).fit(past).predict(past)
    assert not np.array_equal(a, c)  # the seed is used


def test_lightgbm_from_booster_predicts_the_same(panel):
    past = panel.until(50)
    model = lightgbm().fit(past)
    import lightgbm as lgb

    loaded = LightGBMForecaster.from_booster(lgb.Booster(model_str=model.booster_.model_to_string()))
    np.testing.assert_array_equal(loaded.predict(past), model.predict(past))


def test_predict_is_for_the_panels_next_period(panel):
    """predict(until(t)) is the forecast of period t: for RecentCounts(1) it is period t-1's count."""
    for t in (10, 30, 79):
        np.testing.assert_array_equal(RecentCounts(weeks=1).predict(panel.until(t)), panel.target[t - 1])
    assert isinstance(panel.until(30).next_period_start, pd.Timestamp)


# --- the bundled sample -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["recent", "history", "ewm", "lightgbm"])
def test_every_model_concentrates_risk_on_the_bundled_sample(sample_prepared, name):
    """Downtown Toronto crime is concentrated: ranked by any model, the top 5% of cells hold far more than 5%."""
    from hotspot.training.evaluation.metrics import pai_at

    _, _, sample = sample_prepared
    make = {**MODELS, "lightgbm": lambda: LightGBMForecaster(params={**LGB_PARAMS, "min_data_in_leaf": 100},
                                                              num_boost_round=30, train_periods=52)}[name]
    pais = []
    for t in range(sample.n_periods - 4, sample.n_periods):
        past = sample.until(t)
        risk = make().fit(past).predict(past)
        assert risk.shape == (sample.grid.n_cells,) and np.all(np.isfinite(risk)) and np.all(risk >= 0)
        pais.append(pai_at(risk, sample.target[t], 0.05))
    assert np.mean(pais) > 3.0
