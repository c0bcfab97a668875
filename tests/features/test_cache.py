"""The prepared inputs are cached by content: the same inputs give the same panel without a rebuild, and any change
to what the panel is made of (a data file, a data setting, the stored history) builds it again."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hotspot.features import cache
from hotspot.features.config import load_config
from hotspot.features.prepared import prepare
from tests.conftest import write_config


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("HOTSPOT_CACHE_DIR", str(folder))
    return folder


def entries(folder):
    return sorted(folder.rglob("*.pkl"))


def test_second_prepare_comes_from_the_cache_and_is_identical(tmp_path, private_cache):
    cfg = load_config(write_config(tmp_path / "area"))
    built = prepare(cfg)
    assert "panel_s" in built.seconds and len(entries(private_cache)) == 1
    again = prepare(cfg)
    assert set(again.seconds) == {"cache_s"}
    assert again.panel.feature_names == built.panel.feature_names
    np.testing.assert_array_equal(again.panel.X, built.panel.X)
    np.testing.assert_array_equal(again.panel.target, built.panel.target)
    assert again.incidents.fingerprint == built.incidents.fingerprint
    assert len(again.incidents.accepted) == len(built.incidents.accepted)


def test_a_changed_data_file_builds_again(tmp_path, private_cache):
    path = write_config(tmp_path / "area")
    cfg = load_config(path)
    first = prepare(cfg)
    data = next((tmp_path / "area").glob("incidents.*"))
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:-50]) + "\n")  # the last 50 records withdrawn
    second = prepare(load_config(path))
    assert "panel_s" in second.seconds, "the changed file was not noticed"
    assert len(second.incidents.accepted) < len(first.incidents.accepted)
    assert second.panel.target.sum() < first.panel.target.sum()


def test_only_data_settings_change_the_key(tmp_path):
    path = write_config(tmp_path / "area")
    cfg = load_config(path)
    key = cache.cache_key(cfg)
    tuned = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"trials": 3})})
    assert cache.cache_key(tuned) == key, "a tuning setting does not change the panel"
    coarser = cfg.model_copy(update={"area": cfg.area.model_copy(update={"cell_size_m": 1000})})
    assert cache.cache_key(coarser) != key
    other_targets = cfg.model_copy(update={"model": cfg.model.model_copy(update={"target_offenses": ["BURGLARY"]})})
    assert cache.cache_key(other_targets) != key


def test_a_damaged_entry_is_rebuilt_not_trusted(tmp_path, private_cache):
    cfg = load_config(write_config(tmp_path / "area"))
    prepare(cfg)
    (entry,) = entries(private_cache)
    entry.write_bytes(entry.read_bytes()[:100])
    again = prepare(cfg)
    assert "panel_s" in again.seconds
    assert entry.stat().st_size > 100


def test_switched_off_writes_nothing(tmp_path, private_cache, monkeypatch):
    monkeypatch.setenv("HOTSPOT_CACHE", "off")
    cfg = load_config(write_config(tmp_path / "area"))
    prepare(cfg)
    assert "panel_s" in prepare(cfg).seconds
    assert not private_cache.exists()


def test_old_entries_are_pruned(tmp_path, private_cache):
    for size in (250, 300, 350, 400, 450):
        folder = tmp_path / f"area{size}"
        shutil.rmtree(folder, ignore_errors=True)
        cfg = load_config(write_config(folder))
        prepare(cfg.model_copy(update={"area": cfg.area.model_copy(update={"cell_size_m": size})}))
    assert len(entries(private_cache)) == cache.KEEP
