"""The accuracy report of a backtest: JSON, an HTML page and PNG plots, every model beside the baselines.

Recomputed from the predictions table alone (see training/evaluation.py for the definitions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.locking import locked, savefig_atomically, write_text_atomically
from hotspot.training.evaluation.metrics import coverage_label, week_metrics
from hotspot.training.evaluation.stats import (
    bootstrap_mean,
    calibration,
    hit_rate_curve,
    paired_comparison,
    pei_star_at,
    rank_stability,
    weeks_of,
)
from hotspot.training.pages import render

NOTE = ("Recorded incidents are policing data, not ground truth: these figures measure how well each model "
        "anticipates where incidents will be recorded.")


def accuracy_report(predictions: pd.DataFrame, coverages: list[float], reference: str = "lightgbm",
                    reps: int = 2000) -> dict:
    """Every model's weekly metrics, intervals, hit-rate curve, calibration and paired comparisons."""
    models = [str(m) for m in pd.unique(predictions["model"].astype(str))]
    report: dict = {"coverages": [coverage_label(c) for c in coverages], "models": {}, "note": NOTE}
    weekly_by_model = {}
    for model in models:
        weeks = weeks_of(predictions, model)
        weekly = []
        for week, _, risk, obs in weeks:
            row = {"period_start": week, **week_metrics(risk, obs, coverages)}
            row.update({f"pei*@{coverage_label(c)}": pei_star_at(risk, obs, c) for c in coverages})
            weekly.append(row)
        frame = pd.DataFrame(weekly)
        weekly_by_model[model] = frame
        summary = {}
        for key in [k for k in frame.columns if k not in ("period_start",)]:
            mean, lo, hi = bootstrap_mean(frame[key], reps)
            summary[key] = {"mean": mean, "ci95": [lo, hi]}
        report["models"][model] = {
            "summary": summary,
            "rank_stability@1%": rank_stability(weeks, 0.01),
            "calibration": calibration(weeks).to_dict(orient="records"),
            "hit_rate_curve": hit_rate_curve(weeks).to_dict(orient="records"),
        }
        report["weeks"] = [w[0] for w in weeks]
    if reference in weekly_by_model:
        ref = weekly_by_model[reference]
        report["paired"] = {
            other: {key: paired_comparison(ref[key], frame[key], reps) for key in ("pai@1%", "poisson_deviance")}
            for other, frame in weekly_by_model.items() if other != reference
        }
        report["reference"] = reference
    n_weeks = len(report.get("weeks", []))
    mean_incidents = float(np.mean([f["incidents"].mean() for f in weekly_by_model.values()])) if models else 0
    report["warnings"] = []
    if n_weeks < 10:
        report["warnings"].append(f"only {n_weeks} weeks: intervals are wide and rankings of models unstable")
    if mean_incidents < 50:
        report["warnings"].append(f"about {mean_incidents:.0f} incidents a week: hit rates move in large steps")
    return report


def plot_report(report: dict, predictions: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Draw the accuracy report's figures (curve, PAI intervals, calibration, top-cells map) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, m in report["models"].items():
        curve = pd.DataFrame(m["hit_rate_curve"])
        ax.plot(curve["coverage"] * 100, curve["hit_rate"] * 100, label=name)
    ax.plot([0, 20], [0, 20], ls="--", c="grey", label="chance")
    ax.set(xlabel="share of area flagged (%)", ylabel="share of incidents caught (%)", xlim=(0, 20),
           title=f"Hit-rate curve, mean of {len(report['weeks'])} weeks")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths["curve"] = out_dir / "report_hit_rate_curve.png"
    savefig_atomically(fig, paths["curve"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    labels = report["coverages"]
    n = len(report["models"])
    for i, (name, m) in enumerate(report["models"].items()):
        means = [m["summary"][f"pai@{c}"]["mean"] for c in labels]
        lo = [m["summary"][f"pai@{c}"]["ci95"][0] for c in labels]
        hi = [m["summary"][f"pai@{c}"]["ci95"][1] for c in labels]
        x = np.arange(len(labels)) + (i - (n - 1) / 2) * 0.8 / n
        ax.errorbar(x, means, yerr=[np.subtract(means, lo), np.subtract(hi, means)], fmt="o", ms=4, capsize=2,
                    label=name)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set(xlabel="coverage", ylabel="PAI (mean, 95% bootstrap interval)", title="PAI at each coverage")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths["pai"] = out_dir / "report_pai_intervals.png"
    savefig_atomically(fig, paths["pai"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    top = 0.0
    for name, m in report["models"].items():
        cal = pd.DataFrame(m["calibration"])
        ax.plot(cal["forecast"], cal["observed"], marker="o", ms=3, label=name)
        top = max(top, cal["forecast"].max(), cal["observed"].max())
    ax.plot([0, top], [0, top], ls="--", c="grey")
    # symlog spreads the low deciles out; linear up to a tenth of the top decile, and plain numbers on the axes
    # (its default labels with a small range read as "4.83936 x 10^-1")
    from matplotlib.ticker import FormatStrFormatter

    linthresh = max(top / 10, 1e-3)
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_yscale("symlog", linthresh=linthresh)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set(xlim=(0, top * 1.1), ylim=(0, top * 1.1), xlabel="mean forecast per cell-week (risk decile)",
           ylabel="mean recorded per cell-week", title="Calibration by risk decile")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths["calibration"] = out_dir / "report_calibration.png"
    savefig_atomically(fig, paths["calibration"], dpi=110)
    plt.close(fig)

    model = report.get("reference", next(iter(report["models"])))
    last = report["weeks"][-1]
    week = predictions[(predictions["model"].astype(str) == model)
                       & (predictions["period_start"].astype(str) == last)]
    k = max(1, int(round(0.01 * len(week))))
    flagged = week.nlargest(k, "risk")
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.scatter(week["x"], week["y"], s=2, c="#dddddd", marker="s")
    sc = ax.scatter(flagged["x"], flagged["y"], s=18, c=flagged["risk"], cmap="Reds", marker="s",
                    edgecolors="k", linewidths=0.3)
    hits = week[week["observed"] > 0]
    ax.scatter(hits["x"], hits["y"], s=4 * hits["observed"], facecolors="none", edgecolors="tab:blue",
               linewidths=0.5)
    fig.colorbar(sc, ax=ax, label="forecast risk (top 1% of cells)")
    ax.set(title=f"{model}: top 1% of cells, week of {last}\n(blue rings: cells with recorded incidents that week)",
           xticks=[], yticks=[])
    ax.set_aspect("equal")
    fig.tight_layout()
    paths["map"] = out_dir / "report_top_cells_map.png"
    savefig_atomically(fig, paths["map"], dpi=110)
    plt.close(fig)
    return paths


def write_report(report: dict, predictions: pd.DataFrame, out_dir: Path, title: str) -> dict[str, Path]:
    """accuracy.json, accuracy.html and its figures, as one set: each file replaced whole, under the report's lock
    (a second backtest writing to the same folder waits, so the page and its figures come from one run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "accuracy.json", out_dir / "accuracy.html"
    with locked(json_path, what="writing the accuracy report"):
        plots = plot_report(report, predictions, out_dir)
        write_text_atomically(json_path, json.dumps(report, indent=2, default=float))
        write_text_atomically(html_path, render_html(report, plots, title))
    return {"accuracy_json": json_path, "accuracy_html": html_path, **{f"plot_{k}": v for k, v in plots.items()}}


def summary_rows(report: dict) -> pd.DataFrame:
    """One row per model of the report's headline figures, best PAI@1% first."""
    rows = {}
    for name, m in report["models"].items():
        s = m["summary"]
        rows[name] = {"PAI@1%": s["pai@1%"]["mean"], "PAI@1% lo": s["pai@1%"]["ci95"][0],
                      "PAI@1% hi": s["pai@1%"]["ci95"][1], "PAI@5%": s["pai@5%"]["mean"],
                      "PEI@1%": s["pei@1%"]["mean"], "PEI*@1%": s["pei*@1%"]["mean"],
                      "deviance": s["poisson_deviance"]["mean"], "stability@1%": m["rank_stability@1%"]}
    return pd.DataFrame(rows).T.sort_values("PAI@1%", ascending=False)


def render_html(report: dict, plots: dict[str, Path], title: str) -> str:
    """The accuracy report as one HTML page (template training/templates/accuracy.html.j2)."""
    table = summary_rows(report)
    paired_rows = None
    if "paired" in report:
        paired_rows = [[other, f"{p['pai@1%']['difference']:+.2f} "
                               f"[{p['pai@1%']['ci95'][0]:+.2f}, {p['pai@1%']['ci95'][1]:+.2f}]",
                        f"{p['pai@1%']['weeks_better']}/{p['pai@1%']['weeks']}",
                        f"{p['poisson_deviance']['difference']:+.4f}"] for other, p in report["paired"].items()]
    weeks = report.get("weeks", [])
    return render("accuracy.html.j2", title=title, note=NOTE, n_weeks=len(weeks),
                  first_week=weeks[0] if weeks else "", last_week=weeks[-1] if weeks else "",
                  warnings=report.get("warnings", []), summary_head=["model", *table.columns],
                  summary_rows=[[name, *(f"{v:.3f}" for v in row)] for name, row in table.iterrows()],
                  reference=report.get("reference", ""), paired_rows=paired_rows,
                  plots={k: p.name for k, p in plots.items()})
