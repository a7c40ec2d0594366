"""Venue margin parameters: one table per venue, each entry with its source and vintage.

The venue margin models of :mod:`marginlab.models.static` read their numbers from
here and nowhere else:

* :data:`BINANCE_USDM_TIERS` — Binance USDⓈ-M perpetual leverage brackets per asset
  (:class:`BracketTable`: notional caps with the maintenance and, where published,
  the initial margin rate of each bracket), used by ``tiered``;
* :data:`DERIBIT_STANDARD` — Deribit standard-margin parameters per asset
  (:class:`DeribitParams`: futures base rates and size add-on, option rates), used by
  ``deribit_standard``.

**Vintages.** Venues re-cut their tables often (Binance changed the BTCUSDT brackets
on 2021-03-18 and again on 2021-06-22; Deribit's futures initial margin was 10%, then
5%, then 2% + a size add-on). marginlab applies the single vintage named in each
Binance entry to every date of a backtest. Deribit's BTC and ETH futures rules switch
on the one dated change Deribit published with both the old and the new rates
(Deribit Support "11 January 2022"): dates observed from 2022-01-11 00:00 UTC use the
new rates, earlier dates the rates in force before it (``futures_before``); how long
those had been in force is not published, so they are also applied to the older dates
(a backfill, said in the entry). ``verified`` says whether the numbers were read on the
venue's own page (True) or only in a third-party copy (False); unverified entries are
kept, labelled, rather than replaced by invented numbers. The reference numbers and
their sources are also in ``tests/results/venue_margin_reference.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

import pandas as pd

__all__ = [
    "BracketTable",
    "DeribitParams",
    "BINANCE_USDM_TIERS",
    "BINANCE_USDT_50X_2021",
    "DERIBIT_STANDARD",
    "LEVELS",
    "check_caps",
]

#: the two margin levels a venue publishes
LEVELS = ("initial", "maintenance")


def check_caps(where: str, caps: object) -> None:
    """Raise ValueError naming ``where`` unless ``caps`` are positive, strictly increasing, only the last inf."""
    ok = isinstance(caps, tuple | list) and len(caps) > 0 and all(
        isinstance(c, int | float) and not isinstance(c, bool) and c > 0 for c in caps)
    if not (ok and all(b > a for a, b in zip(caps, caps[1:], strict=False))
            and not any(math.isinf(c) for c in caps[:-1])):
        raise ValueError(f"{where}: bracket caps must be a non-empty sequence of strictly increasing positive "
                         f"numbers (only the last may be inf), got {caps!r}")


def _check_rates(where: str, rates: tuple[float, ...], n: int) -> None:
    if len(rates) != n:
        raise ValueError(f"{where}: {n} brackets but {len(rates)} rates")
    for r in rates:
        if not (isinstance(r, int | float) and 0.0 < r <= 1.0):
            raise ValueError(f"{where}: every rate must be in (0, 1], got {r!r}")


@dataclass(frozen=True)
class BracketTable:
    """Leverage brackets of one venue contract, with both margin columns.

    Bracket ``i`` holds a position of notional ``N`` (quote currency) with
    ``caps[i-1] < N <= caps[i]`` (``caps[-1]`` may be ``inf``: no cap published).

    Parameters
    ----------
    contract : str
        The venue's symbol, e.g. ``"BTCUSDT"``.
    caps : tuple of float
        Upper notional bound of each bracket, increasing, > 0.
    maintenance : tuple of float
        Maintenance margin rate of each bracket, in (0, 1].
    initial : tuple of float or None
        Initial margin rate of each bracket (1 / max leverage), or None when the
        sources found do not publish it (the level is then unavailable).
    source : str
        Where the numbers come from (title and address).
    vintage : str
        The date the numbers were in force (or the date of the source).
    verified : bool
        True if read on the venue's own page, False if only in a third-party copy.
    """

    contract: str
    caps: tuple[float, ...]
    maintenance: tuple[float, ...]
    initial: tuple[float, ...] | None
    source: str
    vintage: str
    verified: bool

    def __post_init__(self) -> None:
        where = f"bracket table {self.contract}"
        check_caps(where, self.caps)
        _check_rates(where + " maintenance", self.maintenance, len(self.caps))
        if self.initial is not None:
            _check_rates(where + " initial", self.initial, len(self.caps))
            if any(i < m for i, m in zip(self.initial, self.maintenance, strict=True)):
                raise ValueError(f"{where}: an initial rate is below its maintenance rate")

    def column(self, level: str) -> tuple[tuple[float, float], ...] | None:
        """``((cap, rate), ...)`` of ``level`` ("initial" or "maintenance"); None if not published."""
        rates = self.maintenance if level == "maintenance" else self.initial
        return None if rates is None else tuple(zip(self.caps, rates, strict=True))

    def max_leverage(self) -> tuple[float, ...] | None:
        """Maximum leverage of each bracket (1 / initial rate), or None."""
        return None if self.initial is None else tuple(1.0 / r for r in self.initial)


_BINANCE_2021_03_18 = ("Binance, 'Updates to Leverage and Margin Tiers of Binance Futures Contracts "
                       "(2021-03-18)', https://www.binance.com/en/support/announcement/"
                       "86cf9aa472574b8cb2e05bb751c2a9a6")
_GIST = ("third-party copy: gist 'Binance liquidation calculator' (mattj161/21bec86528700b7e4cb025730485a2a7, "
         "fork crackcomm/e29582030d9eeac6c6124a7503cd0ac2), tables x100 (ETH-USDT) and x75 (ADA, BNB, DOT, EOS, "
         "ETC, LINK, LTC, TRX, XLM, XMR, XRP, XTZ, BCH -USDT); undated, same era as the 2021-03-18 BTCUSDT table")

#: Binance USDⓈ-M perpetual leverage brackets (USDT notional), one vintage per asset.
BINANCE_USDM_TIERS: Mapping[str, BracketTable] = MappingProxyType({
    "BTC": BracketTable(
        contract="BTCUSDT",
        caps=(50_000, 250_000, 1_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000, 200_000_000,
              300_000_000, 500_000_000),
        maintenance=(0.004, 0.005, 0.01, 0.025, 0.05, 0.10, 0.125, 0.15, 0.25, 0.50),
        # 125x, 100x, 50x, 20x, 10x, 5x, 4x, 3x (published as 33.30%), 2x, 1x
        initial=(0.008, 0.01, 0.02, 0.05, 0.10, 0.20, 0.25, 0.333, 0.50, 1.00),
        source=_BINANCE_2021_03_18,
        vintage="in force from 2021-03-18 09:00 UTC; superseded 2021-06-22 03:30 UTC (brackets 4-5 re-cut to "
                "1m-5m at 2.5% and 5m-20m at 5%)",
        verified=True),
    "ETH": BracketTable(
        contract="ETHUSDT",
        caps=(10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, math.inf),
        maintenance=(0.005, 0.0065, 0.01, 0.02, 0.05, 0.10, 0.125, 0.15, 0.25),
        initial=None,  # not published in the sources found
        source=_GIST,
        vintage="undated (2021 era); last cap not published (the copy uses a 5bn sentinel)",
        verified=False),
    "XRP": BracketTable(
        contract="XRPUSDT",
        caps=(10_000, 50_000, 250_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, math.inf),
        maintenance=(0.0065, 0.01, 0.02, 0.05, 0.10, 0.125, 0.15, 0.25),
        initial=None,  # not published in the sources found
        source=_GIST,
        vintage="undated (2021 era); Binance's 75x alt-coin table; last cap not published",
        verified=False),
})

#: Binance's 50x USDT-margined alt-coin table (both columns), published for XEM, COTI, CHR,
#: MANA, HBAR and ALICE on 2021-03-18 and for ONE, LINA, STMX on 2021-03-23. Not assigned to
#: any bundled asset (no source shows it was SOL's or XRP's); pass it explicitly, e.g.
#: ``make_model("tiered", asset_tiers={"SOL": BINANCE_USDT_50X_2021.column("maintenance")})``.
BINANCE_USDT_50X_2021 = BracketTable(
    contract="50x USDT-margined alt-coin perpetuals",
    caps=(5_000, 25_000, 100_000, 250_000, 1_000_000, math.inf),
    maintenance=(0.01, 0.025, 0.05, 0.10, 0.125, 0.50),
    initial=(0.02, 0.05, 0.10, 0.20, 0.50, 1.00),
    source=_BINANCE_2021_03_18,
    vintage="in force from 2021-03-18 09:00 UTC (same table announced 2021-03-23 for ONE, LINA, STMX)",
    verified=True)


@dataclass(frozen=True)
class DeribitParams:
    """Deribit standard-margin parameters of one currency.

    Futures and perpetuals (net size ``n`` per contract): rate
    ``base + add_on * size`` of the net notional, ``base`` = ``futures_initial`` or
    ``futures_maintenance``, ``size = |n|`` in units of the currency itself
    (``size_unit``, as the venue writes it). These rates are in force from
    ``futures_from`` (UTC; None: on every date); before it, ``futures_before`` =
    ``(initial, maintenance, add_on)`` when given (:meth:`futures_rates`). Short options,
    per unit, in coin: initial ``max(option_initial_max - OTM/S, option_initial_min)
    + mark``, maintenance ``option_maintenance + mark`` (see
    :class:`~marginlab.models.static.DeribitStandardMargin`). ``option_initial_max``
    None: Deribit's options on this currency are not modelled.
    """

    futures_initial: float
    futures_maintenance: float
    futures_add_on: float
    size_unit: str
    futures_source: str
    futures_vintage: str
    futures_verified: bool
    option_initial_max: float | None = None
    option_initial_min: float | None = None
    option_maintenance: float | None = None
    option_source: str = ""
    option_verified: bool = False
    futures_from: str | None = None
    futures_before: tuple[float, float, float] | None = None
    futures_before_source: str = ""

    def __post_init__(self) -> None:
        for name in ("futures_initial", "futures_maintenance", "futures_add_on"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 <= v < 1.0):
                raise ValueError(f"Deribit parameters: {name} must be in [0, 1), got {v!r}")
        if self.futures_before is not None:
            if self.futures_from is None or len(self.futures_before) != 3 or not all(
                    isinstance(v, int | float) and 0.0 <= v < 1.0 for v in self.futures_before):
                raise ValueError("Deribit parameters: futures_before must be (initial, maintenance, add_on) in "
                                 f"[0, 1) with a futures_from date, got {self.futures_before!r}")
        opts = (self.option_initial_max, self.option_initial_min, self.option_maintenance)
        if any(v is None for v in opts) and any(v is not None for v in opts):
            raise ValueError("Deribit parameters: give all three option rates or none")
        if self.option_initial_max is not None and not (
                0.0 < self.option_maintenance <= self.option_initial_min <= self.option_initial_max < 1.0):
            raise ValueError("Deribit parameters: option rates must satisfy 0 < maintenance <= initial_min "
                             "<= initial_max < 1")

    @cached_property
    def _futures_from_ns(self) -> int:
        """``futures_from`` as UTC nanoseconds (parsed once: futures_rates runs per contract and date)."""
        return pd.Timestamp(self.futures_from, tz="UTC").value

    def futures_rates(self, level: str, time_ns: int) -> tuple[float, float]:
        """``(base, add_on)`` of futures and perpetuals at ``level`` in force at ``time_ns`` (UTC nanoseconds)."""
        if self.futures_before is not None and time_ns < self._futures_from_ns:
            initial, maintenance, add_on = self.futures_before
        else:
            initial, maintenance, add_on = self.futures_initial, self.futures_maintenance, self.futures_add_on
        return (initial if level == "initial" else maintenance), add_on

    @property
    def has_options(self) -> bool:
        """True if option margin parameters are given for this currency."""
        return self.option_initial_max is not None


_DERIBIT_LINEAR = ("Deribit Support, 'Linear Perpetual' (standard margin IM & MM examples, BTC_USDC and "
                   "SOL_USDC), https://support.deribit.com/hc/en-us/articles/25944738177565-Linear-Perpetual")
_DERIBIT_LINEAR_VINTAGE = ("page undated; its worked example prices BTC at $100,000, so late 2024 or later; "
                           "earlier Deribit pages show IM 10%, then 5%, then 2% + 0.5% per 100 BTC with MM 1.5%")
_DERIBIT_2022 = ("Deribit Support, '11 January 2022' (change of leverage levels as of 11 January 2022: 'Current' and "
                 "'New' futures IM/MM for BTC and ETH), "
                 "https://support.deribit.com/hc/en-us/articles/25944826427293-11-January-2022")
_DERIBIT_2022_VINTAGE = ("in force from 2022-01-11 (" + _DERIBIT_2022 + "; the hour is not given: marginlab switches "
                         "at 2022-01-11 00:00 UTC); before it, the page's 'Current' rates (futures_before), in force "
                         "on 2022-01-10; their start is not published, so they are backfilled to every earlier date "
                         "(older, undated Deribit pages show other rules: IM 10%, then 5%, then 2% + 0.5% per 100 BTC)")
_DERIBIT_OPTIONS = ("third-party copy of Deribit's inverse-option standard margin: TSLab, 'Deribit Margin "
                    "Requirements Calculation', https://doc.tslab.pro/tslab/eng/data-providers/connection-to-"
                    "broker/deribit-cryptocurrency-exchange/deribit-margin-requirements-calculation (undated); "
                    "not read on a Deribit page (Deribit Support 'Inverse Options' describes the contract, "
                    "not these rates)")

#: Deribit standard margin per currency (futures: the rule in force on each date, see ``DeribitParams``; options: one
#: vintage; see the module docstring).
DERIBIT_STANDARD: Mapping[str, DeribitParams] = MappingProxyType({
    "BTC": DeribitParams(
        futures_initial=0.02, futures_maintenance=0.01, futures_add_on=0.00005, size_unit="BTC",
        futures_source=_DERIBIT_2022 + "; the same rule in " + _DERIBIT_LINEAR,
        futures_vintage=_DERIBIT_2022_VINTAGE, futures_verified=True,
        futures_from="2022-01-11", futures_before=(0.01, 0.00525, 0.00005), futures_before_source=_DERIBIT_2022,
        option_initial_max=0.15, option_initial_min=0.10, option_maintenance=0.075,
        option_source=_DERIBIT_OPTIONS, option_verified=False),
    "ETH": DeribitParams(
        futures_initial=0.02, futures_maintenance=0.01, futures_add_on=0.000004, size_unit="ETH",
        futures_source=_DERIBIT_2022, futures_vintage=_DERIBIT_2022_VINTAGE, futures_verified=True,
        futures_from="2022-01-11", futures_before=(0.02, 0.01, 0.000002), futures_before_source=_DERIBIT_2022,
        option_initial_max=0.15, option_initial_min=0.10, option_maintenance=0.075,
        option_source=_DERIBIT_OPTIONS + "; the copy states the BTC rates, assumed identical for ETH",
        option_verified=False),
    "SOL": DeribitParams(
        futures_initial=0.04, futures_maintenance=0.02, futures_add_on=0.000005, size_unit="SOL",
        futures_source=_DERIBIT_LINEAR + " (the SOL maintenance row reads 'POS Size in ETH', a typo: its "
                                         "worked examples are in SOL)",
        futures_vintage=_DERIBIT_LINEAR_VINTAGE, futures_verified=True),
})
