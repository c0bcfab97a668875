"""Per-cell reasons: the kinds of evidence that raise each cell's forecast most, as sentences a shift commander reads.

The contributions are LightGBM's own per-prediction TreeSHAP values (`pred_contrib`), so the reasons are exactly the
model's arithmetic, not a second model's guess; a count baseline's are its forecast's log ratio to the mean cell, on
the count it reads (`Forecaster.explain`), and a blend's its parts' weighted by their share of each cell.
Features are grouped by the kind of evidence they carry (KINDS, one
table keyed by feature family): every count of the cell's own past (windows, weighted means, trend, same weeks last
year) is one kind, told in one sentence, whose contribution is the sum of theirs. A kind is told by its own teller
with the cell's real values ("about 3 incidents a week here, steady over the last year"); a kind whose values say
nothing in that cell (no incident nearby, a zero share) is not given as a reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from hotspot.features.families import FAMILIES, slug
from hotspot.features.panel import Panel

# a reason must raise the risk by at least this factor (x1.05 = 5% above the model's average cell) to be told
MIN_FACTOR = 1.05
DAYS_IN = {"day": 1.0, "week": 7.0, "month": 365.25 / 12}


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


def _says_nothing(panel: Panel, feature: str, value: float) -> bool:
    """A missing value, or a zero count, share or number of days, cannot be read as raising a risk ("0 incidents
    here"), so it is not given as one."""
    return not math.isfinite(value) or (
        value == 0 and panel.feature_units.get(feature, "") in ("incidents", "share", "features", "days"))


def about(x: float) -> str:
    """A rate as a reader says it: whole numbers from 3 up, halves below ('about 1.5'), thousands separated."""
    return f"{round(x):,}" if x >= 3 else f"{round(x * 2) / 2:g}"


def counted(n: float | str, noun: str) -> str:
    """'no incidents', '1 incident', '3 incidents', '1 Robbery incident' (the noun is plural)."""
    text = n if isinstance(n, str) else f"{int(round(n)):,}" if round(n) else "no"
    one = text.rsplit(" ", 1)[-1] == "1"
    return f"{text} {noun[:-1] if one and noun.endswith('s') else noun}"


# --- what the tellers see -----------------------------------------------------------------------------------------


class Facts:
    """The known panel's own record, summed once for all cells: what the tellers quote."""

    def __init__(self, panel: Panel):
        self.panel = panel
        starts = panel.period_starts
        if len(starts) >= 2:
            step = (starts[1:] - starts[:-1]).median() / np.timedelta64(1, "D")
        elif starts.freq is not None:  # the first period (nothing recorded before it): the index's own frequency
            step = ((starts[0] + starts.freq) - starts[0]) / np.timedelta64(1, "D")
        else:
            step = 7.0  # one period and no frequency: the pipeline's default, weeks
        self.days_per_period = float(step)
        self.periods_per_year = max(1, int(round(365.25 / self.days_per_period)))
        self.period_word = {52: "week", 53: "week", 12: "month", 365: "day", 366: "day"}.get(
            self.periods_per_year, "period")
        self.target_sum = cache(self._target_sum)
        self.all_sum = cache(self._all_sum)
        self.average = cache(self._average)

    def last(self, w: int) -> str:
        """'the last week' or 'the last 4 weeks'."""
        return f"the last {self.period_word}" if w == 1 else f"the last {w} {self.period_word}s"

    def _target_sum(self, w: int) -> np.ndarray:
        """Target incidents per cell over the last `w` observed periods (the count_w feature of the next period)."""
        return self.panel.target[-w:].sum(axis=0) if w else np.zeros(self.panel.grid.n_cells)

    def _average(self, feature: str) -> float:
        """The feature's mean over the study area's cells in the forecast period."""
        column = self.panel.X_next[:, self.panel.feature_names.index(feature)]
        return float(np.nanmean(column)) if np.isfinite(column).any() else math.nan

    def _all_sum(self, w: int) -> np.ndarray:
        """Incidents of any offence per cell over the last `w` observed periods."""
        return self.panel.counts[-w:].sum(axis=(0, 2)) if w else np.zeros(self.panel.grid.n_cells)


@dataclass
class Evidence:
    """One kind of evidence in one cell: its features, strongest contribution in the cell first, and their values."""

    facts: Facts
    cell: int
    features: list[str]
    values: dict[str, float] = field(default_factory=dict)


Told = tuple[str, dict[str, float]]  # the sentence and the values it quotes (by feature name)


# --- the tellers: one sentence per kind, from the cell's real values ----------------------------------------------


def tell_history(ev: Evidence) -> Told | None:
    """Level and direction of the cell's own counts: over the last year, and the last 4 weeks against it."""
    facts, panel = ev.facts, ev.facts.panel
    n_year = min(facts.periods_per_year, panel.n_periods)
    short = min(max(1, round(28 / facts.days_per_period)), n_year)
    year = float(facts.target_sum(n_year)[ev.cell])
    recent = float(facts.target_sum(short)[ev.cell])
    if year == 0:  # nothing recorded in the last year: the model's history terms say nothing a reader can use
        return None
    noun = panel.target_noun
    span = "the last year" if n_year >= facts.periods_per_year else facts.last(n_year)
    per_day = year / (n_year * facts.days_per_period)
    expected = per_day * short * facts.days_per_period
    rising = recent >= 1.5 * expected and recent - expected >= 2
    falling = recent <= 0.5 * expected and expected - recent >= 2
    units = [u for u, days in DAYS_IN.items() if days >= 0.9 * facts.days_per_period]
    unit = next((u for u in units if per_day * DAYS_IN[u] >= 0.95), None)
    quoted = {f"count_w{short}": recent, f"count_w{n_year}": year}
    if unit is None:  # under one a month: the year's count itself
        text = f"{counted(year, noun)} here in {span}"
        if rising:
            text += f", {recent:,.0f} of them in {facts.last(short)}"
        return text, quoted
    rate = f"about {about(per_day * DAYS_IN[unit])}"
    if rising or falling:
        return (f"{'rising' if rising else 'falling'}: {counted(recent, noun)} in {facts.last(short)} against "
                f"{rate} a {unit} over {span}"), quoted
    return f"{counted(rate, noun)} a {unit} here, steady over {span}", quoted


def tell_offence_mix(ev: Evidence) -> Told | None:
    """The offence group that raises the risk most, as its share of the cell's incidents over its window."""
    facts = ev.facts
    by_slug = {slug(g): g for g in facts.panel.groups}
    for name in ev.features:
        match = re.fullmatch(r"count_w(\d+)_(.+)", name)
        value = ev.values[name]
        if not match or match.group(2) not in by_slug or not value > 0:
            continue
        w, group = int(match.group(1)), by_slug[match.group(2)]
        total = float(facts.all_sum(w)[ev.cell])
        if value >= total:
            text = (f"the one incident here in {facts.last(w)} was {group}" if total == 1
                    else f"all {total:,.0f} incidents here in {facts.last(w)} were {group}")
        else:
            text = (f"{value:,.0f} of the {total:,.0f} incidents here in {facts.last(w)} "
                    f"{'was' if value == 1 else 'were'} {group}")
        return text, {name: value}
    return None


def tell_nearby(ev: Evidence) -> Told | None:
    """The count of recent incidents around the cell that raises the risk most (rings, near repeat); a near-repeat
    count that is only the cell's own incidents would restate its history and is passed over."""
    panel = ev.facts.panel
    for name in ev.features:
        value = ev.values[name]
        if "{count}" not in panel.feature_reasons.get(name, "") or _says_nothing(panel, name, value):
            continue
        repeat = re.fullmatch(r"near_repeat_w(\d+)", name)
        if repeat and value <= ev.facts.all_sum(int(repeat.group(1)))[ev.cell]:
            continue
        times = value / ev.facts.average(name) if ev.facts.average(name) > 0 else math.nan
        text = sentence(panel, name, value)
        if times >= 1.5:  # before a closing remark in brackets, if the template has one
            body, bracket = re.fullmatch(r"(.*?)((?: \(.*\))?)", text).groups()
            text = f"{body}, {about(times)} times the area's average{bracket}"
        return text, {name: value}
    return None


def tell_strongest(ev: Evidence) -> Told | None:
    """The feature of the kind that raises the risk most and whose value says something, in its own sentence."""
    panel = ev.facts.panel
    for name in ev.features:
        value = ev.values[name]
        if not _says_nothing(panel, name, value):
            return sentence(panel, name, value), {name: value}
    return None


def context_layer(panel: Panel, feature: str) -> str:
    """The context layer a feature comes from (its description starts with the layer's name)."""
    return panel.feature_descriptions.get(feature, feature).split(":", 1)[0]


# --- the one table of kinds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    families: tuple[str, ...]  # the feature families whose features are this kind of evidence
    tell: Callable[[Evidence], Told | None]
    # one reason per part (context: one per layer, a school and a transit stop being different evidence)
    part: Callable[[Panel, str], str] | None = None


KINDS: tuple[Kind, ...] = (
    Kind("history", ("temporal",), tell_history),
    Kind("offence_mix", ("offense_groups",), tell_offence_mix),
    Kind("nearby", ("spatial", "near_repeat"), tell_nearby),
    Kind("time_of_day", ("time_of_day",), tell_strongest),
    Kind("premises", ("premises",), tell_strongest),
    Kind("context", ("context",), tell_strongest, part=context_layer),
    Kind("calendar", ("calendar",), tell_strongest),
)
KIND_OF_FAMILY: dict[str, Kind] = {fam: kind for kind in KINDS for fam in kind.families}
if set(FAMILIES) - set(KIND_OF_FAMILY):  # a new family must say what kind of evidence it is before it ships
    raise RuntimeError(f"feature families {sorted(set(FAMILIES) - set(KIND_OF_FAMILY))} have no kind of evidence in "
                       "training.reasons.KINDS")


def kind_of(panel: Panel, feature: str) -> tuple[str, str]:
    """The kind of evidence a feature carries, and its part ('' unless the kind is told per part)."""
    family = panel.feature_families.get(feature)
    if family not in KIND_OF_FAMILY:
        raise KeyError(f"feature {feature!r} (family {family!r}) has no kind of evidence in training.reasons.KINDS")
    kind = KIND_OF_FAMILY[family]
    return kind.name, kind.part(panel, feature) if kind.part else ""


def cell_reasons(model, known: Panel, top: int = 3,
                 min_factor: float = MIN_FACTOR) -> tuple[list[list[str]], list[list[dict]]]:
    """For every cell, up to `top` sentences on what raises its risk most, one per kind of evidence, and records.

    Contributions are summed over the features of one kind (and part); the kinds are told in order of that sum
    while it raises the risk by at least `min_factor`. Records give the kind (and `layer` for context), its
    features, its strongest feature and that feature's value, the values the sentence quotes, the contribution to
    log risk and factor = exp(contribution) (x2 = doubles the risk against the model's average cell). A cell nothing
    raises gets none.

    `model` is a fitted forecaster whose `explain(panel)` gives (feature names, (C, F) contributions) (LightGBM:
    its TreeSHAP values; a count baseline: its log ratio on the count it reads; a blend: its parts' by their
    shares); `known` is the panel as known when the forecast period starts (its X_next is what the model sees).
    A model that cannot explain gives every cell no reasons.
    """
    explained = model.explain(known)
    if explained is None:
        return [[] for _ in range(known.grid.n_cells)], [[] for _ in range(known.grid.n_cells)]
    names = list(explained[0])
    contrib = np.asarray(explained[1], dtype=np.float64)
    position = {n: i for i, n in enumerate(known.feature_names)}
    values = known.X_next[:, [position[n] for n in names]].astype(np.float64)
    units = [kind_of(known, n) for n in names]
    keys = sorted(set(units), key=units.index)
    group = np.array([keys.index(u) for u in units])
    members = [np.flatnonzero(group == g) for g in range(len(keys))]
    by_kind = np.zeros((contrib.shape[0], len(keys)))
    np.add.at(by_kind.T, group, contrib.T)
    order = np.argsort(-by_kind, axis=1, kind="stable")
    tellers = {k.name: k.tell for k in KINDS}
    floor = math.log(min_factor)
    facts = Facts(known)
    sentences, records = [], []
    for c in range(contrib.shape[0]):
        cell_sentences, cell_records = [], []
        for g in order[c]:
            amount = by_kind[c, g]
            if amount <= 0 or amount < floor or len(cell_sentences) == top:
                break
            strongest = members[g][np.argsort(-contrib[c, members[g]], kind="stable")]
            told = tellers[keys[g][0]](Evidence(facts, c, [names[f] for f in strongest],
                                                {names[f]: values[c, f] for f in strongest}))
            if told is None:
                continue
            text, quoted = told
            value = values[c, strongest[0]]
            record = {"kind": keys[g][0], "feature": names[strongest[0]],
                      "features": [names[m] for m in members[g]],
                      "value": None if not math.isfinite(value) else round(value, 4),
                      "values": {k: round(float(v), 4) for k, v in quoted.items()},
                      "contribution": round(float(amount), 4), "factor": round(math.exp(amount), 3)}
            if keys[g][1]:
                record["layer"] = keys[g][1]
            cell_sentences.append(text)
            cell_records.append(record)
        sentences.append(cell_sentences)
        records.append(cell_records)
    return sentences, records
