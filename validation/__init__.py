"""Replay engine, coverage tests, capital-efficiency metrics, studies and the CLI."""

from . import coverage
from .engine import Backtest, BacktestResult
from .metrics import METRICS, Metric, compute_metrics

__all__ = ["Backtest", "BacktestResult", "coverage", "METRICS", "Metric", "compute_metrics"]
