"""The fairness audit's measurements, per demographic group and backtest week, for the model and the baselines.

Definitions (one each, used by the report and the CLI):
- flagged: the top `coverage` share of cells by risk each week; when the boundary cuts through tied cells they share
  the remaining slots by expectation (as in training/metrics.py), so every figure below is an expected value;
- per group (a cell counts for its dominant group; residents are apportioned, see training/fairness.py):
  flag share = the group's share of the flagged cells; flagged population share = its share of the residents of
  flagged cells; flag rate = share of its cells flagged (fairlearn MetricFrame, per week); population flag rate =
  share of its residents living in flagged cells; disparate impact = flag rate / the reference group's, with the
  0.8-1.25 band; hit rate = share of its recorded incidents in flagged cells; PAI = hit rate / flag rate;
  calibration = recorded / forecast incidents in its cells;
- pooled over weeks (ratios of sums); 95% intervals by percentile bootstrap over weeks (scipy, via
  training/evaluation/stats.py), the same resampled weeks for every figure of a model;
- persistence: how many backtest weeks each cell is among the flagged (ties broken by cell order).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hotspot.features.config import FairnessConfig
from hotspot.features.errors import InputError
from hotspot.training.audit.fairness import CellDemography, CellGroups
from hotspot.training.audit.flags import NO_REFERENCE_FLAGS, Forecasts, forecasts_from_predictions, top_k
from hotspot.training.evaluation.metrics import flag_weights, hit_rate_at, n_flagged, pai_at
from hotspot.training.evaluation.stats import bootstrap_interval, bootstrap_mean, calibration

BAND = (0.8, 1.25)
NOTE = ("Recorded incidents are policing data, not ground truth: they depend on where residents report and where "
        "police look. Group shares of recorded incidents, hit rates and calibration describe recorded crime, and a "
        "forecast that follows past recording can repeat its patterns; the feedback-loop simulation and the "
        "reporting-rate sensitivity below measure what that can do.")


def _intervals(fns: dict, weekly: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, list[dict]]:
    """Each figure of `fns` (a function of the weekly arrays summed over weeks, groups last) with its 95% interval;
    every figure on the same resampled weeks (one bootstrap, one seed)."""
    keys = list(weekly)

    def statistic(*arrays, axis=-1):  # scipy hands each array (groups, resamples, weeks) and wants resamples last
        sums = {k: np.moveaxis(a.sum(axis=axis), 0, -1) for k, a in zip(keys, arrays)}
        return np.stack([np.moveaxis(np.asarray(fn(sums), dtype=float), 0, -1) for fn in fns.values()])

    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = {name: np.asarray(fn({k: v.sum(0) for k, v in weekly.items()}), dtype=float)
                  for name, fn in fns.items()}
        if len(next(iter(weekly.values()))) < 2:  # scipy needs two weeks; one week resamples to itself
            lo = hi = np.stack([np.where(np.isfinite(v), v, np.nan) for v in values.values()])
        else:
            lo, hi = bootstrap_interval(tuple(weekly.values()), statistic, reps, seed)
    return {name: [{"value": float(v), "ci95": [float(a), float(b)]} for v, a, b in zip(value, lo[i], hi[i])]
            for i, (name, value) in enumerate(values.items())}


def _status(ratio: float, is_reference: bool, cells: int, flagged: float, reference_flagged: float) -> str:
    if is_reference:
        return "reference"
    if cells == 0:
        return "no cells"
    if flagged == 0 and reference_flagged == 0:
        return "neither group flagged"
    if flagged == 0:
        return "never flagged (below band)"
    if reference_flagged == 0:
        return NO_REFERENCE_FLAGS  # the ratio is to half a flag (the floor), so it is a lower bound
    if not np.isfinite(ratio):
        return "no interval"
    return "within band" if BAND[0] <= ratio <= BAND[1] else ("below band" if ratio < BAND[0] else "above band")


def floored_rates(flagged: np.ndarray, cell_weeks: np.ndarray) -> np.ndarray:
    """Flag rates whose numerator is at least half a flagged cell-week: the floor that keeps a ratio to a group never
    flagged finite (a lower bound on it) instead of infinite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(flagged, 0.5) / cell_weeks


def largest_ratio(rates: np.ndarray, floors: np.ndarray) -> tuple[float, bool]:
    """The largest ratio between two groups' flag rates, the smallest rate floored at half a flag; and whether the
    floor was needed (the ratio is then a lower bound)."""
    ok = np.isfinite(floors)
    if not ok.any():
        return float("nan"), False
    lowest = np.maximum(rates[ok], floors[ok])
    return float(rates[ok].max() / lowest.min()), bool((rates[ok] < floors[ok]).any())


def weekly_by_group(f: np.ndarray, observed: np.ndarray, groups: CellGroups) -> pd.DataFrame:
    """Flag rate and hit rate per group and week, via fairlearn's MetricFrame (rows: group, week)."""
    from fairlearn.metrics import MetricFrame

    W, C = f.shape
    names = np.array(["(none)", *groups.labels], dtype=object)[groups.label + 1]
    features = pd.DataFrame({"group": np.tile(names, W), "week": np.repeat(np.arange(W), C)})
    frame = MetricFrame(metrics={"flag_rate": lambda y, p: float(np.mean(p)),
                                 "hit_rate": lambda y, p: float(np.sum(y * p) / np.sum(y)) if np.sum(y) else np.nan},
                        y_true=observed.ravel(), y_pred=f.ravel(), sensitive_features=features)
    return frame.by_group.drop(index="(none)", level="group", errors="ignore")


def group_figures(f: np.ndarray, top: np.ndarray, risk: np.ndarray, observed: np.ndarray, groups: CellGroups,
                  reps: int, seed: int = 0) -> dict:
    """Every per-group figure of one model under one group definition (see the module docstring)."""
    L = groups.onehot()
    W = f.shape[0]
    n_cells, pop = L.sum(0), groups.population.sum(0)
    ref = groups.reference_index
    weekly = {"flagged": f @ L, "incidents": observed @ L, "hits": (f * observed) @ L, "expected": risk @ L}
    if groups.has_population:
        weekly["flagged_pop"] = f @ groups.population
    weekly.update({f"{k}_all": v.sum(1, keepdims=True) for k, v in list(weekly.items())})
    rate = lambda s: s["flagged"] / (W * n_cells)  # noqa: E731
    pop_rate = lambda s: s["flagged_pop"] / (W * pop)  # noqa: E731
    # the reference: one group, its rate floored at half a flag; or (place names) all grouped cells together
    if ref is None:
        ref_rate = lambda s: s["flagged_all"] / (W * n_cells.sum())  # noqa: E731
        ref_pop_rate = ref_rate
    else:
        ref_rate = lambda s: np.maximum(s["flagged"][..., ref:ref + 1], 0.5) / (W * n_cells[ref])  # noqa: E731
        ref_pop_rate = lambda s: pop_rate(s)[..., ref:ref + 1]  # noqa: E731
    fns = {
        "flag_share": lambda s: s["flagged"] / s["flagged_all"],
        "incident_share": lambda s: s["incidents"] / s["incidents_all"],
        "flag_rate": rate,
        "disparate_impact": lambda s: rate(s) / ref_rate(s),
        "hit_rate": lambda s: s["hits"] / s["incidents"],
        "pai": lambda s: (s["hits"] / s["incidents"]) / rate(s),
        "calibration": lambda s: s["incidents"] / s["expected"],
    }
    if groups.has_population:
        fns.update({"flagged_population_share": lambda s: s["flagged_pop"] / s["flagged_pop_all"],
                    "population_flag_rate": pop_rate,
                    "population_disparate_impact": lambda s: pop_rate(s) / ref_pop_rate(s)})
    figures = _intervals(fns, weekly, reps, seed)
    weeks_flagged = top.sum(0)
    by_week = weekly_by_group(f, observed, groups)
    flagged = weekly["flagged"].sum(0)
    ref_flagged = float(flagged.sum() if ref is None else flagged[ref])
    out = {}
    for g, label in enumerate(groups.labels):
        member = groups.label == g
        ever = member & (weeks_flagged > 0)
        row = {k: v[g] for k, v in figures.items()}
        row["flagged_cell_weeks"] = float(flagged[g])
        for key in ("disparate_impact", "population_disparate_impact"):
            if key in row:
                row[key]["status"] = _status(row[key]["value"], g == ref, int(n_cells[g]), float(flagged[g]),
                                             ref_flagged)
        flagged_cell_weeks = int(top[:, member].sum())
        row["persistence"] = {
            "cells_ever_flagged": int(ever.sum()),
            "mean_weeks_flagged": float(weeks_flagged[ever].mean()) if ever.any() else float("nan"),
            "share_of_flags_in_cells_flagged_half_the_weeks_or_more": (
                float(top[:, member & (weeks_flagged * 2 >= W)].sum() / flagged_cell_weeks)
                if flagged_cell_weeks else float("nan")),
            "cells_by_weeks_flagged": np.bincount(weeks_flagged[member], minlength=W + 1)[1:].tolist(),
        }
        group_weeks = by_week.xs(label, level="group") if label in by_week.index.get_level_values(0) else None
        row["weekly"] = {
            "flag_share": (weekly["flagged"][:, g] / weekly["flagged_all"][:, 0]).tolist(),
            "flag_rate": group_weeks["flag_rate"].tolist() if group_weeks is not None else [],
            "hit_rate": group_weeks["hit_rate"].tolist() if group_weeks is not None else [],
        }
        cells = np.flatnonzero(member)
        row["calibration_by_decile"] = calibration(
            [("", cells, risk[w, cells], observed[w, cells]) for w in range(W)]).to_dict(orient="records") \
            if len(cells) >= 10 else []
        out[label] = row
    rates = np.array([out[lab]["flag_rate"]["value"] for lab in groups.labels])
    with np.errstate(divide="ignore", invalid="ignore"):
        largest, floored = largest_ratio(rates, np.where(n_cells > 0, 0.5 / (W * n_cells), np.nan))
    return {"groups": out, "reference": groups.reference_label, "largest_flag_rate_ratio": largest,
            "largest_flag_rate_ratio_floored": floored}


def _names(labels: list[str], most: int = 12) -> str:
    """'a, b and c', or the first `most` and how many more."""
    quoted = [f"'{x}'" for x in labels]
    if len(quoted) > most:
        return ", ".join(quoted[:most]) + f" and {len(quoted) - most} more"
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def definition_summary(groups: CellGroups, k: int, small_cells: int, small_share: float) -> tuple[dict, list[str]]:
    """Size of each group (cells, residents, shares) and warnings about small ones, merged into one line."""
    n_cells = groups.onehot().sum(0)
    pop = groups.population.sum(0)
    C = len(groups.label)
    info, small = {}, []
    for g, label in enumerate(groups.labels):
        share = pop[g] / pop.sum() if pop.sum() else None
        chance = k * n_cells[g] / C
        info[label] = {"describe": groups.describe.get(label, ""), "cells": int(n_cells[g]),
                       "cell_share": float(n_cells[g] / max(n_cells.sum(), 1)),
                       "population": float(pop[g]) if share is not None else None,
                       "population_share": float(share) if share is not None else None,
                       "flagged_per_week_at_chance": float(chance)}
        if n_cells[g] < small_cells or (share is not None and share < small_share) or chance < 5:
            small.append(label)
    warns = []
    if small:
        what = ("a group" if len(small) == 1 else f"all {len(small)} groups" if len(small) == len(groups.labels)
                else f"{len(small)} of {len(groups.labels)} groups")
        named = "" if len(small) == len(groups.labels) else f" ({_names(small)})"
        warns.append(f"{groups.name}: {what}{named} "
                     f"{'is' if len(small) == 1 else 'are'} small (under {small_cells} cells"
                     + (f", under {small_share:.0%} of residents" if groups.has_population else "")
                     + ", or under 5 flagged cells a week at chance): their figures move in large steps and their "
                     "intervals are wide")
    if groups.left_out:
        warns.append(f"{groups.name}: no cell of the study area falls in {_names(list(groups.left_out))}; "
                     f"{'it is' if len(groups.left_out) == 1 else 'they are'} left out")
    unassigned = int((groups.label < 0).sum())
    if unassigned:
        warns.append(f"{groups.name}: {unassigned} cells lie in no group (no polygon or no value) and are left out "
                     "of this definition's group figures")
    return {"kind": groups.kind, "reference": groups.reference_label, "groups": info, "unassigned_cells": unassigned,
            "left_out": list(groups.left_out), "has_population": groups.has_population}, warns


def residents_figures(f: np.ndarray, demography: CellDemography, reps: int, seed: int = 0) -> dict:
    """For each share column: its residents' share of the population of flagged cells against their city share."""
    out = {}
    for column, res in demography.residents.items():
        weekly = {"flagged_res": (f @ res)[:, None], "flagged_pop": (f @ demography.population)[:, None]}
        share = float(res.sum() / demography.population.sum())
        flagged = _intervals({"share": lambda s: s["flagged_res"] / s["flagged_pop"]}, weekly, reps, seed)["share"][0]
        out[column] = {"population_share": share, "flagged_population_share": flagged,
                       "representation_ratio": flagged["value"] / share if share else float("nan")}
    return out


def accuracy_figures(risk: np.ndarray, observed: np.ndarray, coverage: float, reps: int) -> dict:
    """PAI and hit rate at the coverage, each a mean over weeks with its bootstrap interval."""
    pai = [pai_at(r, o, coverage) for r, o in zip(risk, observed)]
    hit = [hit_rate_at(r, o, coverage) for r, o in zip(risk, observed)]
    (pm, plo, phi), (hm, hlo, hhi) = bootstrap_mean(pai, reps), bootstrap_mean(hit, reps)
    return {"pai": {"value": pm, "ci95": [plo, phi]}, "hit_rate": {"value": hm, "ci95": [hlo, hhi]}}


def audit_forecasts(forecasts: Forecasts, demography: CellDemography, coverage: float, reps: int = 1000,
                    small_cells: int = 30, small_share: float = 0.02, seed: int = 0) -> dict:
    """Every per-group figure, for every model and group definition, with its bootstrap interval."""
    M, W, C = forecasts.risk.shape
    k = n_flagged(C, coverage)
    result = {"coverage": coverage, "flagged_cells_per_week": k, "n_cells": C, "weeks": forecasts.weeks,
              "models": forecasts.models, "band": list(BAND), "definitions": {}, "residents": {}, "accuracy": {},
              "warnings": []}
    if W < 10:
        result["warnings"].append(f"only {W} weeks: intervals are wide")
    for groups in demography.groups:
        info, warns = definition_summary(groups, k, small_cells, small_share)
        result["warnings"] += warns
        result["definitions"][groups.name] = {**info, "models": {}}
    unflagged_reference = {g.name: [] for g in demography.groups}
    for m, model in enumerate(forecasts.models):
        risk = forecasts.risk[m]
        f, top = flag_weights(risk, k), top_k(risk, k)
        result["accuracy"][model] = accuracy_figures(risk, forecasts.observed, coverage, reps)
        if demography.residents:
            result["residents"][model] = residents_figures(f, demography, reps, seed)
        for groups in demography.groups:
            figs = group_figures(f, top, risk, forecasts.observed, groups, reps, seed)
            result["definitions"][groups.name]["models"][model] = figs
            if groups.reference is not None and figs["groups"][groups.reference]["flagged_cell_weeks"] == 0:
                unflagged_reference[groups.name].append(model)
    for groups in demography.groups:
        models = unflagged_reference[groups.name]
        if models:
            result["warnings"].append(
                f"{groups.name}: {NO_REFERENCE_FLAGS} '{groups.reference}' for {', '.join(models)}: ratios to it "
                "divide by half a flagged cell-week, so they are lower bounds; a larger reference group (set "
                "`reference` in the config) gives ratios that are estimates")
    return result



def build_audit(cfg, panel, predictions: pd.DataFrame, demography: CellDemography, ref, spec: dict,
                provenance: dict, fairness: FairnessConfig | None = None) -> dict:
    """The whole audit of a backtest (the first model in `predictions` is the audited one, the rest baselines):
    group figures, reporting-rate sensitivity, trade-off, feedback-loop simulation, inputs and model card."""
    from hotspot.training.audit.feedback import simulate_feedback
    from hotspot.training.audit.model_card import inputs_declaration, model_card
    from hotspot.training.audit.parity import tradeoff_curve
    from hotspot.training.audit.sensitivity import reporting_sensitivity
    from hotspot.training.audit.summary import audit_summary

    fc = fairness or cfg.fairness or FairnessConfig()
    forecasts = forecasts_from_predictions(predictions, panel.grid.cell_id)
    subject = f"{cfg.area.name}, {cfg.product.label}" if cfg.has_products else cfg.area.name
    audit = {"title": f"Fairness audit: {subject}, {ref.label}", "note": NOTE, "product": cfg.product.name,
             **audit_forecasts(forecasts, demography, fc.coverage, fc.bootstrap_reps, fc.small_group_cells,
                               fc.small_group_population_share)}
    audit.update(audited_model=forecasts.models[0], primary=fc.primary_name,
                 demography=demography.summary(),
                 model_version={"name": ref.name, "version": ref.version, "run_id": ref.run_id,
                                "data_fingerprint": ref.data_fingerprint})
    primary = demography.definition(audit["primary"])
    for key, mapping in (("fairness.reporting_rates", fc.reporting_rates),
                         ("fairness.simulation.true_rate_multipliers", fc.simulation.true_rate_multipliers)):
        unknown = sorted(set(mapping) - set(primary.labels))
        if unknown:
            raise InputError(f"{key}: {unknown} are not groups of '{primary.name}' ({_names(list(primary.labels))})")
    k = audit["flagged_cells_per_week"]
    audit["sensitivity"] = reporting_sensitivity(forecasts, primary, k, fc.reporting_rates,
                                                 fc.sensitivity_relative_rates)
    audit["tradeoff"] = tradeoff_curve(forecasts, primary, k, fc.tradeoff_steps)
    sim = fc.simulation
    first = panel.period_index(forecasts.weeks[0])
    history = panel.target[max(0, first - sim.history_weeks): first]
    audit["feedback"] = simulate_feedback(history, primary, k, sim, sim.halflife_weeks or cfg.backtest.ewm_halflife,
                                          fc.reporting_rates)
    audit["inputs"] = inputs_declaration(cfg, panel, spec.get("features"))
    audit["model_card"] = model_card(cfg, ref, spec, audit["inputs"], audit, provenance)
    audit["settings"] = {"bootstrap_reps": fc.bootstrap_reps, "simulation_rounds": sim.rounds,
                         "simulation_replications": sim.replications, "groups_from": fc.groups_from}
    audit["summary"] = audit_summary(audit)
    return audit
