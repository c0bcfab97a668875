"""Feature-family ablation: LightGBM with every family, and with each family removed, on the same backtest weeks.

Removing a family's columns (not rebuilding the panel) keeps every variant on identical rows and weeks, so the
differences are paired: each week's PAI@1% and deviance difference against the full model is averaged with a 95%
percentile-bootstrap interval over weeks (the paired comparison of training/evaluation/stats.py). Gain importance
per family comes from the full model's last fit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from hotspot.features import safe_csv
from hotspot.features.config import StudyConfig
from hotspot.features.locking import locked, savefig_atomically, write_text_atomically
from hotspot.features.panel import Panel
from hotspot.models import LightGBMForecaster
from hotspot.training.backtest import BacktestResult, lightgbm_from_config, make_models, run_backtest
from hotspot.training.evaluation.stats import paired_comparison


@dataclass
class AblationResult:
    backtest: BacktestResult
    table: pd.DataFrame  # one row per variant
    family_gain: pd.Series  # share of the full model's total gain per family


def ablation_models(cfg: StudyConfig, panel: Panel) -> list[LightGBMForecaster]:
    """The config's LightGBM and one variant without each feature family of the panel."""
    full = lightgbm_from_config(cfg)
    families = sorted(set(panel.feature_families.values()))
    variants = [full]
    for fam in families:
        keep = [n for n in panel.feature_names if panel.feature_families[n] != fam]
        variants.append(clone(full).set_params(features=keep, name=f"lightgbm-no_{fam}"))
    return variants


def reference_baselines(cfg: StudyConfig) -> list[str]:
    """The baselines an ablation is shown beside: the longest naive window and the weighted mean."""
    return [f"naive_{max(cfg.backtest.naive_weeks)}w", f"ewm_hl{cfg.backtest.ewm_halflife:g}"]


def paired_difference(weekly_a: list[dict], weekly_b: list[dict], key: str) -> tuple[float, float, float]:
    """Mean of (a - b) over weeks with its 95% bootstrap interval (NaN with fewer than two weeks)."""
    a = np.array([w[key] for w in weekly_a], dtype=float)
    b = np.array([w[key] for w in weekly_b], dtype=float)
    paired = paired_comparison(a, b)
    if paired["weeks"] < 2:  # one week has no spread to go on: no interval, as the ablation table always showed
        return paired["difference"], float("nan"), float("nan")
    return paired["difference"], *paired["ci95"]


def run_ablation(cfg: StudyConfig, panel: Panel, periods: np.ndarray, refit_every: int,
                 baselines: list[str] | None = None,
                 on_step: Callable[[str, int], None] | None = None) -> AblationResult:
    """Backtest every leave-one-family-out variant beside the full model and the reference baselines."""
    variants = ablation_models(cfg, panel)
    reference = make_models(cfg, baselines if baselines is not None else reference_baselines(cfg))
    result = run_backtest(panel, variants + reference, periods, refit_every, cfg.backtest.coverages, on_step)
    models = result.metrics["models"]
    full = models["lightgbm"]
    n_features = {v.name: len(v.feature_names_) for v in variants}
    rows = []
    for name, m in models.items():
        d_pai = paired_difference(m["weekly"], full["weekly"], "pai@1%")
        d_dev = paired_difference(m["weekly"], full["weekly"], "poisson_deviance")
        rows.append({
            "variant": name,
            "family_removed": name.split("lightgbm-no_")[1] if name.startswith("lightgbm-no_") else "",
            "features": n_features.get(name),
            "pai@1%": m["mean"]["pai@1%"], "pai@5%": m["mean"]["pai@5%"],
            "poisson_deviance": m["mean"]["poisson_deviance"],
            "d_pai@1%": d_pai[0], "d_pai@1%_lo": d_pai[1], "d_pai@1%_hi": d_pai[2],
            "d_deviance": d_dev[0], "d_deviance_lo": d_dev[1], "d_deviance_hi": d_dev[2],
        })
    table = pd.DataFrame(rows).set_index("variant")
    gains = pd.Series(variants[0].gain_importance())
    family_gain = gains.groupby(pd.Series(panel.feature_families)).sum().reindex(
        sorted(set(panel.feature_families.values()))).fillna(0.0)
    family_gain = family_gain / family_gain.sum()
    table["gain_share_of_family"] = table["family_removed"].map(family_gain)
    return AblationResult(result, table, family_gain)


def write_ablation(result: AblationResult, out_dir: Path, title: str) -> dict[str, Path]:
    """Write ablation.csv, ablation.json and ablation.png (effect of removing each family, and its gain share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"ablation_table": out_dir / "ablation.csv", "ablation_json": out_dir / "ablation.json",
             "ablation_plot": out_dir / "ablation.png"}
    with locked(paths["ablation_json"], what="writing the ablation"):  # the three files from one run
        return _write_ablation(result, paths, title, plt)


def _write_ablation(result: AblationResult, paths: dict[str, Path], title: str, plt) -> dict[str, Path]:
    safe_csv.write_csv(result.table, paths["ablation_table"], index=True)
    write_text_atomically(paths["ablation_json"], json.dumps({
        "title": title, "weeks": result.backtest.metrics["weeks"],
        "variants": json.loads(result.table.reset_index().to_json(orient="records")),
        "family_gain_share": {k: float(v) for k, v in result.family_gain.items()},
        "reading": "d_* = variant minus full model, mean over weeks with a 95% interval; a family helps PAI when "
                   "removing it lowers PAI (negative d_pai) and helps deviance when removing it raises deviance.",
    }, indent=2))

    removed = result.table[result.table["family_removed"] != ""].sort_values("d_pai@1%")
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(removed) + 2), sharey=True)
    y = np.arange(len(removed))
    for ax, key, label in ((axes[0], "d_pai@1%", "change in PAI@1% when removed"),
                           (axes[1], "d_deviance", "change in Poisson deviance when removed")):
        err = np.vstack([removed[key] - removed[f"{key}_lo"], removed[f"{key}_hi"] - removed[key]])
        ax.barh(y, removed[key], xerr=np.nan_to_num(err), color=np.where(removed[key] < 0, "tab:red", "tab:blue"))
        ax.axvline(0, c="k", lw=0.8)
        ax.set_xlabel(label)
    axes[2].barh(y, removed["gain_share_of_family"] * 100, color="tab:grey")
    axes[2].set_xlabel("share of the full model's gain (%)")
    axes[0].set_yticks(y, removed["family_removed"])
    full = result.table.loc["lightgbm"]
    fig.suptitle(f"{title}: full model PAI@1% {full['pai@1%']:.2f}, deviance {full['poisson_deviance']:.4f}")
    fig.tight_layout()
    savefig_atomically(fig, paths["ablation_plot"], dpi=110)
    plt.close(fig)
    return paths
