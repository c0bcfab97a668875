"""The accuracy report of a backtest: JSON, an HTML page and PNG plots, every model beside the baselines.

Recomputed from the predictions table alone (see training/evaluation.py for the definitions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.locking import locked, savefig_atomically, write_text_atomically
from hotspot.training.evaluation.limit import LIMIT_LABEL, LIMIT_NAME
from hotspot.training.evaluation.metrics import coverage_label, week_metrics
from hotspot.training.evaluation.plots import LIMIT_STYLE, model_styles, plain_numbers
from hotspot.training.evaluation.stats import (
    bootstrap_mean,
    calibration,
    hit_rate_curve,
    paired_comparison,
    pei_star_at,
    rank_stability,
    weeks_of,
)
from hotspot.training.evaluation.verdict import headroom, verdict
from hotspot.training.pages import render

NOTE = ("Recorded incidents are policing data, not ground truth: these figures measure how well each model "
        "anticipates where incidents will be recorded.")


def _weekly(weeks, coverages: list[float]) -> pd.DataFrame:
    """One row per week: every metric of metrics.week_metrics and PEI* at each coverage."""
    rows = []
    for week, _, risk, obs in weeks:
        row = {"period_start": week, **week_metrics(risk, obs, coverages)}
        row.update({f"pei*@{coverage_label(c)}": pei_star_at(risk, obs, c) for c in coverages})
        rows.append(row)
    return pd.DataFrame(rows)


def _figures(weeks, frame: pd.DataFrame, reps: int) -> dict:
    """Mean and interval of each weekly metric, rank stability, calibration and hit-rate curve of one ranking."""
    summary = {}
    for key in [k for k in frame.columns if k != "period_start"]:
        mean, lo, hi = bootstrap_mean(frame[key], reps)
        summary[key] = {"mean": mean, "ci95": [lo, hi]}
    return {"summary": summary, "rank_stability@1%": rank_stability(weeks, 0.01),
            "calibration": calibration(weeks).to_dict(orient="records"),
            "hit_rate_curve": hit_rate_curve(weeks).to_dict(orient="records")}


def accuracy_report(predictions: pd.DataFrame, coverages: list[float], reference: str = "lightgbm",
                    reps: int = 2000, limit: pd.DataFrame | None = None, limit_note: str = "") -> dict:
    """Every model's weekly metrics, intervals, hit-rate curve, calibration and paired comparisons; the verdict in
    words; and the clairvoyant limit (`limit`, a table like the predictions; None when not available, `limit_note`
    saying why) with each model's share of the headroom closed."""
    models = [str(m) for m in pd.unique(predictions["model"].astype(str))]
    report: dict = {"coverages": [coverage_label(c) for c in coverages], "models": {}, "note": NOTE}
    weekly_by_model = {}
    for model in models:
        weeks = weeks_of(predictions, model)
        weekly_by_model[model] = frame = _weekly(weeks, coverages)
        report["models"][model] = _figures(weeks, frame, reps)
        report["weeks"] = [w[0] for w in weeks]
    if reference in weekly_by_model:
        ref = weekly_by_model[reference]
        report["paired"] = {
            other: {key: paired_comparison(ref[key], frame[key], reps) for key in ("pai@1%", "poisson_deviance")}
            for other, frame in weekly_by_model.items() if other != reference
        }
        report["reference"] = reference
    report["verdict"] = verdict({m: f["pai@1%"] for m, f in weekly_by_model.items()}, reference, "pai@1%", reps)
    report["best_baseline"] = report["verdict"]["best_baseline"]
    report["limit"] = {"name": LIMIT_NAME, "label": LIMIT_LABEL, "available": limit is not None, "note": limit_note}
    limit_value = None
    if limit is not None:
        weeks = weeks_of(limit, LIMIT_NAME)
        if [w[0] for w in weeks] != report.get("weeks"):
            raise ValueError(f"the {LIMIT_NAME} covers weeks {[w[0] for w in weeks]}, the models "
                             f"{report.get('weeks')}: they must be scored on the same weeks")
        frame = _weekly(weeks, coverages)
        report["limit"].update(_figures(weeks, frame, reps))
        report["limit"]["weekly"] = frame.to_dict(orient="records")
        limit_value = report["limit"]["summary"]["pai@1%"]["mean"]
    means = {m: float(np.nanmean(f["pai@1%"])) if f["pai@1%"].notna().any() else float("nan")
             for m, f in weekly_by_model.items()}
    limit_vs_best = None
    best = report["best_baseline"]
    if limit_value is not None and best in weekly_by_model:
        limit_vs_best = paired_comparison(pd.DataFrame(report["limit"]["weekly"])["pai@1%"],
                                          weekly_by_model[best]["pai@1%"], reps)
    report["headroom"] = headroom(means, best, limit_value, limit_note, limit_vs_best=limit_vs_best)
    n_weeks = len(report.get("weeks", []))
    mean_incidents = float(np.mean([f["incidents"].mean() for f in weekly_by_model.values()])) if models else 0
    report["warnings"] = []
    if n_weeks < 10:
        report["warnings"].append(f"only {n_weeks} weeks: intervals are wide and rankings of models unstable")
    if mean_incidents < 50:
        report["warnings"].append(f"about {mean_incidents:.0f} incidents a week: hit rates move in large steps")
    return report


def metrics_extras(report: dict) -> dict:
    """The report's verdict, headroom and limit (means and weekly figures) for metrics.json and the demo's table."""
    lim = report["limit"]
    limit = {k: lim[k] for k in ("name", "label", "available", "note")}
    if lim["available"]:
        limit["mean"] = {k: v["mean"] for k, v in lim["summary"].items()}
        limit["weekly"] = lim["weekly"]
    return {"verdict": report["verdict"], "headroom": report["headroom"], "limit": limit}


def plot_report(report: dict, predictions: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Draw the accuracy report's figures (curve, PAI intervals, calibration, top-cells map) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    reference = report.get("reference")
    styles = model_styles(names, reference, report.get("best_baseline"))
    limit = report.get("limit") or {}
    limit_label = f"{LIMIT_NAME} (uses future data)"
    paths = {}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, style in styles.items():
        curve = pd.DataFrame(report["models"][name]["hit_rate_curve"])
        ax.plot(curve["coverage"] * 100, curve["hit_rate"] * 100, **style)
    if limit.get("available"):
        curve = pd.DataFrame(limit["hit_rate_curve"])
        ax.plot(curve["coverage"] * 100, curve["hit_rate"] * 100, label=limit_label, **LIMIT_STYLE)
    ax.plot([0, 20], [0, 20], ls=":", c="grey", label="chance")
    ax.set(xlabel="share of area flagged (%)", ylabel="share of incidents caught (%)", xlim=(0, 20), ylim=(0, None),
           title=f"Hit-rate curve, mean of {len(report['weeks'])} weeks")
    plain_numbers(ax)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    paths["curve"] = out_dir / "report_hit_rate_curve.png"
    savefig_atomically(fig, paths["curve"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    labels = report["coverages"]
    order = list(report["models"])  # positions in a fixed order; drawn greys first
    width = 0.8 / len(order)
    for name, style in styles.items():
        s = report["models"][name]["summary"]
        means = [s[f"pai@{c}"]["mean"] for c in labels]
        lo = [s[f"pai@{c}"]["ci95"][0] for c in labels]
        hi = [s[f"pai@{c}"]["ci95"][1] for c in labels]
        x = np.arange(len(labels)) + (order.index(name) - (len(order) - 1) / 2) * width
        bold = style["zorder"] == 3
        ax.errorbar(x, means, yerr=[np.subtract(means, lo), np.subtract(hi, means)], fmt="o", ms=5 if bold else 3,
                    capsize=2, elinewidth=1.6 if bold else 0.8, color=style["color"], zorder=style["zorder"],
                    label=style["label"])
    if limit.get("available"):
        for i, c in enumerate(labels):
            ax.hlines(limit["summary"][f"pai@{c}"]["mean"], i - 0.45, i + 0.45, colors="black", linestyles="--",
                      lw=1.4, zorder=4, label=limit_label if i == 0 else None)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set(xlabel="share of area flagged", ylabel="PAI (mean, 95% bootstrap interval)", title="PAI at each coverage",
           ylim=(0, None))
    plain_numbers(ax, x=False)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["pai"] = out_dir / "report_pai_intervals.png"
    savefig_atomically(fig, paths["pai"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    top = 0.0
    for name, style in styles.items():
        cal = pd.DataFrame(report["models"][name]["calibration"])
        ax.plot(cal["forecast"], cal["observed"], marker="o", ms=4 if style["zorder"] == 3 else 2, **style)
        top = max(top, cal["forecast"].max(), cal["observed"].max())
    ax.plot([0, top], [0, top], ls=":", c="grey", label="forecast = recorded")
    # symlog spreads the low deciles out; linear up to a tenth of the top decile
    linthresh = max(top / 10, 1e-3)
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_yscale("symlog", linthresh=linthresh)
    ticks = [t for t in (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if t <= top * 1.1]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    plain_numbers(ax)
    ax.set(xlim=(0, top * 1.1), ylim=(0, top * 1.1), xlabel="mean forecast per cell-week (risk decile)",
           ylabel="mean recorded per cell-week", title="Calibration by risk decile")
    ax.legend(fontsize=8)
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


def summary_rows(report: dict, with_limit: bool = True) -> pd.DataFrame:
    """One row per model of the report's headline figures, best PAI@1% first, each with its share of the headroom
    closed (NaN where there is none); the clairvoyant limit's row first when it is available (`with_limit`)."""
    share = (report.get("headroom") or {}).get("share") or {}

    def row(m: dict, closed: float | None) -> dict:
        s = m["summary"]
        return {"PAI@1%": s["pai@1%"]["mean"], "PAI@1% lo": s["pai@1%"]["ci95"][0],
                "PAI@1% hi": s["pai@1%"]["ci95"][1], "PAI@5%": s["pai@5%"]["mean"],
                "PEI@1%": s["pei@1%"]["mean"], "PEI*@1%": s["pei*@1%"]["mean"],
                "deviance": s["poisson_deviance"]["mean"], "stability@1%": m["rank_stability@1%"],
                "headroom closed": np.nan if closed is None else closed}

    rows = {name: row(m, share.get(name)) for name, m in report["models"].items()}
    table = pd.DataFrame(rows).T.sort_values("PAI@1%", ascending=False)
    limit = report.get("limit") or {}
    if with_limit and limit.get("available"):
        table = pd.concat([pd.DataFrame({LIMIT_NAME: row(limit, None)}).T, table])
    return table


def _cell(column: str, value: float) -> str:
    if pd.isna(value):
        return ""
    if column == "headroom closed":
        return f"{value:.0%}"
    return f"{value:.4f}" if column == "deviance" else f"{value:.2f}" if column.startswith("PAI") else f"{value:.3f}"


def render_html(report: dict, plots: dict[str, Path], title: str) -> str:
    """The accuracy report as one HTML page (template training/templates/accuracy.html.j2)."""
    table = summary_rows(report)
    columns = [c for c in table.columns if c not in ("PAI@1% lo", "PAI@1% hi")]
    best, reference = report.get("best_baseline"), report.get("reference")
    summary, classes = [], []
    for name, row in table.iterrows():
        label = {LIMIT_NAME: f"{LIMIT_NAME} ({LIMIT_LABEL})", reference: f"{name} (reference model)",
                 best: f"{name} (best baseline)"}.get(name, name)
        pai = f"{_cell('PAI@1%', row['PAI@1%'])} [{_cell('PAI', row['PAI@1% lo'])}, {_cell('PAI', row['PAI@1% hi'])}]"
        summary.append([label, pai, *(_cell(c, row[c]) for c in columns[1:])])
        classes.append({LIMIT_NAME: "limit", reference: "ref", best: "best"}.get(name, ""))
    # the verdict's pairs (its reference: LightGBM, else the best model), with the deviance difference where known
    pairs = (report.get("verdict") or {}).get("pairs", [])
    compared = (report.get("verdict") or {}).get("reference") or ""
    deviance = {o: p["poisson_deviance"]["difference"] for o, p in report.get("paired", {}).items()
                } if compared == reference else {}
    paired_rows = [[p["other"], p["relation"], f"{p['difference']:+.2f} [{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]",
                    f"{p['weeks_better']}/{p['weeks']}",
                    f"{deviance[p['other']]:+.4f}" if p["other"] in deviance else ""] for p in pairs] or None
    weeks = report.get("weeks", [])
    verdict_sentences = (report.get("verdict") or {}).get("sentences", [])
    headroom_sentence = (report.get("headroom") or {}).get("sentence", "")
    selection = (report.get("selection") or {}).get("sentences", [])  # what auto chose (training/selection.py)
    return render("accuracy.html.j2", title=title, note=NOTE, n_weeks=len(weeks), selection=selection,
                  first_week=weeks[0] if weeks else "", last_week=weeks[-1] if weeks else "",
                  warnings=report.get("warnings", []), verdict=verdict_sentences, headroom=headroom_sentence,
                  limit_note=(report.get("limit") or {}).get("note", "") if (report.get("limit") or {}).get(
                      "available") else "",
                  summary_head=["model", "PAI@1% [95%]", *columns[1:]], summary_rows=summary,
                  summary_classes=classes, reference=compared, paired_rows=paired_rows,
                  plots={k: p.name for k, p in plots.items()})
