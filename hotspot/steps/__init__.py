"""Each pipeline step as a function: run the packages' work, log it to MLflow, return what it made.

The CLI, the demo, MLproject and the notebook all call these, so every way in does the same thing. One module per
group of steps, in the order data flows: `data` (validate, ingest, features), `modelling` (train, tune, promote,
rollback, backtest, forecast), `audit`, `briefing` (the weekly briefing for command staff), and `partners` (trends,
intervention evaluation, exports); `common` holds what they share.
"""

from hotspot.steps.audit import audit_metrics, audit_step, demo_audit_step
from hotspot.steps.briefing import briefing_step
from hotspot.steps.common import (
    Prepared,
    feature_table,
    log_feature_table,
    prepare,
    reason_table,
    source_metrics,
    with_overrides,
)
from hotspot.steps.data import features_step, ingest_step, validate_step
from hotspot.steps.modelling import (
    backtest_step,
    forecast_step,
    model_forecast,
    model_from_params,
    plot_study,
    promote_step,
    rollback_step,
    train_step,
    tune_step,
)
from hotspot.steps.partners import export_step, intervention_step, trends_step
from hotspot.steps.publish import publish_step

__all__ = [
    "Prepared", "audit_metrics", "audit_step", "backtest_step", "briefing_step",
    "demo_audit_step", "feature_table",
    "features_step", "forecast_step", "model_forecast", "ingest_step", "intervention_step", "export_step",
    "log_feature_table",
    "model_from_params", "plot_study", "prepare", "promote_step", "publish_step", "reason_table", "rollback_step",
    "source_metrics", "train_step", "trends_step", "tune_step", "validate_step", "with_overrides",
]
