"""Forecast products ([[products]]): each a label of its own with its own names; configs without them unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hotspot.features.config import ConfigError, load_config
from hotspot.steps.common import default_out, with_overrides
from hotspot.training.registry import registered_name
from hotspot.training.tuning import study_name
from tests.conftest import SAMPLE_CONFIG, synthetic_incidents, write_config

PRODUCTS = '''
[[products]]
name = "all"

[[products]]
name = "assault"
title = "Assaults"
offenses = ["Assault"]
exclude_families = ["calendar"]
'''


def _config(tmp_path: Path, products: str = PRODUCTS, offenses: str = 'offenses = ["Assault", "Robbery"]') -> Path:
    path = write_config(tmp_path / "study", synthetic_incidents(n=200), extra_incidents=offenses)
    path.write_text(path.read_text() + products)
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_each_product_has_its_label_and_names(tmp_path):
    cfg = load_config(_config(tmp_path))
    area = cfg.area.name
    assert cfg.product_names == ["all", "assault"]
    assert cfg.product.name == "all"  # the first is the default
    assault = cfg.for_product("assault")
    assert assault.model.target_offenses == ["Assault"]
    assert "calendar" in assault.features.exclude and "calendar" not in cfg.features.exclude
    assert assault.product.label == "Assaults" and cfg.product.label == "All offences"
    assert registered_name(assault) == f"{area}-assault" and registered_name(cfg) == f"{area}-all"
    assert default_out(assault, "backtest") == Path("outputs") / area / "assault" / "backtest"
    assert default_out(assault, "validate") == Path("outputs") / area / "validate"  # records are the area's
    assert study_name(assault) == f"{area}-lightgbm-assault"
    # the product survives a copy with overrides (ablation, --without)
    assert with_overrides(assault, without=["spatial"]).product.name == "assault"


def test_the_label_counts_only_the_products_offences(tmp_path):
    from hotspot.features.prepared import prepare

    cfg = load_config(_config(tmp_path))
    every = prepare(cfg, use_cache=False).panel
    assault = prepare(cfg.for_product("assault"), use_cache=False).panel
    assert assault.target.sum() < every.target.sum()
    assert assault.target.sum() > 0
    assert np.all(assault.target <= every.target)


def test_unknown_product_names_the_products(tmp_path):
    cfg = load_config(_config(tmp_path))
    with pytest.raises(ConfigError, match=r"no product named 'burglary'; expected one of all, assault"):
        cfg.for_product("burglary")


def test_bad_products_are_refused_with_their_key(tmp_path):
    twice = PRODUCTS + '\n[[products]]\nname = "all"\n'
    assert "every product needs its own name" in _error(_config(tmp_path / "a", twice))
    unknown = '\n[[products]]\nname = "arson"\noffenses = ["Arson"]\n'
    assert "products[0] (arson): offences ['Arson'] are not in incidents.offenses" in _error(
        _config(tmp_path / "b", unknown))
    assert "products.0.name" in _error(_config(tmp_path / "c", '\n[[products]]\nname = "Break And Enter"\n'))
    assert "products.0.offenses" in _error(_config(tmp_path / "d", '\n[[products]]\nname = "x"\noffenses = []\n'))
    assert "products.0.exclude_families" in _error(
        _config(tmp_path / "e", '\n[[products]]\nname = "x"\nexclude_families = ["nope"]\n'))


def test_products_and_target_offenses_together_are_refused(tmp_path):
    path = _config(tmp_path)
    path.write_text(path.read_text().replace("train_periods = 30", 'train_periods = 30\ntarget_offenses = ["Robbery"]',
                                             1))
    assert "with [[products]], give each product's offences there instead" in _error(path)


def test_a_config_without_products_keeps_its_names(tmp_path):
    cfg = load_config(_config(tmp_path, products=""))
    area = cfg.area.name
    assert not cfg.has_products and cfg.product_names == ["all"]
    assert cfg.for_product(None).model_key == area == cfg.for_product("all").model_key
    assert registered_name(cfg) == f"{area}-lightgbm"
    assert default_out(cfg, "backtest") == Path("outputs") / area / "backtest"
    targeted = with_overrides(cfg, targets=["Robbery"])
    assert targeted.product.name == "robbery" and registered_name(targeted) == f"{area}-lightgbm"


def test_the_sample_ships_three_products():
    cfg = load_config(SAMPLE_CONFIG)
    assert cfg.product_names == ["all", "assault", "break-and-enter"]
    assert cfg.for_product("break-and-enter").model.target_offenses == ["Break and Enter"]
