"""Forecasters behind one interface: LightGBM (default) and the baselines every result is compared with."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see hotspot/__init__.py: no spinning OpenMP threads

from models.base import Forecaster
from models.lightgbm import LightGBMForecaster
from models.kde import KernelDensity, ProspectiveHotspots
from models.naive import EWMCounts, HistoryCounts, RecentCounts
from models.rtm import RiskTerrain
from models.sepp import SEPP

__all__ = ["Forecaster", "LightGBMForecaster", "RecentCounts", "HistoryCounts", "EWMCounts", "KernelDensity",
           "ProspectiveHotspots", "SEPP", "RiskTerrain"]
