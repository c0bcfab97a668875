"""The fairness audit report: audit.json, audit.html and PNG plots (matplotlib), in the style of the accuracy report.

In the JSON, figures that are not finite (a ratio to a group never flagged) are written as null; each
disparate-impact figure carries a `status` saying why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hotspot.features.locking import locked, savefig_atomically, write_text_atomically
from hotspot.training.audit.run import BAND, NOTE
from hotspot.training.pages import render


def clean(value):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    savefig_atomically(fig, path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_audit(audit: dict, out_dir: Path) -> dict[str, Path]:
    """Draw the audit's figures (flag shares, disparate impact, hit rate, weekly, persistence, ...) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary, audited, models = audit["primary"], audit["audited_model"], audit["models"]
    definition = audit["definitions"][primary]
    labels = list(definition["groups"])
    x = np.arange(len(labels))
    paths = {}

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / (len(models) + 2)
    ax.bar(x - width * (len(models) + 1) / 2, [definition["groups"][g]["population_share"] * 100 for g in labels],
           width, color="#bbbbbb", label="share of residents")
    inc = definition["models"][audited]["groups"]
    ax.bar(x - width * (len(models) - 1) / 2, [inc[g]["incident_share"]["value"] * 100 for g in labels], width,
           color="#777777", label="share of recorded incidents")
    for i, m in enumerate(models):
        groups = definition["models"][m]["groups"]
        vals = [groups[g]["flag_share"]["value"] * 100 for g in labels]
        err = [[v - groups[g]["flag_share"]["ci95"][0] * 100 for v, g in zip(vals, labels)],
               [groups[g]["flag_share"]["ci95"][1] * 100 - v for v, g in zip(vals, labels)]]
        ax.bar(x - width * (len(models) - 1) / 2 + width * (i + 1), vals, width, yerr=np.nan_to_num(err), capsize=2,
               label=f"flagged cells: {m}")
    ax.set_xticks(x, labels, rotation=20)
    ax.set(ylabel="%", title=f"{primary}: share of flagged cells against residents and recorded incidents")
    ax.legend(fontsize=7)
    paths["shares"] = _save(fig, out_dir / "audit_flag_shares.png")

    names = list(audit["definitions"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        d = audit["definitions"][name]
        glabels = list(d["groups"])
        for i, m in enumerate(models):
            groups = d["models"][m]["groups"]
            vals = np.array([groups[g]["disparate_impact"]["value"] for g in glabels], dtype=float)
            lo = np.array([groups[g]["disparate_impact"]["ci95"][0] for g in glabels], dtype=float)
            hi = np.array([groups[g]["disparate_impact"]["ci95"][1] for g in glabels], dtype=float)
            pos = np.arange(len(glabels)) + (i - (len(models) - 1) / 2) * 0.8 / len(models)
            ok = np.isfinite(vals) & (vals > 0)
            lo, hi = np.where(np.isfinite(lo), np.maximum(lo, 0.01), 0.01), np.where(np.isfinite(hi), hi, 100.0)
            bar = ax.errorbar(pos[ok], vals[ok], yerr=[vals[ok] - np.minimum(lo[ok], vals[ok]),
                                                       np.maximum(hi[ok], vals[ok]) - vals[ok]],
                              fmt="o", ms=4, capsize=2, label=m)
            # a group never flagged (ratio 0) or a reference never flagged (ratio infinite), drawn at the edges
            ax.plot(pos[vals == 0], np.full((vals == 0).sum(), 0.01), "v", color=bar[0].get_color())
            ax.plot(pos[np.isposinf(vals)], np.full(np.isposinf(vals).sum(), 100.0), "^", color=bar[0].get_color())
        ax.axhspan(*BAND, color="green", alpha=0.12, label="0.8-1.25")
        ax.set_yscale("log")
        ax.set_ylim(0.008, 120)
        ax.set_xticks(np.arange(len(glabels)), glabels, rotation=30, fontsize=7)
        ax.set(title=f"{name} (ref. {d['reference']})", ylabel="flag-rate ratio to the reference")
    axes[0][0].legend(fontsize=7)
    paths["disparate_impact"] = _save(fig, out_dir / "audit_disparate_impact.png")

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, m in enumerate(models):
        groups = definition["models"][m]["groups"]
        vals = np.array([groups[g]["hit_rate"]["value"] for g in labels], dtype=float) * 100
        lo = np.array([groups[g]["hit_rate"]["ci95"][0] for g in labels], dtype=float) * 100
        hi = np.array([groups[g]["hit_rate"]["ci95"][1] for g in labels], dtype=float) * 100
        pos = x + (i - (len(models) - 1) / 2) * 0.8 / len(models)
        ax.errorbar(pos, vals, yerr=np.nan_to_num([vals - lo, hi - vals]), fmt="o", ms=4, capsize=2, label=m)
    ax.set_xticks(x, labels, rotation=20)
    ax.set(ylabel="% of the group's recorded incidents in flagged cells", title=f"{primary}: hit rate within groups")
    ax.legend(fontsize=7)
    paths["hit_rate"] = _save(fig, out_dir / "audit_hit_rate_by_group.png")

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    weeks = audit["weeks"]
    for g in labels:
        ax.plot(range(len(weeks)), np.array(definition["models"][audited]["groups"][g]["weekly"]["flag_share"]) * 100,
                marker=".", label=g)
    ax.set_xticks(range(0, len(weeks), max(1, len(weeks) // 6)), weeks[:: max(1, len(weeks) // 6)], fontsize=7)
    ax.set(ylabel="% of flagged cells", title=f"{audited}: flag share by {primary} group, week by week")
    ax.legend(fontsize=7)
    paths["weekly"] = _save(fig, out_dir / "audit_weekly_flag_share.png")

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for g in labels:
        counts = definition["models"][audited]["groups"][g]["persistence"]["cells_by_weeks_flagged"]
        ax.plot(range(1, len(counts) + 1), counts, marker=".", label=g)
    ax.set(xlabel="weeks flagged (of the audited weeks)", ylabel="cells", yscale="symlog",
           title=f"{audited}: persistence of flags by {primary} group")
    ax.legend(fontsize=7)
    paths["persistence"] = _save(fig, out_dir / "audit_persistence.png")

    if "feedback" in audit:
        fb = audit["feedback"]
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        for arm, a in fb["arms"].items():
            ax.plot(a["distance_by_round"], label=arm)
        ax.set(xlabel="round (week)", ylabel="distance from the true-rate allocation (TVD)",
               title=f"Feedback-loop simulation by {fb['definition']} group")
        ax.legend(fontsize=7)
        paths["feedback"] = _save(fig, out_dir / "audit_feedback_loop.png")

    if "tradeoff" in audit:
        fig, ax = plt.subplots(figsize=(6.5, 4.4))
        for m, points in audit["tradeoff"]["models"].items():
            ax.plot([p["smallest_to_largest_flag_rate"] for p in points], [p["pai"] for p in points], marker="o",
                    label=m)
        ax.axvline(BAND[0], ls="--", c="grey", label="0.8 (four-fifths)")
        ax.set(xlabel="smallest / largest group flag rate (1 = parity)", ylabel=f"PAI at {audit['coverage']:.1%}",
               title=f"Trade-off under a parity constraint ({audit['tradeoff']['definition']})")
        ax.legend(fontsize=7)
        paths["tradeoff"] = _save(fig, out_dir / "audit_tradeoff.png")
    return paths


def _fmt(fig: dict, pct: bool = False) -> str:
    v, (lo, hi) = fig["value"], fig["ci95"]
    def f(z) -> str:
        return "-" if z is None or not math.isfinite(z) else (f"{z * 100:.1f}%" if pct else f"{z:.2f}")

    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def render_html(audit: dict, plots: dict[str, Path]) -> str:
    """The audit as one HTML page (template training/templates/audit.html.j2)."""
    definitions = []
    for name, d in audit["definitions"].items():
        models = []
        for m, figs in d["models"].items():
            rows, classes = [], []
            for g, r in figs["groups"].items():
                rows.append([g, _fmt(r["incident_share"], True), _fmt(r["flag_share"], True),
                             _fmt(r["flagged_population_share"], True), _fmt(r["flag_rate"], True),
                             _fmt(r["disparate_impact"]), r["disparate_impact"]["status"], _fmt(r["hit_rate"], True),
                             _fmt(r["pai"]), _fmt(r["calibration"]),
                             f"{r['persistence']['cells_ever_flagged']} / "
                             f"{r['persistence']['mean_weeks_flagged']:.1f}"])
                classes.append("" if r["disparate_impact"]["status"] in ("reference", "within band") else "out")
            models.append({"name": m, "largest": f"{figs['largest_flag_rate_ratio']:.2f}", "rows": rows,
                           "classes": classes})
        definitions.append({"name": name, "kind": d["kind"], "reference": d["reference"], "models": models,
                            "group_rows": [[g, i["describe"], i["cells"], f"{i['population_share']:.1%}"]
                                           for g, i in d["groups"].items()]})
    residents_rows = [[m, col, f"{r['population_share']:.1%}", _fmt(r["flagged_population_share"], True),
                       f"{r['representation_ratio']:.2f}"] for m, cols in (audit.get("residents") or {}).items()
                      for col, r in cols.items()]
    sensitivity = feedback = tradeoff = None
    if "sensitivity" in audit:
        s = audit["sensitivity"]
        sensitivity = {"definition": s["definition"], "method": s["method"], "rows": [
            [name, m, f"{r['cells_moved_per_week']:.1f}", f"{r['share_of_flagged_moved']:.1%}",
             ", ".join(f"{g} {v:+.1f}" for g, v in r["net_cells_per_week"].items())]
            for name, sc in s["scenarios"].items() for m, r in sc["models"].items()]}
    if "feedback" in audit:
        fb = audit["feedback"]
        feedback = {"definition": fb["definition"], "method": fb["method"], "model": fb["model"], "rows": [
            [arm, f"{a['distance_start']:.3f}", f"{a['distance_end']:.3f}", f"{a['overlap_with_true_top_end']:.1%}",
             ", ".join(f"{g} {v:+.1%}" for g, v in a["drift_end"].items())] for arm, a in fb["arms"].items()]}
    if "tradeoff" in audit:
        t = audit["tradeoff"]
        tradeoff = {"definition": t["definition"], "method": t["method"], "rows": [
            [m, f"{p['strength']:.2f}", f"{p['pai']:.2f}", f"{p['largest_flag_rate_ratio']:.2f}"]
            for m, pts in t["models"].items() for p in pts]}
    card = [(k, v if isinstance(v, str) else json.dumps(clean(v))) for k, v in audit["model_card"].items()]
    return render("audit.html.j2", title=audit["title"], note=NOTE, n_weeks=len(audit["weeks"]),
                  first_week=audit["weeks"][0], last_week=audit["weeks"][-1], coverage=f"{audit['coverage']:.1%}",
                  n_cells=f"{audit['n_cells']:,}", flagged_per_week=audit["flagged_cells_per_week"],
                  inputs=audit["inputs"]["statement"], warnings=audit.get("warnings", []),
                  accuracy_rows=[[m, _fmt(a["pai"]), _fmt(a["hit_rate"], True)] for m, a in audit["accuracy"].items()],
                  definitions=definitions, residents_rows=residents_rows, sensitivity=sensitivity,
                  feedback=feedback, tradeoff=tradeoff, model_card=card,
                  plots={k: p.name for k, p in plots.items()})


def write_audit(audit: dict, out_dir: Path) -> dict[str, Path]:
    """Write audit.json, audit.html and the PNG plots into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "audit.json", out_dir / "audit.html"
    with locked(json_path, what="writing the audit"):  # the page and its figures from one run, each file whole
        plots = plot_audit(audit, out_dir)
        write_text_atomically(json_path, json.dumps(clean(audit), indent=1, allow_nan=False))
        write_text_atomically(html_path, render_html(audit, plots))
    return {"audit_json": json_path, "audit_html": html_path, **{f"plot_{k}": v for k, v in plots.items()}}
