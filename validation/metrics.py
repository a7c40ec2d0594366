"""Capital-efficiency and procyclicality metrics, one registry entry each.

Each :class:`Metric` takes the backtest rows of one (portfolio, model) pair —
a frame with ``margin``, ``loss`` and ``breach`` indexed by date — and returns
a number. Tables and reports are generated from :data:`METRICS`, so a new
metric is one entry plus its test.

Procyclicality measures follow the CPMI-IOSCO / ESMA EMIR RTS Art. 28 and the
CCP literature (Murphy, Vasios and Vause 2014, "An investigation into the
procyclicality of risk-based initial margin models"): the peak-to-trough
ratio of the margin and its largest n-day increase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Metric", "METRICS", "compute_metrics", "max_n_day_increase", "offset_benefit"]


@dataclass(frozen=True)
class Metric:
    """A named metric: ``func(rows) -> float`` with its unit and family."""

    key: str
    title: str
    func: Callable[[pd.DataFrame], float]
    unit: str
    family: str  # "coverage", "efficiency" or "procyclicality"


def max_n_day_increase(margin: pd.Series, n: int) -> float:
    r"""Largest relative increase over n observations: :math:`\max_t M_t / M_{t-n} - 1` (NaN if undefined)."""
    m = margin.to_numpy(float)
    if m.size <= n:
        return float("nan")
    prev, cur = m[:-n], m[n:]
    ok = prev > 0
    if not ok.any():
        return float("nan")
    return float(np.max(cur[ok] / prev[ok] - 1.0))


def _peak_to_trough(margin: pd.Series) -> float:
    m = margin.to_numpy(float)
    low = m.min()
    return float(m.max() / low) if low > 0 else float("inf")


def offset_benefit(rows: pd.DataFrame) -> float:
    r"""Average over dates of the book's margin over the sum of its legs' standalone margins.

    .. math:: \frac{1}{T}\sum_t \frac{M_t(\text{book})}{\sum_i M_t(\text{leg}_i)}

    1 = no offset (the book costs what its legs cost apart); 0.3 = the book needs 30% of the
    collateral of its legs margined one by one. Needs the ``standalone_margin`` column
    (``Backtest(..., standalone_legs=True)``); NaN without it, and dates whose legs need no
    margin are left out.
    """
    if "standalone_margin" not in rows:
        return float("nan")
    parts = rows["standalone_margin"].to_numpy(float)
    ok = np.isfinite(parts) & (parts > 0) & np.isfinite(rows["margin"].to_numpy(float))
    return float(np.mean(rows["margin"].to_numpy(float)[ok] / parts[ok])) if ok.any() else float("nan")


def _shortfall(rows: pd.DataFrame) -> pd.Series:
    return (rows["loss"] - rows["margin"])[rows["breach"]]


METRICS: tuple[Metric, ...] = (
    Metric("observations", "Observations", lambda r: float(len(r)), "days", "coverage"),
    Metric("breaches", "Breaches (loss > margin)", lambda r: float(r["breach"].sum()), "count", "coverage"),
    Metric("breach_rate", "Breach rate", lambda r: float(r["breach"].mean()), "fraction", "coverage"),
    Metric("mean_margin", "Average margin", lambda r: float(r["margin"].mean()), "quote ccy", "efficiency"),
    Metric("mean_positive_loss", "Average realised loss (losses only)",
           lambda r: float(r["loss"].clip(lower=0).mean()), "quote ccy", "efficiency"),
    Metric("margin_to_loss", "Average margin / average realised loss",
           lambda r: float(r["margin"].mean() / r["loss"].clip(lower=0).mean())
           if r["loss"].clip(lower=0).mean() > 0 else float("nan"), "ratio", "efficiency"),
    Metric("excess_collateral", "Average excess collateral, mean(max(margin - loss, 0))",
           lambda r: float((r["margin"] - r["loss"]).clip(lower=0).mean()), "quote ccy", "efficiency"),
    Metric("shortfall_total", "Total shortfall on breaches", lambda r: float(_shortfall(r).sum()),
           "quote ccy", "efficiency"),
    Metric("shortfall_max", "Largest shortfall on a breach",
           lambda r: float(_shortfall(r).max()) if r["breach"].any() else 0.0, "quote ccy", "efficiency"),
    Metric("shortfall_mean", "Average shortfall on breaches",
           lambda r: float(_shortfall(r).mean()) if r["breach"].any() else 0.0, "quote ccy", "efficiency"),
    Metric("offset_benefit", "Offset benefit: margin / sum of standalone leg margins (mean over dates)",
           offset_benefit, "ratio", "efficiency"),
    Metric("peak_to_trough", "Peak-to-trough margin ratio (max / min)", lambda r: _peak_to_trough(r["margin"]),
           "ratio", "procyclicality"),
    Metric("max_1d_increase", "Largest 1-day margin increase", lambda r: max_n_day_increase(r["margin"], 1),
           "fraction", "procyclicality"),
    Metric("max_5d_increase", "Largest 5-day margin increase", lambda r: max_n_day_increase(r["margin"], 5),
           "fraction", "procyclicality"),
    Metric("max_30d_increase", "Largest 30-day margin increase", lambda r: max_n_day_increase(r["margin"], 30),
           "fraction", "procyclicality"),
)


def compute_metrics(rows: pd.DataFrame, families: tuple[str, ...] | None = None) -> dict[str, float]:
    """Evaluate every registered metric (optionally of some families) on one pair's rows."""
    return {m.key: m.func(rows) for m in METRICS if families is None or m.family in families}
