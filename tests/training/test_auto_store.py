"""auto forecasting on its refit weeks, with its fits kept on disk (training/auto_store.py): a stored fit and a refit
seeded from the previous one's scores forecast exactly what fits from scratch do; new data before a refit week
means a new fit; a damaged entry is refitted."""

from __future__ import annotations

import numpy as np
import pytest

from hotspot.training import auto_store
from hotspot.training.forecast_model import first_auto_period, fit_auto, forecast_refit_every, refit_period

pytestmark = pytest.mark.slow


@pytest.fixture
def blend(sample_prepared):
    """The sample's config with auto blending LightGBM and the count baselines (every stored part exercised)."""
    cfg, result, panel = sample_prepared
    sel = cfg.selection.model_copy(update={"combine": "blend"})
    return cfg.model_copy(update={"selection": sel}), result.fingerprint, panel


def refit_weeks(cfg, panel):
    """Two consecutive refit weeks well inside the panel."""
    first = first_auto_period(cfg, panel)
    r1 = refit_period(cfg, panel, first + 12)
    return r1, refit_period(cfg, panel, r1 + forecast_refit_every(cfg))


def forecast(cfg, panel, t, fingerprint):
    chosen = fit_auto(cfg, panel, t, fingerprint)
    return chosen, np.asarray(chosen.model.predict(panel.until(t)))


def test_refit_weeks_are_fixed_weeks_shared_by_the_weeks_to_the_next(blend):
    cfg, _, panel = blend
    k = forecast_refit_every(cfg)
    first = first_auto_period(cfg, panel)
    refits = {t: refit_period(cfg, panel, t) for t in range(first, panel.n_periods)}
    for t, r in refits.items():
        assert r <= t and t - r < k
        if r > first:  # the clamp aside, refit weeks are the weeks numbered a multiple of k since 1970-01-01
            assert ((panel.period_starts[r] - np.datetime64("1970-01-01")).days // 7) % k == 0
    assert len(set(refits.values())) >= (panel.n_periods - first) // k


def test_digests_cover_the_data_before_the_stop_and_nothing_after(blend):
    _, _, panel = blend
    s = panel.n_periods - 20
    both = auto_store.panel_digests(panel, [s - 8, s])
    assert auto_store.panel_digests(panel, [s]) == {s: both[s]}  # a stop's digest does not depend on the others
    changed = panel.until(panel.n_periods)
    target = changed.target.copy()
    target[s + 3, 0] += 1  # a late record after the stop: the stop's fit is still good
    after = type(panel)(**{**changed.__dict__, "target": target})
    assert auto_store.panel_digests(after, [s]) == {s: both[s]}
    target = panel.target.copy()
    target[s - 3, 0] += 1  # a late record before it: a new fit
    before = type(panel)(**{**changed.__dict__, "target": target})
    assert auto_store.panel_digests(before, [s])[s] != both[s]


def test_stored_and_seeded_fits_forecast_what_fits_from_scratch_do(blend, tmp_path, monkeypatch):
    cfg, fingerprint, panel = blend
    r1, r2 = refit_weeks(cfg, panel)
    monkeypatch.setenv("HOTSPOT_CACHE", "off")  # from scratch, nothing kept
    scratch1, want1 = forecast(cfg, panel, r1 + 1, fingerprint)
    scratch2, want2 = forecast(cfg, panel, r2, fingerprint)
    assert scratch1.selection["fit"] == scratch2.selection["fit"] == "fitted"
    assert scratch1.selection["refit_week"] == str(panel.period_starts[r1].date())

    monkeypatch.delenv("HOTSPOT_CACHE")
    monkeypatch.setenv("HOTSPOT_CACHE_DIR", str(tmp_path / "cache"))
    first, got1 = forecast(cfg, panel, r1 + 1, fingerprint)
    assert first.selection["fit"] == "fitted"
    again, got1b = forecast(cfg, panel, r1 + 2, fingerprint)  # a later week of the same refit: read back
    assert again.selection["fit"] == "stored"
    assert np.array_equal(got1, want1)
    assert np.array_equal(got1b, np.asarray(scratch1.model.predict(panel.until(r1 + 2))))
    seeded, got2 = forecast(cfg, panel, r2, fingerprint)
    assert seeded.selection["fit"] == "fitted from the previous refit's stored scores"
    assert np.array_equal(got2, want2)
    assert seeded.selection["scores"] == scratch2.selection["scores"]
    assert f"before its refit week {panel.period_starts[r1].date()}" in again.selection["sentence"]

    # a damaged entry is ignored and refitted, never trusted in part
    for path in (tmp_path / "cache" / "auto" / cfg.model_key).glob("*.pkl"):
        path.write_bytes(b"not a pickle")
    refitted, got = forecast(cfg, panel, r1 + 1, fingerprint)
    assert refitted.selection["fit"] == "fitted" and np.array_equal(got, want1)
