"""Per-cell reasons: LightGBM's own contributions, one sentence per kind of evidence, quoting the cell's real values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from hotspot.features.config import load_config
from hotspot.features.families import FAMILIES
from hotspot.features.ingest import validate
from hotspot.features.panel import build_panel
from hotspot.models import EWMCounts, LightGBMForecaster
from hotspot.training.forecast import forecast_cells
from hotspot.training.reasons import (
    KIND_OF_FAMILY,
    KINDS,
    Evidence,
    Facts,
    about,
    cell_reasons,
    counted,
    kind_of,
    sentence,
    tell_history,
)
from tests.conftest import synthetic_incidents, write_config
from tests.features.test_families import GRID, SOME_ROWS, incidents, study_toml

FIT = {"min_data_in_leaf": 20, "num_threads": 1}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("reasons")))
    result = validate(cfg)
    panel = build_panel(cfg, result.accepted, result.grid)
    known = panel.until(70)
    model = LightGBMForecaster(params=FIT, num_boost_round=40, train_periods=30).fit(known)
    return panel, known, model


@pytest.fixture(scope="module")
def every_family(tmp_path_factory):
    """A panel with every family built (premises, hours, holidays, a context layer of stops), 60 weeks long."""
    cfg = load_config(study_toml(tmp_path_factory.mktemp("every-family")))
    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"families": list(FAMILIES)})})
    return cfg, build_panel(cfg, incidents(SOME_ROWS), GRID)


def test_contributions_are_lightgbm_treeshap_and_add_up_to_the_forecast(fitted):
    _, known, model = fitted
    contrib = model.contributions(known)
    full = model.booster_.predict(known.X_next, pred_contrib=True)
    assert contrib.shape == (known.grid.n_cells, len(model.feature_names_))
    # contributions plus the expected value are the log of the forecast (Poisson objective: log link)
    np.testing.assert_allclose(contrib.sum(axis=1) + full[:, -1], np.log(model.predict(known)), rtol=1e-5)


def test_every_feature_of_every_family_is_one_kind_of_evidence(every_family):
    _, panel = every_family
    assert set(KIND_OF_FAMILY) == set(FAMILIES)  # a new family must say what kind of evidence it is
    assert len({k.name for k in KINDS}) == len(KINDS)
    assert set(panel.feature_families.values()) == set(FAMILIES)
    kinds = {name: kind_of(panel, name) for name in panel.feature_names}
    assert {k for k, _ in kinds.values()} == {k.name for k in KINDS}
    assert {n for n, (k, _) in kinds.items() if k == "history"} == {
        n for n, f in panel.feature_families.items() if f == "temporal"}
    assert kinds["ring1_count_w4"] == kinds["near_repeat_w1"] == kinds["kde100m_w4"] == ("nearby", "")
    assert kinds["ctx_stops_count"] == kinds["ctx_stops_kde150m"] == ("context", "stops")  # one reason per layer


def test_a_hotspot_of_its_own_history_gets_one_history_sentence_with_its_true_counts(fitted):
    _, known, model = fitted
    sentences, records = cell_reasons(model, known, top=3)
    hot = int(np.argmax(model.predict(known)))
    assert 1 <= len(sentences[hot]) <= 3
    kinds = [r["kind"] for r in records[hot]]
    assert kinds[0] == "history" and kinds.count("history") == 1
    told = records[hot][0]
    year, recent = known.target[-52:, hot].sum(), known.target[-4:, hot].sum()
    assert told["values"] == {"count_w4": recent, "count_w52": year}
    assert set(told["features"]) == {n for n, f in known.feature_families.items() if f == "temporal"}
    # the planted hotspot has several incidents a week: its level in incidents a week, its direction or "steady"
    per_week = year / 52
    assert per_week >= 1
    text = sentences[hot][0]
    assert text in (f"about {about(per_week)} incidents a week here, steady over the last year",
                    f"rising: {recent:.0f} incidents in the last 4 weeks against about {about(per_week)} a week "
                    "over the last year",
                    f"falling: {recent:.0f} incidents in the last 4 weeks against about {about(per_week)} a week "
                    "over the last year")
    names = list(known.feature_names)
    for record in records[hot]:
        assert record["contribution"] > 0 and record["factor"] >= 1.05
        assert record["value"] == pytest.approx(float(known.X_next[hot, names.index(record["feature"])]), abs=1e-3)
    contributions = [r["contribution"] for r in records[hot]]
    assert contributions == sorted(contributions, reverse=True)  # the strongest reasons come first


def test_no_cell_is_told_the_same_kind_twice_nor_a_zero(sample_prepared):
    _, _, panel = sample_prepared
    known = panel.until(panel.n_periods - 1)
    model = LightGBMForecaster(params={**FIT, "min_data_in_leaf": 100}, num_boost_round=40, train_periods=52)
    sentences, records = cell_reasons(model.fit(known), known, top=3, min_factor=1.0)
    assert sum(len(s) >= 2 for s in sentences) >= 100  # material to check: cells told more than one kind
    for texts, cell in zip(sentences, records):
        told = [(r["kind"], r.get("layer")) for r in cell]
        assert len(told) == len(set(told))
        assert len(texts) == len(set(texts))
        for text, r in zip(texts, cell):
            assert "{" not in text and "nan" not in text
            assert not re.search(r"(^|\D)0(\.0+)? incidents", text), text
            assert not re.search(r"\b0\.\d+ incidents", text), text  # rates as a reader says them
            assert all(v != 0 for v in r["values"].values()) or r["kind"] == "history"


def _cell_centres(cfg):
    """Cells of the study area's grid (validated on the config's incidents) with their row, column and lon/lat."""
    grid = validate(cfg).grid
    return pd.DataFrame({"cell_id": grid.cell_id, "row": grid.cell_id // 1_000_000, "col": grid.cell_id % 1_000_000,
                         "lon": grid.lon, "lat": grid.lat})


def test_a_cell_raised_by_recent_incidents_around_it_is_told_so(tmp_path):
    """Planted near-repeat sprees: a week of incidents in the 8 cells around a quiet centre is followed by incidents
    in the centre the next week. The last week observed has a spree around cell X (its own record quiet): X's
    forecast is raised, and its first reason is the incidents around it, with their true count."""
    weeks, rng = 60, np.random.default_rng(3)
    background = synthetic_incidents(n=600, weeks=weeks, seed=3, hotspot_share=0.0)
    cells = _cell_centres(load_config(write_config(tmp_path / "grid", background)))
    at = {(r, c): (lon, lat) for r, c, lon, lat in cells[["row", "col", "lon", "lat"]].itertuples(index=False)}
    ring = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    inner = [rc for rc in at if all((rc[0] + dr, rc[1] + dc) in at for dr, dc in ring)]
    start, rows = pd.Timestamp("2020-01-06"), []

    def add(week, rc, n):
        for _ in range(n):
            when = start + pd.Timedelta(weeks=week) + pd.Timedelta(seconds=float(rng.uniform(0, 7 * 86400 - 60)))
            rows.append({"when": when.strftime("%Y-%m-%d %H:%M:%S"), "lon": at[rc][0], "lat": at[rc][1],
                         "offence": "Assault", "case_ref": 10_000 + len(rows)})

    for week in range(weeks - 1):
        for k in rng.choice(len(inner), size=3, replace=False):
            centre = inner[k]
            for dr, dc in ring:
                add(week, (centre[0] + dr, centre[1] + dc), 1)
            add(week + 1, centre, 3)
    x = inner[len(inner) // 2]
    for dr, dc in ring:  # the last observed week: a spree around X, whose follow-up is the forecast
        add(weeks - 1, (x[0] + dr, x[1] + dc), 2)
    data = pd.concat([background, pd.DataFrame(rows)], ignore_index=True)
    last_day = (start + pd.Timedelta(weeks=weeks) - pd.Timedelta(days=1)).date()
    cfg = load_config(write_config(tmp_path / "sprees", data, extra=f"[period]\ndata_end = {last_day}\n"))
    result = validate(cfg)
    panel = build_panel(cfg, result.accepted, result.grid)
    assert panel.n_periods == weeks
    model = LightGBMForecaster(params=FIT, num_boost_round=60, train_periods=40).fit(panel)
    sentences, records = cell_reasons(model, panel, top=3)
    cell = int(np.flatnonzero(panel.grid.cell_id == x[0] * 1_000_000 + x[1])[0])
    risk = model.predict(panel)
    assert (risk > risk[cell]).sum() < 5  # among the top 5 cells
    first = records[cell][0]
    assert first["kind"] == "nearby", sentences[cell]
    (name, value), = first["values"].items()
    assert value == panel.X_next[cell, panel.feature_names.index(name)] > 0
    if name.startswith("ring1_count_w1"):
        assert sentences[cell][0].startswith(f"{value:.0f} incidents within 500 m of this cell in the last week")
    assert "history" not in [r["kind"] for r in records[cell]][:1]


@pytest.mark.parametrize(("weekly", "last4", "expected"), [
    ([3] * 60, [3, 3, 3, 3], "about 3 incidents a week here, steady over the last year"),
    ([1] * 60, [1, 1, 1, 1], "about 1 incident a week here, steady over the last year"),
    ([0, 1] * 30, [0, 1, 0, 1], "about 2 incidents a month here, steady over the last year"),
    ([0, 0, 0, 1] * 15, [3, 2, 0, 0], "rising: 5 incidents in the last 4 weeks against about 1.5 a month over the "
                                      "last year"),
    ([6] * 60, [1, 0, 0, 0], "falling: 1 incident in the last 4 weeks against about 6 a week over the last year"),
    ([1] * 60, [0, 0, 0, 0], "falling: no incidents in the last 4 weeks against about 4 a month over the last year"),
    ([0] * 52 + [1] + [0] * 7, [0, 0, 0, 0], "1 incident here in the last year"),
])
def test_the_history_sentence_says_level_and_direction_in_a_readers_units(every_family, weekly, last4, expected):
    cfg, _ = every_family
    counts = weekly[:-4] + last4
    rows = [(w * 7 * 86400 + 3600 * (k + 1), 4, "A", "House") for w, n in enumerate(counts) for k in range(n)]
    panel = build_panel(cfg, incidents(rows), GRID)
    assert panel.n_periods == len(counts)
    text, quoted = tell_history(Evidence(Facts(panel), 4, [], {}))
    assert text == expected
    assert quoted == {"count_w4": sum(last4), "count_w52": sum(counts[-52:])}
    assert tell_history(Evidence(Facts(panel), 0, [], {})) is None  # nothing here in the last year: no sentence


@pytest.mark.parametrize(("x", "text"), [(0.96, "1"), (1.3, "1.5"), (2.24, "2"), (2.8, "3"), (3.4, "3"),
                                         (1234.5, "1,234")])
def test_rates_are_rounded_as_a_reader_says_them(x, text):
    assert about(x) == text


def test_singular_and_plural():
    assert counted(1, "incidents") == "1 incident" and counted(0, "incidents") == "no incidents"
    assert counted("about 1", "Robbery incidents") == "about 1 Robbery incident"
    assert counted(2, "incidents") == "2 incidents" and counted("about 1.5", "incidents") == "about 1.5 incidents"


def test_every_feature_of_the_sample_has_a_readable_reason(sample_prepared):
    _, _, panel = sample_prepared
    for name in panel.feature_names:
        assert panel.feature_reasons[name], f"{name} has no reason template"
        text = sentence(panel, name, 3.0)
        assert "{" not in text and "}" not in text and len(text) < 160
        assert kind_of(panel, name)[0] in {k.name for k in KINDS}
    assert sentence(panel, "count_w4", 9.0) == "9 incidents in this cell in the last 4 weeks"
    assert sentence(panel, "periods_since_last", float("nan")).endswith("no record yet")


def test_break_and_enter_target_is_named_in_the_reasons(tmp_path):
    cfg = load_config(write_config(tmp_path))
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"target_offenses": ["Break and Enter"]})})
    result = validate(cfg)
    panel = build_panel(cfg, result.accepted, result.grid)
    assert panel.target_noun == panel.until(40).target_noun == "Break and Enter incidents"
    assert sentence(panel, "count_w4", 2.0) == "2 Break and Enter incidents in this cell in the last 4 weeks"
    assert sentence(panel, "count_w4_assault", 5.0) == "5 Assault incidents in this cell in the last 4 weeks"
    assert sentence(panel, "ring1_count_w1", 3.0) == ("3 Break and Enter incidents within 500 m of this cell in the "
                                                       "last week")
    known = panel.until(70)
    hot = int(np.argmax(known.target[-52:].sum(axis=0)))
    text, _ = tell_history(Evidence(Facts(known), hot, [], {}))
    assert "Break and Enter incident" in text


def test_forecast_cells_carry_reasons_for_lightgbm_and_for_count_baselines(fitted):
    panel, _, model = fitted
    cells = forecast_cells(panel, model, 70)
    top = cells.iloc[0]
    assert top["rank"] == 1 and len(top["reasons"]) >= 1
    assert all(isinstance(r, str) for r in top["reasons"])
    assert {"kind", "feature", "features", "value", "values", "contribution", "factor"} <= set(
        top["reason_details"][0])
    # a count baseline's reason is the count it reads: the cell's own history, told with its real counts
    ewm = forecast_cells(panel, EWMCounts(halflife=4), 70).iloc[0]
    assert ewm["reason_details"][0]["kind"] == "history" and ewm["reason_details"][0]["feature"] == "ewm_hl4"
    assert re.search(r"incidents? (a week here|here in the last year)|rising|falling", ewm["reasons"][0])


def test_a_blend_explains_each_cell_by_its_parts_weighted_by_their_share_of_it(fitted):
    from hotspot.models.base import log_ratio
    from hotspot.training.selection import _Blend

    panel, known, model = fitted
    ewm = EWMCounts(halflife=4).fit(known)
    blend = _Blend([model, ewm], [0.6, 0.5])
    names, contrib = blend.explain(known)
    assert names[: len(model.feature_names_)] == list(model.feature_names_) and "ewm_hl4" in names
    f_lgb, f_ewm = 0.6 * model.predict(known), 0.5 * ewm.predict(known)
    share = f_lgb / (f_lgb + f_ewm)
    expected = share * model.contributions(known).sum(axis=1) + (1 - share) * log_ratio(ewm.predict(known))
    np.testing.assert_allclose(contrib.sum(axis=1), expected, rtol=1e-9, atol=1e-12)
    # a part with no weight says nothing: the blend is then explained as its one part
    alone_names, alone = _Blend([model, ewm], [0.0, 1.0]).explain(known)
    assert alone_names == ["ewm_hl4"]
    seen = ewm.predict(known) > 0  # a cell forecast at zero has no share to weigh: nothing raises it
    np.testing.assert_allclose(alone[seen, 0], log_ratio(ewm.predict(known))[seen])
    assert not alone[~seen].any()
    # and its cells get sentences, the top one its history
    cells = forecast_cells(panel, blend, 70)
    assert len(cells.iloc[0]["reasons"]) >= 1


def test_the_risk_terrain_baseline_is_explained_by_its_own_log_linear_terms(every_family):
    from hotspot.models import RiskTerrain

    _, panel = every_family
    known = panel.until(panel.n_periods - 1)
    rtm = RiskTerrain(weeks=26).fit(known)
    names, terms = rtm.explain(known)
    assert names and all(known.feature_families[n] == "context" for n in names)
    log_risk = np.log(rtm.predict(known))
    np.testing.assert_allclose(terms.sum(axis=1), log_risk - log_risk.mean(), atol=1e-8)


def test_the_first_period_with_nothing_recorded_before_it_still_gets_its_forecast_and_reasons(fitted):
    panel, _, model = fitted
    cells = forecast_cells(panel, model, 0)  # one period start known: the period length comes from its frequency
    assert len(cells) == panel.grid.n_cells and cells["reasons"].map(lambda r: isinstance(r, list)).all()
    assert not any("incidents a week" in r for reasons in cells["reasons"] for r in reasons)  # no history to tell
