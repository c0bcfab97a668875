"""Per-cell reasons: LightGBM's own contributions, told as sentences whose numbers are the cell's own values."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hotspot.features.config import load_config
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.models import EWMCounts, LightGBMForecaster
from hotspot.training.forecast import forecast_cells
from hotspot.training.reasons import cell_reasons, concept, sentence
from tests.conftest import write_config


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("reasons")))
    result = validate(cfg)
    panel = build_panel(cfg, result.accepted, result.grid)
    known = panel.until(70)
    model = LightGBMForecaster(params={"min_data_in_leaf": 20, "num_threads": 1}, num_boost_round=40,
                               train_periods=30).fit(known)
    return panel, known, model


def test_contributions_are_lightgbm_treeshap_and_add_up_to_the_forecast(fitted):
    _, known, model = fitted
    contrib = model.contributions(known)
    full = model.booster_.predict(known.X_next, pred_contrib=True)
    assert contrib.shape == (known.grid.n_cells, len(model.feature_names_))
    # contributions plus the expected value are the log of the forecast (Poisson objective: log link)
    np.testing.assert_allclose(contrib.sum(axis=1) + full[:, -1], np.log(model.predict(known)), rtol=1e-5)


def test_the_hotspot_is_explained_by_its_own_recent_counts_with_its_true_values(fitted):
    _, known, model = fitted
    sentences, records = cell_reasons(model, known, top=3)
    hot = int(np.argmax(model.predict(known)))
    assert 1 <= len(sentences[hot]) <= 3
    names = list(known.feature_names)
    for text, record in zip(sentences[hot], records[hot]):
        assert record["contribution"] > 0 and record["factor"] > 1
        value = known.X_next[hot, names.index(record["feature"])]
        assert record["value"] == pytest.approx(float(value), abs=1e-3)
        assert "{" not in text
        if record["feature"].startswith("count_w"):
            w = int(re.match(r"count_w(\d+)", record["feature"]).group(1))
            assert text == f"{int(round(value))} incidents in this cell in " + (
                "the last week" if w == 1 else f"the last {w} weeks")
    # the strongest reasons come first
    contributions = [r["contribution"] for r in records[hot]]
    assert contributions == sorted(contributions, reverse=True)


def test_features_of_one_concept_are_one_reason(fitted):
    assert concept("count_w4") == concept("count_w8") == "count_w#"
    assert concept("ewm_hl4") == concept("ewm_hl52")
    assert concept("ring1_count_w4") != concept("count_w4")
    _, known, model = fitted
    _, records = cell_reasons(model, known, top=3)
    for cell in records:
        told = [concept(r["feature"]) for r in cell]
        assert len(told) == len(set(told))


def test_zero_counts_are_never_given_as_reasons(fitted):
    _, known, model = fitted
    sentences, records = cell_reasons(model, known, top=3)
    for cell in records:
        for r in cell:
            if known.feature_units.get(r["feature"]) in ("incidents", "share", "features"):
                assert r["value"] != 0


def test_every_feature_of_the_sample_has_a_readable_reason(sample_prepared):
    _, _, panel = sample_prepared
    for name in panel.feature_names:
        assert panel.feature_reasons[name], f"{name} has no reason template"
        text = sentence(panel, name, 3.0)
        assert "{" not in text and "}" not in text and len(text) < 160
    assert sentence(panel, "count_w4", 9.0) == "9 incidents in this cell in the last 4 weeks"
    assert sentence(panel, "periods_since_last", float("nan")).endswith("no record yet")


def test_break_and_enter_target_is_named_in_the_reasons(tmp_path):
    cfg = load_config(write_config(tmp_path))
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"target_offenses": ["Break and Enter"]})})
    result = validate(cfg)
    panel = build_panel(cfg, result.accepted, result.grid)
    assert sentence(panel, "count_w4", 2.0) == "2 Break and Enter incidents in this cell in the last 4 weeks"
    assert sentence(panel, "count_w4_assault", 5.0) == "5 Assault incidents in this cell in the last 4 weeks"
    assert sentence(panel, "ring1_count_w1", 3.0) == ("3 Break and Enter incidents within 500 m of this cell in the "
                                                       "last week")


def test_forecast_cells_carry_reasons_for_lightgbm_and_none_for_count_baselines(fitted):
    panel, _, model = fitted
    cells = forecast_cells(panel, model, 70)
    top = cells.iloc[0]
    assert top["rank"] == 1 and len(top["reasons"]) >= 1
    assert all(isinstance(r, str) for r in top["reasons"])
    assert "reasons" not in forecast_cells(panel, EWMCounts(halflife=8), 70)
