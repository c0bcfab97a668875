"""Forecasters behind one interface: LightGBM (default) and the baselines every result is compared with."""

from models.base import Forecaster
from models.lightgbm import LightGBMForecaster
from models.naive import EWMCounts, HistoryCounts, RecentCounts

__all__ = ["Forecaster", "LightGBMForecaster", "RecentCounts", "HistoryCounts", "EWMCounts"]
