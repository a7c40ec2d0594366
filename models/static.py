"""Static (rule-based) margin models: flat rate, exchange leverage tiers, Deribit standard margin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from marginlab.datasets import DataError, MarketData

from .base import MarginModel, check_range, register
from .instruments import LINEAR, OPTION, Option, Position
from .revaluation import option_mark

__all__ = ["StaticMargin", "TieredMargin", "DeribitStandardMargin", "BINANCE_BTCUSDT_2021_TIERS"]


def _spot(market: MarketData, t, asset: str) -> float:
    s = float(market.price_array[market.loc_of(t), market.asset_index[asset]])
    if not np.isfinite(s):
        raise DataError(f"no {asset} price at {t}")
    return s


@register
@dataclass(frozen=True)
class StaticMargin(MarginModel):
    r"""Flat percentage of gross notional.

    .. math:: M_t = \sum_i r_{a(i)} |q_i| S_{a(i),t}

    for linear positions and short options (notional = |q| S, delta-blind); a
    long option's margin is its mark value (premium fully paid, the most it can
    lose). ``rate`` applies to every asset unless ``rates`` overrides it
    (e.g. ``{"ETH": 0.15}``). A crude benchmark: exchange "x% initial margin".
    """

    name: ClassVar[str] = "static"
    rate: float = 0.10
    rates: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range(self.name, "rate", self.rate, 0.0, 1.0, low_open=True)
        if not isinstance(self.rates, dict):
            raise ValueError(f"{self.name}: rates must be a mapping asset -> rate")
        for asset, r in self.rates.items():
            check_range(self.name, f"rates[{asset!r}]", r, 0.0, 1.0, low_open=True)

    def margin(self, state, positions: Sequence[Position], market: MarketData, t) -> float:
        """Gross-notional margin (see class docstring)."""
        total = 0.0
        for p in positions:
            s = _spot(market, t, p.instrument.asset)
            if isinstance(p.instrument, Option) and p.quantity > 0:
                total += p.quantity * _option_mark(p.instrument, market, t, s)
            else:
                total += self.rates.get(p.instrument.asset, self.rate) * abs(p.quantity) * s
        return float(total)


def _option_mark(option: Option, market: MarketData, t, spot: float) -> float:
    """Mark of one unit of ``option`` at ``t``: :func:`~marginlab.models.revaluation.option_mark`."""
    return option_mark(option, market, t, where=f"option {option.label}")


#: Binance USDT-margined BTCUSDT perpetual, 2021 leverage brackets:
#: (notional cap in USDT, maintenance margin rate).
BINANCE_BTCUSDT_2021_TIERS: tuple[tuple[float, float], ...] = (
    (50_000, 0.004), (250_000, 0.005), (1_000_000, 0.01), (10_000_000, 0.025), (20_000_000, 0.05),
    (50_000_000, 0.10), (100_000_000, 0.125), (200_000_000, 0.15), (300_000_000, 0.25), (500_000_000, 0.50),
)


@register
@dataclass(frozen=True)
class TieredMargin(MarginModel):
    r"""Exchange leverage brackets with cumulative maintenance amount.

    For a position of notional N = |q| S in bracket i (cap :math:`c_{i-1} < N \le c_i`)
    with rate :math:`r_i`, :math:`M = N r_i - A_i`, where the maintenance amount
    :math:`A_i = A_{i-1} + c_{i-1}(r_i - r_{i-1})`, :math:`A_1 = 0`, keeps the
    requirement continuous at every bracket edge (Binance "maintenance amount").
    Each linear position is bracketed by its own notional; notional above the last
    cap raises an error. Default: Binance BTCUSDT 2021 table
    (:data:`BINANCE_BTCUSDT_2021_TIERS`), used for every asset unless
    ``asset_tiers`` gives another table. Linear products only.
    """

    name: ClassVar[str] = "tiered"
    families: ClassVar[frozenset[str]] = frozenset({LINEAR})
    tiers: tuple[tuple[float, float], ...] = BINANCE_BTCUSDT_2021_TIERS
    asset_tiers: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, table in [("tiers", self.tiers)] + [(f"asset_tiers[{a!r}]", t) for a, t in self.asset_tiers.items()]:
            caps = [c for c, _ in table]
            rates = [r for _, r in table]
            if not table or any(c <= 0 for c in caps) or caps != sorted(caps) or len(set(caps)) != len(caps):
                raise ValueError(f"{self.name}: {key} must be a non-empty list of (cap, rate) with increasing "
                                 "positive caps")
            for r in rates:
                check_range(self.name, f"{key} rate", r, 0.0, 1.0, low_open=True)

    @staticmethod
    def requirement(notional: float, tiers: Sequence[tuple[float, float]]) -> float:
        """Maintenance requirement of one position of ``notional`` (>= 0) under ``tiers``."""
        amount, prev_cap, prev_rate = 0.0, 0.0, 0.0
        for cap, rate in tiers:
            amount += prev_cap * (rate - prev_rate)
            if notional <= cap:
                return notional * rate - amount
            prev_cap, prev_rate = cap, rate
        raise ValueError(f"tiered: notional {notional:,.0f} above the last bracket cap {prev_cap:,.0f}")

    def margin(self, state, positions: Sequence[Position], market: MarketData, t) -> float:
        """Sum over positions of the bracket requirement."""
        total = 0.0
        for p in positions:
            s = _spot(market, t, p.instrument.asset)
            table = self.asset_tiers.get(p.instrument.asset, self.tiers)
            total += self.requirement(abs(p.quantity) * s, table)
        return float(total)


@register
@dataclass(frozen=True)
class DeribitStandardMargin(MarginModel):
    r"""Deribit standard (non-portfolio) margin, initial or maintenance.

    * Futures and perpetuals (net size per currency, in units of the
      underlying): initial :math:`(2\% + 0.005\% \times size) \times N`,
      maintenance :math:`(1\% + 0.005\% \times size) \times N`, N the net notional.
      For assets other than BTC the size is the BTC-equivalent size
      (notional / BTC price), marginlab's extension of the BTC rule.
    * Short options, per unit: initial
      :math:`\max(0.15 - OTM/S, 0.10)\,S + mark`, maintenance
      :math:`0.075\,S + mark`, OTM the out-of-the-money amount.
    * Long options: fully paid; the margin counted is the mark value (the
      premium held, the most the position can lose).
    * Spot holdings are fully paid: margin 0 is required beyond the asset itself;
      their loss is counted against the linear rate as for a future
      (conservative reading, documented).

    Reference: Deribit Knowledge Base, "Inverse futures / options margin"
    (standard margin model), rates as of 2021 (the issue's specification).
    """

    name: ClassVar[str] = "deribit_standard"
    level: str = "initial"
    futures_base: float = 0.02
    futures_maintenance_base: float = 0.01
    futures_per_unit: float = 0.00005
    option_initial_max: float = 0.15
    option_initial_min: float = 0.10
    option_maintenance: float = 0.075

    def __post_init__(self) -> None:
        if self.level not in ("initial", "maintenance"):
            raise ValueError(f"{self.name}: level must be 'initial' or 'maintenance', got {self.level!r}")
        for f in ("futures_base", "futures_maintenance_base", "futures_per_unit", "option_initial_max",
                  "option_initial_min", "option_maintenance"):
            check_range(self.name, f, getattr(self, f), 0.0, 1.0)

    @staticmethod
    def _size_in_btc(asset: str, size: float, spot: float, market: MarketData, t) -> float:
        if asset == "BTC":
            return abs(size)
        btc = _spot(market, t, "BTC") if "BTC" in market.asset_index else float("nan")
        # Other assets: the size add-on is applied to the BTC-equivalent size (marginlab's extension).
        return abs(size) * spot / btc if np.isfinite(btc) else abs(size)

    def margin(self, state, positions: Sequence[Position], market: MarketData, t) -> float:
        """Standard margin of the book (see class docstring)."""
        base = self.futures_base if self.level == "initial" else self.futures_maintenance_base
        net: dict[str, float] = {}
        total = 0.0
        for p in positions:
            inst = p.instrument
            s = _spot(market, t, inst.asset)
            if inst.family == OPTION:
                mark = _option_mark(inst, market, t, s)
                if p.quantity > 0:
                    total += p.quantity * mark
                    continue
                otm = max(inst.strike - s, 0.0) if inst.is_call else max(s - inst.strike, 0.0)
                if self.level == "initial":
                    per_unit = max(self.option_initial_max - otm / s, self.option_initial_min) * s + mark
                else:
                    per_unit = self.option_maintenance * s + mark
                total += abs(p.quantity) * per_unit
            else:
                net[inst.asset] = net.get(inst.asset, 0.0) + p.quantity
        for asset, size in net.items():
            s = _spot(market, t, asset)
            total += (base + self.futures_per_unit * self._size_in_btc(asset, size, s, market, t)) * abs(size) * s
        return float(total)
