"""What an auditor reads first: which inputs fed the model (demographics excluded or not) and its model card."""

from __future__ import annotations

from hotspot.features.config import StudyConfig
from hotspot.features.panel import Panel
from hotspot.training.audit.flags import NO_REFERENCE_FLAGS


def inputs_declaration(cfg: StudyConfig, panel: Panel, features: list[str] | None) -> dict:
    """The families, features and layers the audited model reads, and whether any demographic layer is among them."""
    used = list(features or panel.feature_names)
    families = sorted({panel.feature_families.get(f, "unknown") for f in used})
    areas = cfg.fairness.areas if cfg.fairness and cfg.fairness.groups_from == "areas" else None
    layers = [{"name": layer.name, "path": str(layer.path), "kind": "polygons" if layer.attributes else "points",
               "used_by_model": any(f.startswith(f"ctx_{layer.name}_") for f in used),
               "is_fairness_areas": areas is not None and layer.path == areas} for layer in cfg.context]
    demographics_in = any(layer["is_fairness_areas"] and layer["used_by_model"] for layer in layers)
    statement = (f"The model reads {len(used)} features from the families {', '.join(families)}, built from the "
                 f"recorded incidents ({cfg.incidents.path.name})"
                 + (f" and the context layers {', '.join(x['name'] for x in layers if x['used_by_model'])}"
                    if any(x["used_by_model"] for x in layers) else "") + ". ")
    statement += ("Demographic columns WERE model inputs (features.demographics_as_features = true); this audit "
                  "cannot separate their effect." if demographics_in else
                  (f"The demographic areas ({areas.name}) were used only by this audit, never as model features."
                   if areas else "No demographic data is used, by the model or by this audit."))
    return {"feature_families": families, "n_features": len(used), "features": used,
            "incidents": {"source": cfg.incidents.name, "path": str(cfg.incidents.path),
                          "target_offenses": cfg.model.target_offenses or list(panel.groups)},
            "context_layers": layers, "fairness_areas": str(areas) if areas else None,
            "demographics_as_features": cfg.features.demographics_as_features,
            "demographics_excluded": not demographics_in, "statement": statement}


def model_card(cfg: StudyConfig, ref, spec: dict, inputs: dict, audit: dict, provenance: dict) -> dict:
    """A model card (Mitchell et al. 2019) in plain fields, filled from the registry and this audit."""
    audited = audit["audited_model"]
    accuracy = {m: a["pai"] for m, a in audit["accuracy"].items()}
    primary = audit["primary"]
    figures = audit["definitions"][primary]["models"][audited]
    groups = sorted(figures["groups"].items(), key=lambda lg: -(lg[1]["disparate_impact"]["value"] or 0))
    above = [f"{label} ({g['disparate_impact']['value']:.2f})" for label, g in groups
             if g["disparate_impact"]["status"] in ("above band", NO_REFERENCE_FLAGS)]
    below = [f"{label} ({g['disparate_impact']['value']:.2f})" for label, g in groups
             if g["disparate_impact"]["status"] == "below band"]
    never = [label for label, g in groups if g["disparate_impact"]["status"] == "never flagged (below band)"]
    feedback = audit.get("feedback", {}).get("arms", {})
    return {
        "model": {"name": ref.name, "version": ref.version, "run_id": ref.run_id, "objective": spec.get("objective"),
                  "train_first_period": spec.get("train_first_period"),
                  "train_last_period": spec.get("train_last_period"), "hyper_parameters": spec.get("params", {})},
        "provenance": provenance,
        "intended_use": (f"Rank the {audit['n_cells']:,} grid cells of {cfg.area.name} by the expected number of "
                         f"recorded {_counted(cfg)} next week, so that people can decide where to direct attention "
                         "(patrol planning, problem-solving, prevention), beside their own knowledge."),
        "out_of_scope": ["decisions about individuals", "judging a neighbourhood or its residents",
                         "measuring true crime: the model forecasts recorded incidents",
                         "use without the baselines and this audit beside it"],
        "inputs": inputs["statement"],
        "evaluation": {"weeks": [audit["weeks"][0], audit["weeks"][-1]], "n_weeks": len(audit["weeks"]),
                       "coverage": audit["coverage"], "pai (mean, 95% interval)": accuracy},
        "fairness": {"definition": primary, "reference": audit["definitions"][primary]["reference"],
                     "largest_flag_rate_ratio": figures["largest_flag_rate_ratio"],
                     "largest_flag_rate_ratio_floored": figures["largest_flag_rate_ratio_floored"],
                     "groups_above_0.8-1.25": above, "groups_below_0.8-1.25": below,
                     "groups_never_flagged": f"{len(never)} of {len(groups)}",
                     "feedback_distance_end": {arm: a["distance_end"] for arm, a in feedback.items()}},
        "caveats": [
            "Recorded incidents are policing data, not ground truth: where residents report and where police look "
            "shape them, and a model trained on them can repeat those patterns (see the feedback-loop simulation).",
            audit["demography"].get("statement") or "",
            *(["Residents are spread evenly within each area polygon (area-weighted); cells straddling areas mix "
               "them."] if audit["demography"].get("groups_from") == "areas" else []),
            "Group figures for small groups move in large steps; read them with their intervals.",
            "The simulation and the reporting-rate sensitivity rest on stated assumptions (rates, detection); they "
            "show what can happen, not what does.",
        ],
        "warnings": audit.get("warnings", []),
    }


def _counted(cfg) -> str:
    """What the product's label counts, for the intended-use sentence: incidents, or "X incidents"."""
    offences = cfg.model.target_offenses
    return "incidents" if not offences else f"{', '.join(offences)} incidents"
