"""Plots people would rather look at than read: hit-rate curves and PAI per week, one line per model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hotspot.features.locking import savefig_atomically  # noqa: E402


def plot_backtest(metrics: dict, out_dir: Path) -> dict[str, Path]:
    """Draw the backtest's hit-rate curve and PAI by week per model as PNGs; return their paths."""
    coverages = metrics["coverages"]
    values = [float(c.rstrip("%")) for c in coverages]
    paths = {}

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, m in metrics["models"].items():
        ax.plot(values, [m["mean"][f"hit_rate@{c}"] * 100 for c in coverages], marker="o", label=name)
    ax.plot(values, values, ls="--", c="grey", label="chance")
    ax.set(xlabel="share of area flagged (%)", ylabel="share of incidents in flagged cells (%)",
           title=f"Hit rate, mean of {len(metrics['weeks'])} weeks ({metrics['n_cells']} cells)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["hit_rate_plot"] = out_dir / "hit_rate_curve.png"
    savefig_atomically(fig, paths["hit_rate_plot"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, m in metrics["models"].items():
        weekly = pd.DataFrame(m["weekly"])
        ax.plot(pd.to_datetime(weekly["period_start"]), weekly["pai@1%"], marker=".", label=name)
    ax.set(xlabel="forecast week", ylabel="PAI at 1% of the area", title="PAI@1% per backtest week")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    paths["pai_plot"] = out_dir / "pai_by_week.png"
    savefig_atomically(fig, paths["pai_plot"], dpi=110)
    plt.close(fig)
    return paths
