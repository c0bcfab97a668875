"""Training, tuning, backtesting, metrics, audits, reports and MLflow bookkeeping."""
