"""Fitting and choosing models: backtests, ablation, tuning, promotion, the registry, MLflow tracking, forecasts and
their reasons; `evaluation/` scores them and `audit/` checks them for fairness."""
