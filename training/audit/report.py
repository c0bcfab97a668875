"""The fairness audit report: audit.json, audit.html and PNG plots (matplotlib), in the style of the accuracy report.

The page opens with the summary and one merged list of warnings (both also in audit.json). A ratio to a group
never flagged is taken to half a flagged cell-week and shown as "at least"; in the JSON, any figure that is still
not finite is written as null, and each disparate-impact figure carries a `status` saying why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from hotspot.features.locking import locked, replace_atomically, savefig_atomically, write_text_atomically
from hotspot.training.audit.fairness import ALL_CELLS
from hotspot.training.audit.flags import NO_REFERENCE_FLAGS
from hotspot.training.audit.run import BAND, NOTE
from hotspot.training.pages import render

SHOWN_ROWS = 10  # scenarios of the reporting-rate sensitivity shown on the page (all are in audit.json)
MAX_PLOTTED = 12  # groups drawn in a plot; with more, those with the most recorded incidents


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


def _plotted(definition: dict, model: str) -> list[str]:
    """The groups a plot draws: all of them, or the MAX_PLOTTED with the most recorded incidents."""
    groups = definition["models"][model]["groups"]
    labels = list(definition["groups"])
    if len(labels) <= MAX_PLOTTED:
        return labels
    top = sorted(labels, key=lambda g: -(groups[g]["incident_share"]["value"] or 0))[:MAX_PLOTTED]
    return [g for g in labels if g in top]


def plot_audit(audit: dict, out_dir: Path) -> dict[str, Path]:
    """Draw the audit's figures (flag shares, disparate impact, hit rate, weekly, persistence, ...) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary, audited, models = audit["primary"], audit["audited_model"], audit["models"]
    definition = audit["definitions"][primary]
    labels = _plotted(definition, audited)
    some = f" ({len(labels)} of {len(definition['groups'])} groups, most recorded incidents)" \
        if len(labels) < len(definition["groups"]) else ""
    x = np.arange(len(labels))
    paths = {}

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / (len(models) + 2)
    if definition.get("has_population", True):
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
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="%", title=f"{primary}{some}: share of flagged cells against "
                             + ("residents and " if definition.get("has_population", True) else "")
                             + "recorded incidents")
    ax.legend(fontsize=7)
    paths["shares"] = _save(fig, out_dir / "audit_flag_shares.png")

    names = list(audit["definitions"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        d = audit["definitions"][name]
        glabels = _plotted(d, audited)
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
        ax.set_xticks(np.arange(len(glabels)), glabels, rotation=30, ha="right", fontsize=7)
        ax.set(title=f"{name} (ratio to {d['reference']})", ylabel="flag-rate ratio")
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
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="% of the group's recorded incidents in flagged cells", title=f"{primary}{some}: hit rate within "
                                                                                 "groups")
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


def _num(z, pct: bool = False, digits: int = 2) -> str:
    return "-" if z is None or not math.isfinite(z) else (f"{z * 100:.1f}%" if pct else f"{z:.{digits}f}")


def _fmt(fig: dict, pct: bool = False) -> str:
    v, (lo, hi) = fig["value"], fig["ci95"]
    if v is None or not math.isfinite(v):
        return "-"
    return f"{_num(v, pct)} [{_num(lo, pct)}, {_num(hi, pct)}]"


def _ratio_cell(fig: dict) -> str:
    if fig.get("status") == "reference":
        return "1 (reference)"
    text = _fmt(fig)
    return f"at least {text}" if fig.get("status") == NO_REFERENCE_FLAGS else text


def _largest(figs: dict) -> str:
    if figs.get("reference") == ALL_CELLS:  # place names: how far the most flagged area is above the whole area
        groups = figs["groups"]
        top = max(groups, key=lambda g: groups[g]["disparate_impact"]["value"] or 0)
        return f"highest flag-rate ratio to all cells {_fmt(groups[top]['disparate_impact'])} ({top})"
    value = _num(figs["largest_flag_rate_ratio"])
    if figs.get("largest_flag_rate_ratio_floored"):
        return (f"largest ratio between two groups' flag rates at least {value} (some group is never flagged; its "
                "flag rate is taken as half a flagged cell-week)")
    return f"largest ratio between two groups' flag rates {value}"


def _rounded(value) -> str:
    """A model-card value as text: numbers to 3 significant digits, lists joined, mappings as 'key: value'."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, (int, np.integer)):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (float, np.floating)):
        return "-" if not math.isfinite(value) else f"{value:.3g}"
    if isinstance(value, dict):
        if {"value", "ci95"} <= set(value):
            return _fmt(value)
        return "; ".join(f"{k}: {_rounded(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_rounded(v) for v in value) or "none"
    return str(value)


def card_sections(card: dict) -> list[dict]:
    """The model card as titled sections of (field, text) rows, nested mappings one row per key."""
    sections, plain = [], []
    for key, value in card.items():
        title = key.replace("_", " ")
        if isinstance(value, dict):
            sections.append({"title": title, "rows": [(k.replace("_", " "), _rounded(v)) for k, v in value.items()],
                             "bullets": []})
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            sections.append({"title": title, "rows": [], "bullets": value})
        else:
            plain.append((title, _rounded(value)))
    return ([{"title": "use", "rows": plain, "bullets": []}] if plain else []) + sections


def _group_rows(figs: dict, has_population: bool, collapse: bool) -> tuple[list, list, list]:
    """Table rows of one model (most flagged first) and their classes; with `collapse`, groups never flagged go to
    a short table of their own (the third list) instead of rows of zeros."""
    rows, classes, never = [], [], [[]] if collapse else []
    by_flags = sorted(figs["groups"].items(), key=lambda gr: -(gr[1]["flag_share"]["value"] or 0))
    for g, r in by_flags:  # most flagged first
        p = r["persistence"]
        mean = p["mean_weeks_flagged"]
        if never and r["disparate_impact"]["status"] == "never flagged (below band)":
            never.append([g, _fmt(r["incident_share"], True), _fmt(r["calibration"]),
                          f"{r['persistence']['cells_ever_flagged']}"])
            continue
        rows.append([g, _fmt(r["incident_share"], True), _fmt(r["flag_share"], True),
                     *([_fmt(r["flagged_population_share"], True)] if has_population else []),
                     _fmt(r["flag_rate"], True), _ratio_cell(r["disparate_impact"]), r["disparate_impact"]["status"],
                     _fmt(r["hit_rate"], True), _fmt(r["pai"]), _fmt(r["calibration"]),
                     f"{p['cells_ever_flagged']} / {_num(mean, digits=1)}"])
        classes.append("" if r["disparate_impact"]["status"] in ("reference", "within band") else "out")
    return rows, classes, never[1:]


def render_html(audit: dict, plots: dict[str, Path]) -> str:
    """The audit as one HTML page (template training/templates/audit.html.j2): the summary and warnings first."""
    definitions = []
    for name, d in audit["definitions"].items():
        has_pop = d.get("has_population", True)
        models = []
        for m, figs in d["models"].items():
            rows, classes, never = _group_rows(figs, has_pop, collapse=len(figs["groups"]) > MAX_PLOTTED)
            models.append({"name": m, "largest": _largest(figs), "rows": rows, "classes": classes, "never": never,
                           "audited": m == audit.get("audited_model", audit["models"][0])})
        head = ["group", "share of recorded incidents", "share of flags",
                *(["share of residents of flagged cells"] if has_pop else []), "flag rate",
                f"flag-rate ratio to {d['reference']}", "status", "hit rate", "PAI", "recorded / forecast",
                "cells ever flagged / mean weeks"]
        group_head = ["group", "definition", "cells", "share of cells", *(["share of residents"] if has_pop else [])]
        group_rows = [[g, i["describe"], i["cells"], _num(i["cell_share"], True),
                       *([_num(i["population_share"], True)] if has_pop else [])] for g, i in d["groups"].items()]
        definitions.append({"name": name, "kind": d["kind"], "reference": d["reference"], "models": models,
                            "head": head, "group_head": group_head, "group_rows": group_rows,
                            "left_out": d.get("left_out", [])})
    residents_rows = [[m, col, f"{r['population_share']:.1%}", _fmt(r["flagged_population_share"], True),
                       _num(r["representation_ratio"])] for m, cols in (audit.get("residents") or {}).items()
                      for col, r in cols.items()]
    audited = audit.get("audited_model", audit["models"][0])
    sensitivity = feedback = tradeoff = None
    if "sensitivity" in audit:
        s = audit["sensitivity"]
        ranked = sorted(((name, sc["models"][audited]) for name, sc in s["scenarios"].items()),
                        key=lambda item: -item[1]["cells_moved_per_week"])
        rows = [[name, f"{r['cells_moved_per_week']:.1f}", f"{r['share_of_flagged_moved']:.1%}",
                 ", ".join(f"{g} {v:+.1f}" for g, v in sorted(r["net_cells_per_week"].items(),
                                                               key=lambda gv: -abs(gv[1]))[:5] if abs(v) >= 0.05)
                 or "none"] for name, r in ranked[:SHOWN_ROWS]]
        sensitivity = {"definition": s["definition"], "method": s["method"], "rows": rows, "model": audited,
                       "shown": len(rows), "total": len(ranked)}
    if "feedback" in audit:
        fb = audit["feedback"]
        feedback = {"definition": fb["definition"], "method": fb["method"], "model": fb["model"], "rows": [
            [arm, f"{a['distance_start']:.3f}", f"{a['distance_end']:.3f}", f"{a['overlap_with_true_top_end']:.1%}",
             ", ".join(f"{g} {v:+.1%}" for g, v in sorted(a["drift_end"].items(), key=lambda gv: -abs(gv[1]))[:5]
                       if abs(v) >= 0.0005) or "none"]
            for arm, a in fb["arms"].items()]}
    if "tradeoff" in audit:
        t = audit["tradeoff"]
        tradeoff = {"definition": t["definition"], "method": t["method"], "rows": [
            [m, f"{p['strength']:.2f}", f"{p['pai']:.2f}",
             ("at least " if p.get("largest_flag_rate_ratio_floored") else "") + _num(p["largest_flag_rate_ratio"])]
            for m, pts in t["models"].items() for p in pts]}
    return render("audit.html.j2", title=audit["title"], note=NOTE, n_weeks=len(audit["weeks"]),
                  first_week=audit["weeks"][0], last_week=audit["weeks"][-1], coverage=f"{audit['coverage']:.1%}",
                  n_cells=f"{audit['n_cells']:,}", flagged_per_week=audit["flagged_cells_per_week"],
                  inputs=audit["inputs"]["statement"], warnings=audit.get("warnings", []),
                  summary=audit.get("summary"), settings=audit.get("settings"),
                  accuracy_rows=[[m, _fmt(a["pai"]), _fmt(a["hit_rate"], True)] for m, a in audit["accuracy"].items()],
                  definitions=definitions, residents_rows=residents_rows, sensitivity=sensitivity,
                  feedback=feedback, tradeoff=tradeoff, model_card=card_sections(audit["model_card"]),
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


def write_audit_data(predictions: pd.DataFrame, cell_groups: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """The audit's inputs beside its report, so anyone can recompute its figures: predictions.parquet (the audit's
    own backtest, the contract's columns, the audited model first) and cell_groups.csv (each cell's group under
    every definition)."""
    paths = {"audit_predictions": out_dir / "predictions.parquet", "audit_cell_groups": out_dir / "cell_groups.csv"}
    replace_atomically(paths["audit_predictions"], lambda tmp: predictions.to_parquet(tmp, index=False))
    replace_atomically(paths["audit_cell_groups"], lambda tmp: cell_groups.to_csv(tmp, index=False))
    return paths
