"""Evaluating forecasts: ranking metrics, paired comparisons and intervals, the backtest report and its plots."""
