"""Plots people would rather look at than read: hit-rate curves and PAI per week, one line per model.

Every figure of the backtest and its accuracy report styles models the same way: LightGBM (the reference) and the
best baseline in colour, every other model thin grey, the clairvoyant limit as a dashed black reference line, and
plain numbers on every axis (never an offset or "x10^0").
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter, ScalarFormatter  # noqa: E402

from hotspot.features.locking import savefig_atomically  # noqa: E402
from hotspot.training.evaluation.verdict import best_baseline  # noqa: E402

REFERENCE_COLOUR, BASELINE_COLOUR, OTHER_COLOUR = "tab:blue", "tab:orange", "#b5b5b5"
LIMIT_STYLE = {"color": "black", "ls": "--", "lw": 1.4, "zorder": 4}


def model_styles(names: list[str], reference: str | None, best: str | None) -> dict[str, dict]:
    """Line keyword arguments per model: the reference and the best baseline in colour and labelled, the others thin
    grey under one legend entry ("other models"); drawing order: greys first."""
    styles, grey_labelled = {}, False
    for name in names:
        if name == reference:
            styles[name] = {"color": REFERENCE_COLOUR, "lw": 2.2, "zorder": 3, "label": name}
        elif name == best:
            styles[name] = {"color": BASELINE_COLOUR, "lw": 2.2, "zorder": 3, "label": f"{name} (best baseline)"}
        else:
            styles[name] = {"color": OTHER_COLOUR, "lw": 0.9, "zorder": 2,
                            "label": None if grey_labelled else "other models"}
            grey_labelled = True
    return dict(sorted(styles.items(), key=lambda kv: kv[1]["zorder"]))


def highlighted(names: list[str], means: dict[str, float], reference: str | None = "lightgbm"
                ) -> tuple[str | None, str | None]:
    """(reference, best baseline) to highlight: the reference if present, the best non-LightGBM model by mean."""
    return (reference if reference in names else None), best_baseline({n: means[n] for n in names})


def plain_numbers(ax, x: bool = True, y: bool = True) -> None:
    """Plain tick labels on the linear/symlog axes named: no offset, no scientific notation, no minor labels."""
    for use, axis in ((x, ax.xaxis), (y, ax.yaxis)):
        if not use:
            continue
        if axis.get_scale() == "linear":
            fmt = ScalarFormatter(useOffset=False, useMathText=False)
            fmt.set_scientific(False)
            axis.set_major_formatter(fmt)
        else:
            axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())


def plot_backtest(metrics: dict, out_dir: Path) -> dict[str, Path]:
    """Draw the backtest's hit-rate curve and PAI by week per model as PNGs; return their paths."""
    coverages = metrics["coverages"]
    values = [float(c.rstrip("%")) for c in coverages]
    names = list(metrics["models"])
    reference, best = highlighted(names, {n: m["mean"].get("pai@1%", float("nan"))
                                          for n, m in metrics["models"].items()})
    styles = model_styles(names, reference, best)
    limit = metrics.get("limit") or {}
    paths = {}

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, style in styles.items():
        m = metrics["models"][name]
        ax.plot(values, [m["mean"][f"hit_rate@{c}"] * 100 for c in coverages], marker="o",
                ms=4 if style["zorder"] == 3 else 2, **style)
    if limit.get("available"):
        ax.plot(values, [limit["mean"][f"hit_rate@{c}"] * 100 for c in coverages],
                label="clairvoyant limit (uses future data)", **LIMIT_STYLE)
    ax.plot(values, values, ls=":", c="grey", label="chance")
    ax.set(xlabel="share of area flagged (%)", ylabel="share of incidents in flagged cells (%)",
           title=f"Hit rate, mean of {len(metrics['weeks'])} weeks ({metrics['n_cells']:,} cells)")
    plain_numbers(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["hit_rate_plot"] = out_dir / "hit_rate_curve.png"
    savefig_atomically(fig, paths["hit_rate_plot"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, style in styles.items():
        weekly = pd.DataFrame(metrics["models"][name]["weekly"])
        ax.plot(pd.to_datetime(weekly["period_start"]), weekly["pai@1%"], marker=".", **style)
    if limit.get("available"):
        weekly = pd.DataFrame(limit["weekly"])
        ax.plot(pd.to_datetime(weekly["period_start"]), weekly["pai@1%"],
                label="clairvoyant limit (uses future data)", **LIMIT_STYLE)
    ax.set(xlabel="forecast week", ylabel="PAI at 1% of the area", title="PAI@1% per backtest week")
    plain_numbers(ax, x=False)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    paths["pai_plot"] = out_dir / "pai_by_week.png"
    savefig_atomically(fig, paths["pai_plot"], dpi=110)
    plt.close(fig)
    return paths
