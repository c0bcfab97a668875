"""Forecasters behind one interface: LightGBM (default) and the baselines every result is compared with."""

from hotspot.models.base import Forecaster
from hotspot.models.gbm import LightGBMForecaster
from hotspot.models.kde import KernelDensity, ProspectiveHotspots
from hotspot.models.naive import EWMCounts, FlatRate, HistoryCounts, RecentCounts
from hotspot.models.rtm import RiskTerrain
from hotspot.models.sepp import SEPP

__all__ = ["Forecaster", "LightGBMForecaster", "RecentCounts", "HistoryCounts", "EWMCounts", "FlatRate",
           "KernelDensity", "ProspectiveHotspots", "SEPP", "RiskTerrain"]
