"""Per-cell reasons: the features that raise each cell's forecast most, as sentences a shift commander can read.

The contributions are LightGBM's own per-prediction TreeSHAP values (`pred_contrib`), so the reasons are exactly the
model's arithmetic, not a second model's guess. Each feature carries a sentence template (features/registry.py
`Feature.reason`) that is filled with the cell's value of that feature.
"""

from __future__ import annotations

import math
import re

import numpy as np

from hotspot.features.panel import Panel


def _number(value: float) -> dict[str, str]:
    """The placeholders a reason template may use, for one value."""
    return {"count": f"{int(round(value)):,}", "rate": f"{value:.2f}", "pct": f"{100 * value:.0f}",
            "dist": f"{value:,.0f}", "value": f"{value:,.4g}"}


def sentence(panel: Panel, feature: str, value: float) -> str:
    """The reason sentence for `feature` at `value` (its description and value when it has no template)."""
    template = panel.feature_reasons.get(feature) or ""
    if not math.isfinite(value):
        return f"{panel.feature_descriptions.get(feature, feature)}: no record yet"
    if not template:
        unit = panel.feature_units.get(feature, "")
        return f"{panel.feature_descriptions.get(feature, feature)}: {value:,.4g}{' ' + unit if unit else ''}"
    return template.format(**_number(value))


def concept(feature: str) -> str:
    """Features that differ only by a window, half-life or bandwidth say the same thing to a reader (count_w4,
    count_w8; ewm_hl8, ewm_hl52): they form one concept, whose contribution is the sum of theirs."""
    return re.sub(r"\d+(\.\d+)?", "#", feature)


def _says_nothing(panel: Panel, feature: str, value: float) -> bool:
    """A zero count or share cannot be read as raising a risk ("0 incidents here"), so it is not given as one."""
    return value == 0 and panel.feature_units.get(feature, "") in ("incidents", "share", "features")


def cell_reasons(model, known: Panel, top: int = 3) -> tuple[list[list[str]], list[list[dict]]]:
    """For every cell, up to `top` sentences on what raises its risk most, and the same as records.

    Contributions are summed over the features of one concept (see `concept`); each concept is told by its
    feature with the largest contribution in that cell. Records give the concept's features, the told feature's
    value, the contribution to log risk and factor = exp(contribution) (x2 = doubles the risk against the
    model's average cell). Concepts that lower the risk are not reasons; a cell nothing raises gets none.

    `model` is a fitted forecaster with `contributions(panel)` (C, F) and `feature_names_`; `known` is the panel
    as known when the forecast period starts (its X_next is what the model sees).
    """
    contrib = np.asarray(model.contributions(known), dtype=np.float64)
    names = list(model.feature_names_)
    position = {n: i for i, n in enumerate(known.feature_names)}
    values = known.X_next[:, [position[n] for n in names]].astype(np.float64)
    keys = sorted({concept(n) for n in names})
    group = np.array([keys.index(concept(n)) for n in names])
    members = [np.flatnonzero(group == g) for g in range(len(keys))]
    by_concept = np.zeros((contrib.shape[0], len(keys)))
    np.add.at(by_concept.T, group, contrib.T)
    order = np.argsort(-by_concept, axis=1, kind="stable")
    sentences, records = [], []
    for c in range(contrib.shape[0]):
        cell_sentences, cell_records = [], []
        for g in order[c]:
            amount = by_concept[c, g]
            if amount <= 0 or len(cell_sentences) == top:
                break
            f = members[g][np.argmax(contrib[c, members[g]])]
            value = values[c, f]
            if _says_nothing(known, names[f], value):
                continue
            cell_sentences.append(sentence(known, names[f], value))
            cell_records.append({"feature": names[f], "features": [names[m] for m in members[g]],
                                 "value": None if not math.isfinite(value) else round(value, 4),
                                 "contribution": round(float(amount), 4), "factor": round(math.exp(amount), 3)})
        sentences.append(cell_sentences)
        records.append(cell_records)
    return sentences, records
