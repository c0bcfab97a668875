"""What the audit found, in a few sentences an auditor reads first (the `summary` of audit.json and of the page).

For the primary group definition: which groups the audited model flags above or below the 0.8-1.25 band of flag-rate
ratios (with 95% intervals), against what the count baselines do on the same weeks; then accuracy beside the best
baseline, the feedback-loop simulation and the reporting-rate sensitivity, one line each.
"""

from __future__ import annotations

import math

from hotspot.training.audit.flags import NO_REFERENCE_FLAGS

ABOVE = ("above band", NO_REFERENCE_FLAGS)
BELOW = ("below band", "never flagged (below band)")
SHOWN = 8  # groups named per line; the tables below hold the rest


def _num(x: float | None, pct: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:.1f}%" if pct else f"{x:.2f}"


def _ratio(g: dict) -> str:
    di = g["disparate_impact"]
    a, b = di["ci95"]
    floor = " at least, no flags in the reference" if di["status"] == NO_REFERENCE_FLAGS else ""
    return f"{_num(di['value'])} [{_num(a)}, {_num(b)}]{floor}"


def _sides(groups: dict) -> dict[str, list[str]]:
    sides = {"above": [], "below": [], "within": [], "never": []}
    for label, g in groups.items():
        status = g["disparate_impact"]["status"]
        if status in ABOVE:
            sides["above"].append(label)
        elif status == "never flagged (below band)":
            sides["never"].append(label)
        elif status in BELOW:
            sides["below"].append(label)
        elif status == "within band":
            sides["within"].append(label)
    return sides


def _listing(labels: list[str], groups: dict, band: tuple[float, float]) -> str:
    ranked = sorted(labels, key=lambda lab: -(groups[lab]["disparate_impact"]["value"] or 0))

    def reaches(lab: str) -> str:
        lo, hi = groups[lab]["disparate_impact"]["ci95"]
        inside = lo is not None and hi is not None and lo <= band[1] and hi >= band[0]
        return ", interval reaching into the band" if inside else ""

    text = "; ".join(f"{lab} {_ratio(groups[lab])} ({_num(groups[lab]['flag_share']['value'], True)} of flags, "
                     f"{_num(groups[lab]['incident_share']['value'], True)} of recorded incidents{reaches(lab)})"
                     for lab in ranked[:SHOWN])
    return text + (f"; and {len(ranked) - SHOWN} more (table below)" if len(ranked) > SHOWN else "")


def audit_summary(audit: dict) -> dict:
    """The findings of a built audit: one statement per topic, and per model the groups on each side of the band."""
    primary, audited, models = audit["primary"], audit["audited_model"], audit["models"]
    d = audit["definitions"][primary]
    ref = d["reference"]
    lo, hi = audit["band"]
    groups = d["models"][audited]["groups"]
    by_model = {m: _sides(d["models"][m]["groups"]) for m in models}
    own = by_model[audited]
    n = len(groups)
    lines = [f"{audited} flags the top {audit['coverage']:.1%} of {audit['n_cells']:,} cells "
             f"({audit['flagged_cells_per_week']} a week) in {len(audit['weeks'])} backtest weeks "
             f"{audit['weeks'][0]} to {audit['weeks'][-1]}. By {primary} group, against {ref}: "
             f"{len(own['above'])} of {n} flagged above the {lo:g}-{hi:g} band of flag-rate ratios, "
             f"{len(own['within'])} within, {len(own['below'])} below and {len(own['never'])} never flagged."]
    if own["above"]:
        lines.append("Above the band [95% interval]: " + _listing(own["above"], groups, (lo, hi)) + ".")
    if own["below"]:
        lines.append("Below the band: " + _listing(own["below"], groups, (lo, hi)) + ".")
    if own["never"]:
        never = sorted(own["never"], key=lambda lab: -d["groups"][lab]["cells"])
        shown = ", ".join(never[:SHOWN]) + (f" and {len(never) - SHOWN} more" if len(never) > SHOWN else "")
        lines.append(f"Never flagged: {shown}.")
    baselines = [m for m in models if m != audited]
    if baselines:
        parts = []
        for m in baselines:
            same = len(set(by_model[m]["above"]) & set(own["above"]))
            parts.append(f"{m} {len(by_model[m]['above'])} above ({same} of them also above for {audited}), "
                         f"{len(by_model[m]['below']) + len(by_model[m]['never'])} below or never flagged")
        everywhere = [g for g in own["above"] if all(g in by_model[m]["above"] for m in baselines)]
        lines.append("The count baselines on the same weeks and cells: " + "; ".join(parts) + ". "
                     + (f"{len(everywhere)} of the {len(own['above'])} groups the model flags above the band are "
                        "above it for every baseline too: flags there follow the recorded incidents, not something "
                        "the model adds." if own["above"] else ""))
    acc = audit["accuracy"]
    if baselines:
        best = max(baselines, key=lambda m: acc[m]["pai"]["value"] or 0)
        p, b = acc[audited]["pai"], acc[best]["pai"]
        lines.append(f"Accuracy: PAI {_num(p['value'])} [{_num(p['ci95'][0])}, {_num(p['ci95'][1])}] for {audited} "
                     f"against {_num(b['value'])} [{_num(b['ci95'][0])}, {_num(b['ci95'][1])}] for the best baseline "
                     f"({best}).")
    fb = audit.get("feedback")
    if fb:
        arms = fb["arms"]
        plain = arms["no mitigation"]
        best_arm = min(arms, key=lambda a: arms[a]["distance_end"])
        lines.append(f"Feedback loop ({len(plain['distance_by_round']) - 1} simulated weeks, patrols following the "
                     f"forecast): the flags' distance from where the true rates would put them goes from "
                     f"{plain['distance_start']:.2f} to {plain['distance_end']:.2f} without mitigation; "
                     f"'{best_arm}' ends closest ({arms[best_arm]['distance_end']:.2f}).")
    sens = audit.get("sensitivity")
    if sens:
        worst_name, worst = max(((name, sc["models"][audited]) for name, sc in sens["scenarios"].items()),
                                key=lambda item: item[1]["cells_moved_per_week"])
        if worst["cells_moved_per_week"] > 0:
            lines.append(f"Reporting rates: under '{worst_name}' (the scenario that moves the most), "
                         f"{worst['cells_moved_per_week']:.1f} of {audit['flagged_cells_per_week']} flagged cells a "
                         f"week ({worst['share_of_flagged_moved']:.0%}) would move.")
    return {"groups_used": audit["demography"].get("statement", ""), "definition": primary, "reference": ref,
            "band": [lo, hi], "lines": lines,
            "by_model": by_model}
