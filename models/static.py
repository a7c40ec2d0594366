"""Static (rule-based) margin models: flat rate, exchange leverage tiers, Deribit standard margin.

The venue models (``tiered``, ``deribit_standard``) take their numbers from the
per-venue tables of :mod:`marginlab.models.venues`, where each entry names its
source and vintage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from marginlab.datasets import DataError, MarketData

from .base import MarginModel, check_range, register
from .instruments import LINEAR, OPTION, Future, Instrument, Option, Perpetual, Position, Spot
from .params import Asset, Cap
from .revaluation import option_mark
from .venues import BINANCE_USDM_TIERS, DERIBIT_STANDARD, LEVELS, DeribitParams, check_caps

__all__ = ["StaticMargin", "TieredMargin", "DeribitStandardMargin", "BINANCE_BTCUSDT_2021_TIERS",
           "bracket_requirement", "deribit_option_margin_coin"]


def _spot(market: MarketData, t, asset: str) -> float:
    if asset not in market.asset_index:
        raise DataError(f"unknown asset(s) {[asset]}; the market data has {market.assets}")
    s = float(market.price_array[market.loc_of(t), market.asset_index[asset]])
    if not np.isfinite(s):
        raise DataError(f"no {asset} price at {t}")
    return s


@register
@dataclass(frozen=True)
class StaticMargin(MarginModel):
    r"""Flat percentage of gross notional.

    .. math:: M_t = \sum_i m_i

    .. math:: m_i = q_i\,V_{i,t}\ \ (\text{long option}),\qquad
              m_i = r_{a(i)}\,|q_i|\,S_{a(i),t}\ \ (\text{any other position})

    over the positions i held at t (options and dated futures expired by t's
    observation time are dropped), with :math:`q_i` the quantity (units of the
    underlying), :math:`S_{a,t}` the index (spot) price of asset a,
    :math:`r_a` the rate of the position's asset and :math:`V_{i,t}` an option's
    mark. Linear positions (spot, perpetuals, futures) and short
    options are charged the rate on their notional :math:`|q| S` (delta-blind:
    a short option's moneyness and mark do not enter); a long option's margin
    is its Black-76 mark value :math:`q V` (premium fully paid, the most it can
    lose). No offsets: a long and a short position each pay on their own
    notional. A crude benchmark: exchange "x% initial margin".

    Source: no venue rulebook or paper; a benchmark rule (a venue's "x% initial
    margin", i.e. its maximum leverage 1/r, applied to every position); the
    venue schedules themselves are the ``tiered`` and ``deribit_standard`` models.

    Parameters
    ----------
    rate : float
        The rate r charged on every asset without a ``rates`` entry, as a fraction of
        notional, in (0, 1]; default 0.10 (10%, i.e. 10x leverage).
    rates : dict
        Per-asset rates overriding ``rate``, ``{asset: rate}`` with each rate in (0, 1],
        e.g. ``{"ETH": 0.15}``; default empty (``rate`` for every asset).
    """

    name: ClassVar[str] = "static"
    rate: float = 0.10
    rates: dict[Asset, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range(self.name, "rate", self.rate, 0.0, 1.0, low_open=True)
        if not isinstance(self.rates, dict):
            raise ValueError(f"{self.name}: rates must be a mapping asset -> rate")
        for asset, r in self.rates.items():
            check_range(self.name, f"rates[{asset!r}]", r, 0.0, 1.0, low_open=True)

    def margin(self, state, positions: Sequence[Position], market: MarketData, t) -> float:
        """Gross-notional margin (see class docstring)."""
        total = 0.0
        for p in _held(positions, market, t):
            s = _spot(market, t, p.instrument.asset)
            if isinstance(p.instrument, Option) and p.quantity > 0:
                total += p.quantity * _option_mark(p.instrument, market, t, s, state)
            else:
                total += self.rates.get(p.instrument.asset, self.rate) * abs(p.quantity) * s
        return float(total)


def _option_mark(option: Option, market: MarketData, t, spot: float, state=None) -> float:
    """Mark of one unit of ``option`` at ``t``: :func:`~marginlab.models.revaluation.option_mark`.

    The mark is a function of the option and the market row only: with a run context (``state.context``) it is
    memoised for the current row, so a book and its standalone legs, and books holding the same option, price
    it once per date (the memo holds one row: it is cleared when another row is asked for).
    """
    context = getattr(state, "context", None)
    if context is None:
        return option_mark(option, market, t, where=f"option {option.label}")
    memo = context.row_cache("option_marks", market, market.loc_of(t))
    mark = memo.get(option)
    if mark is None:
        mark = memo[option] = option_mark(option, market, t, where=f"option {option.label}")
    return mark


def _held(positions: Sequence[Position], market: MarketData, t) -> list[Position]:
    """The positions still held at ``t`` (settled options and dated futures dropped).

    An option or dated future expiring at or before the observation time of ``t`` has settled into cash and
    carries no margin, as in every scenario model (:func:`~marginlab.models.revaluation.revalue_at`).
    """
    seen = int(market.observation_ns[market.loc_of(t)])
    return [p for p in positions if p.held_at(seen)]


#: Binance BTCUSDT maintenance column, ``(notional cap in USDT, maintenance margin rate)``, in force
#: from 2021-03-18 09:00 UTC: ``BINANCE_USDM_TIERS["BTC"].column("maintenance")``.
BINANCE_BTCUSDT_2021_TIERS: tuple[tuple[float, float], ...] = BINANCE_USDM_TIERS["BTC"].column("maintenance")


def _check_level(model: str, level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"{model}: level must be 'initial' or 'maintenance', got {level!r}")


def _check_table(model: str, key: str, table: object) -> None:
    if not (isinstance(table, tuple | list) and table
            and all(isinstance(row, tuple | list) and len(row) == 2 for row in table)):
        raise ValueError(f"{model}: {key} must be a non-empty sequence of (cap, rate), got {table!r}")
    check_caps(f"{model}: {key}", [cap for cap, _ in table])
    for _, rate in table:
        check_range(model, f"{key} rate", rate, 0.0, 1.0, low_open=True)


def bracket_requirement(notional: float, tiers: Sequence[tuple[float, float]], level: str = "maintenance") -> float:
    r"""Margin of one position of ``notional`` (>= 0, quote currency) under leverage brackets.

    ``tiers`` is ``((cap_1, rate_1), ..., (cap_n, rate_n))``; the position is in
    bracket i when :math:`c_{i-1} < N \le c_i`. Maintenance:
    :math:`N r_i - A_i`, :math:`A_i = A_{i-1} + c_{i-1}(r_i - r_{i-1})`, :math:`A_1 = 0`
    (Binance's maintenance amount; continuous at every edge). Initial: :math:`N r_i`
    (notional / maximum leverage of the bracket; jumps at the edges). A notional above
    the last cap raises ``ValueError`` (the venue takes no larger position).
    """
    amount, prev_cap, prev_rate = 0.0, 0.0, 0.0
    for cap, rate in tiers:
        amount += prev_cap * (rate - prev_rate)
        if notional <= cap:
            return notional * rate - (amount if level == "maintenance" else 0.0)
        prev_cap, prev_rate = cap, rate
    raise ValueError(f"tiered: notional {notional:,.0f} above the last bracket cap {prev_cap:,.0f}")


@register
@dataclass(frozen=True)
class TieredMargin(MarginModel):
    r"""Binance USDⓈ-M leverage brackets, ``level="maintenance"`` (default) or ``"initial"``.

    The net position in each contract (Binance one-way mode: positions in the same
    perpetual or future net) has notional :math:`N_c = |n_c| S_{a(c),t}` (net quantity
    :math:`n_c` at the index price) and falls in bracket i,
    :math:`c_{i-1} < N_c \le c_i` (:math:`c_0 = 0`), of its asset's table; the margin
    adds the contracts' requirements (no offset between contracts):

    .. math:: M_t = \sum_c R(N_c)

    .. math:: R_{\text{maintenance}}(N) = N m_i - A_i,\quad
              A_i = A_{i-1} + c_{i-1}(m_i - m_{i-1}),\quad A_1 = 0

    .. math:: R_{\text{initial}}(N) = N r_i = N / L_i

    * maintenance: :math:`m_i` the bracket's maintenance rate, :math:`A_i` Binance's
      maintenance amount ("tax bracket"), so the requirement is continuous at every edge;
    * initial: :math:`r_i = 1/L_i`, :math:`L_i` the bracket's maximum leverage —
      Binance's "Initial Margin = Notional Position Value / Leverage" at the highest
      leverage the position's bracket allows. Binance has no cumulative amount for the
      initial margin, so it jumps at each edge (by :math:`c_i (r_{i+1} - r_i)`).

    A notional above the last cap raises ``ValueError`` (the venue takes no larger
    position); dated futures expired by t's observation time are dropped.

    Tables (:data:`~marginlab.models.venues.BINANCE_USDM_TIERS`, one vintage each,
    applied to every date):

    * BTC — BTCUSDT, both columns, Binance announcement "Updates to Leverage and Margin
      Tiers of Binance Futures Contracts (2021-03-18)", in force from 2021-03-18 09:00
      UTC (superseded 2021-06-22); verified;
    * ETH — ETHUSDT (x100 table) and XRP — XRPUSDT (x75 alt-coin table): maintenance
      column only, from a third-party copy of Binance's 2021 tables (unverified); their
      initial column was not found, so ``level="initial"`` does not apply to them;
    * SOL and the other bundled assets: no table found.

    Binance's 50x alt-coin table (both columns, 2021-03-18) is shipped as
    :data:`~marginlab.models.venues.BINANCE_USDT_50X_2021` but assigned to no asset.

    **Applicability.** The model applies to books of perpetuals and futures whose
    assets have a table at the chosen level; any other book (options, spot holdings —
    Binance's brackets margin futures, not fully paid spot — or an asset without a
    table) is reported not applicable (n/a) by the engine, never given another asset's
    table. Calling :meth:`margin` on such a book raises ``ValueError`` naming the
    position (and, for an asset without a table, the assets that have one).

    Parameters
    ----------
    level : {"maintenance", "initial"}
        Which column of the venue's table: the maintenance rates :math:`m_i` with the
        maintenance amounts (default), or the initial rates :math:`r_i = 1/L_i`.
    tiers : tuple of (cap, rate) or None
        One table applied to every asset without an ``asset_tiers`` entry (an explicit
        choice, e.g. a hypothetical schedule): caps in quote currency, strictly increasing
        (only the last may be inf), rates in (0, 1] at ``level``; None (default): the
        venue's per-asset tables.
    asset_tiers : dict
        Per-asset tables ``{asset: ((cap, rate), ...)}`` at ``level``, overriding the rest;
        default empty.

    References
    ----------
    * Binance, "Updates to Leverage and Margin Tiers of Binance Futures Contracts
      (2021-03-18)", https://www.binance.com/en/support/announcement/86cf9aa472574b8cb2e05bb751c2a9a6
      (BTCUSDT brackets, both columns; verified).
    * Binance Futures, "Leverage and Margin" trading-rules page,
      https://www.binance.com/zh-TC/futures/trading-rules/perpetual/leverage-margin ("Initial
      Margin = Notional Position Value / Leverage; Maintenance Margin = Notional Position
      Value * Maintenance Margin Rate - Maintenance Amount").
    * Third-party copy of Binance's 2021 tables: gist "Binance liquidation calculator"
      (mattj161/21bec86528700b7e4cb025730485a2a7), tables x100 (ETHUSDT) and x75 (XRPUSDT),
      undated (unverified).
    * Maintenance amounts: gist highfestiva/b71e76f51eed84d56c1be8ebbcc286b5 "CLI Binance
      liquidation calculation formula" (2021-03-26, Binance's cumFastMaintenanceAmount);
      tests/results/venue_margin_reference.json holds every number with its source.
    """

    name: ClassVar[str] = "tiered"
    relative_cost: ClassVar[float] = 0.1  # MarginModel.relative_cost (default study: 0.06 x static: linear books only)
    families: ClassVar[frozenset[str]] = frozenset({LINEAR})
    level: str = "maintenance"
    tiers: tuple[tuple[Cap, float], ...] | None = None
    asset_tiers: dict[Asset, tuple[tuple[Cap, float], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_level(self.name, self.level)
        if self.tiers is not None:
            _check_table(self.name, "tiers", self.tiers)
        if not isinstance(self.asset_tiers, dict):
            raise ValueError(f"{self.name}: asset_tiers must be a mapping asset -> ((cap, rate), ...)")
        for asset, table in self.asset_tiers.items():
            _check_table(self.name, f"asset_tiers[{asset!r}]", table)

    requirement = staticmethod(bracket_requirement)

    def table(self, asset: str) -> tuple[tuple[float, float], ...] | None:
        """The ``(cap, rate)`` brackets used for ``asset`` at this model's level; None if there is none."""
        if asset in self.asset_tiers:
            return tuple(self.asset_tiers[asset])
        if self.tiers is not None:
            return tuple(self.tiers)
        venue = BINANCE_USDM_TIERS.get(asset)
        return None if venue is None else venue.column(self.level)

    def rule_switches(self) -> dict[str, str] | None:
        """``{}`` when Binance's tables are read (one vintage per asset on every date); None with a user table."""
        return None if self.tiers is not None else {}

    def applies_to(self, positions: Sequence[Position]) -> bool:
        """True if every position is a perpetual or future on an asset with a table at ``level``."""
        return all(isinstance(p.instrument, Perpetual | Future) and self.table(p.instrument.asset) is not None
                   for p in positions)

    def _no_table(self, inst) -> str:
        have = sorted(set(self.asset_tiers) | {a for a, v in BINANCE_USDM_TIERS.items()
                                               if v.column(self.level) is not None})
        return (f"{self.name}: no Binance {self.level} bracket table for {inst.asset} ({inst.label}); "
                f"{self.level} tables exist for {have}; pass asset_tiers={{{inst.asset!r}: ((cap, rate), ...)}}")

    def margin(self, state, positions: Sequence[Position], market: MarketData, t) -> float:
        """Sum over contracts of the bracket requirement of the net position (see class docstring)."""
        for p in positions:
            if not isinstance(p.instrument, Perpetual | Future):
                raise ValueError(f"{self.name}: {p.instrument.label} is not a perpetual or future; Binance "
                                 "USDⓈ-M brackets margin futures only (the model does not apply to this book)")
        net: dict[Instrument, float] = {}
        for p in _held(positions, market, t):
            net[p.instrument] = net.get(p.instrument, 0.0) + p.quantity
        total = 0.0
        for inst, quantity in net.items():
            table = self.table(inst.asset)
            if table is None:
                raise ValueError(self._no_table(inst))
            total += bracket_requirement(abs(quantity) * _spot(market, t, inst.asset), table, self.level)
        return float(total)


def deribit_option_margin_coin(is_call: bool, strike: float, index: float, mark_coin: float, short: bool,
                               level: str, params: DeribitParams) -> float:
    r"""Deribit standard margin of one option contract, in coin (units of the underlying).

    Deribit's inverse options are quoted, margined and settled in coin; ``mark_coin``
    is the option's mark in coin (USD mark / index). With OTM the out-of-the-money
    amount (USD), :math:`a` = ``option_initial_max``, :math:`b` = ``option_initial_min``,
    :math:`m` = ``option_maintenance``:

    * long: the mark (premium paid; Deribit asks no margin; marginlab counts the value
      held, the most the position can lose);
    * short call: initial :math:`\max(a - OTM/S, b) + mark`, maintenance :math:`m + mark`;
    * short put: maintenance :math:`\max(m, m \cdot mark) + mark`, initial
      :math:`\max(\max(a - OTM/S, b) + mark, \text{maintenance})`.
    """
    if not short:
        return mark_coin
    otm = max(strike - index, 0.0) if is_call else max(index - strike, 0.0)
    initial = max(params.option_initial_max - otm / index, params.option_initial_min) + mark_coin
    if is_call:
        maintenance = params.option_maintenance + mark_coin
    else:
        maintenance = max(params.option_maintenance, params.option_maintenance * mark_coin) + mark_coin
        initial = max(initial, maintenance)
    return initial if level == "initial" else maintenance


@register
@dataclass(frozen=True)
class DeribitStandardMargin(MarginModel):
    r"""Deribit standard (non-portfolio) margin, ``level="initial"`` (default) or ``"maintenance"``.

    Per-currency parameters from :data:`~marginlab.models.venues.DERIBIT_STANDARD`
    (BTC and ETH futures: the rule in force on each date; otherwise one vintage on every date).
    Over the positions held at t (options and dated futures expired by t's observation
    time dropped), with :math:`S_{a,t}` the index (spot) price of the currency a:

    .. math:: M_t = \sum_{c} (f_a + d_a |n_c|)\,|n_c|\,S_{a,t}
              + \sum_{o} |q_o|\,\mu_o\,S_{a,t}

    the first sum over the futures and perpetual contracts c (net size :math:`n_c`
    per contract, in the currency's coin; :math:`f_a` the base rate at ``level`` and
    :math:`d_a` the add-on per coin of size, both of the rule in force at t's observation
    time), the second over the option positions o (quantity :math:`q_o`, each position on
    its own) with :math:`\mu_o` the requirement of one option in coin. With
    :math:`v = V/S` the option's Black-76 mark in coin, :math:`OTM` its out-of-the-money
    amount (USD; :math:`(K-S)^+` for a call, :math:`(S-K)^+` for a put), :math:`a` =
    ``option_initial_max`` (0.15), :math:`b` = ``option_initial_min`` (0.10) and
    :math:`m` = ``option_maintenance`` (0.075):

    .. math:: \mu_{\text{long}} = v

    .. math:: \mu^{IM}_{\text{short call}} = \max(a - OTM/S,\ b) + v,\qquad
              \mu^{MM}_{\text{short call}} = m + v

    .. math:: \mu^{MM}_{\text{short put}} = \max(m,\ m\,v) + v,\qquad
              \mu^{IM}_{\text{short put}} = \max(\max(a - OTM/S,\ b) + v,\ \mu^{MM}_{\text{short put}})

    * **Futures and perpetuals** (marginlab's linear USD contracts): each contract (the
      perpetual, each dated future) is margined on
      its own and the requirements add up: standard margin "is calculated separately
      for each position" and "doesn't offer any benefits for positions that either
      partially or fully hedge each other" (Deribit Support, "Margin types and
      usage"), so a perpetual against a future, or a calendar spread, gets no offset.
      The rule in force on each date, from Deribit Support "11 January 2022" (the
      change's "Current" and "New" rates; verified): from 2022-01-11 BTC initial 2%,
      maintenance 1%, add-on 0.005% per BTC (also Deribit Support "Linear Perpetual"),
      ETH 2% / 1%, 0.0004% per ETH; before 2022-01-11 BTC 1% / 0.525%, 0.005% per BTC,
      ETH 2% / 1%, 0.0002% per ETH — backfilled to every earlier date, as the start of
      that rule is not published (older undated Deribit pages show 10%, 5%, then 2% +
      0.5% per 100 BTC). SOL: 4% / 2%, 0.0005% per SOL on every date (Deribit Support
      "Linear Perpetual", undated, written at BTC = $100,000; verified).
    * **Options** (BTC and ETH; inverse: premium, margin and settlement in coin), per
      unit, in coin (:func:`deribit_option_margin_coin`), as above; long options: the
      mark (premium paid; Deribit asks no margin, marginlab counts the value held, the
      most the position can lose).
      The option rule is taken from a third-party copy of Deribit's rule (TSLab
      documentation, undated), unverified against a Deribit page; ETH assumed identical to BTC.
    * **Spot** is not a future: Deribit's standard margin does not margin fully paid
      spot (the coin held is collateral, not a margined position) and does not net it
      against futures, so the model does **not apply** to books holding spot.
    * Not applicable: currencies without parameters (XRP, and the other bundled alt
      coins: Deribit lists USDC linear perpetuals and options on some, but their
      margin parameters were not found) and options on SOL (USDC-settled linear options
      with other rules, not modelled). The engine reports such books as n/a; calling
      :meth:`margin` on them raises ``ValueError`` naming the position.

    **Inverse options.** The option requirement is computed in coin, as Deribit does
    (``mark_coin`` = Black-76 USD mark / index), and converted to USD at the index:
    :math:`M_{USD} = M_{coin} S`. The option's P&L in USD is the inverse payoff's
    (:math:`(S_T-K)^+/S_T` coins at the settlement index :math:`S_T` is
    :math:`(S_T-K)^+` USD), so marginlab's USD P&L is the inverse contract's. Not
    modelled (limitation): the margin is held in coin, so its USD value moves with the
    index over the MPOR (it falls with BTC, wrong-way for short puts); marginlab
    compares the loss with the USD value of the margin at t.

    Parameters
    ----------
    level : {"initial", "maintenance"}
        Which of Deribit's two requirements: the initial margin (default; futures base
        rate ``futures_initial``, options' initial formulas) or the maintenance margin
        (``futures_maintenance``, options' maintenance formulas). The size add-on
        :math:`d_a` is the same at both levels.

    References
    ----------
    * Deribit Support, "11 January 2022" (change of leverage levels: "Current" and "New"
      futures IM/MM for BTC and ETH),
      https://support.deribit.com/hc/en-us/articles/25944826427293-11-January-2022 (verified).
    * Deribit Support, "Linear Perpetual" (standard margin IM and MM examples, BTC_USDC and
      SOL_USDC), https://support.deribit.com/hc/en-us/articles/25944738177565-Linear-Perpetual
      (undated; verified).
    * Deribit Support, "Margin types and usage" (standard margin per position, no hedge offsets).
    * TSLab, "Deribit Margin Requirements Calculation",
      https://doc.tslab.pro/tslab/eng/data-providers/connection-to-broker/deribit-cryptocurrency-exchange/deribit-margin-requirements-calculation
      (third-party copy of the inverse-option rule, undated; unverified).
    * Deribit Support, "Inverse Options",
      https://support.deribit.com/hc/en-us/articles/25944688327069-Inverse-Options (the contract:
      priced, margined and settled in the base currency).
    """

    name: ClassVar[str] = "deribit_standard"
    relative_cost: ClassVar[float] = 3.0  # MarginModel.relative_cost (default study: 2.7 x static)
    level: str = "initial"

    def __post_init__(self) -> None:
        _check_level(self.name, self.level)

    def rule_switches(self) -> dict[str, str]:
        """Dates on which Deribit's futures and perpetual rates switch (``DeribitParams.futures_from``), per asset."""
        dates = self.assets_by_date((params.futures_from, asset) for asset, params in DERIBIT_STANDARD.items()
                                    if params.futures_from is not None)
        return {day: (f"Deribit's {' and '.join(assets)} futures and perpetual margin rates change (observations from "
                      f"{day} 00:00 UTC use the new rates, earlier ones the rates in force before it)")
                for day, assets in dates.items()}

    def applies_to(self, positions: Sequence[Position]) -> bool:
        """True if every position is a future, perpetual or option with Deribit parameters (no spot)."""
        return all(self._unsupported(p.instrument) is None for p in positions)

    def _unsupported(self, inst) -> str | None:
        """Why the model does not apply to ``inst`` (None if it does)."""
        if isinstance(inst, Spot):
            return (f"{inst.label} is a spot holding: Deribit's standard margin does not margin fully paid spot "
                    "(it is collateral), so the model does not apply to books holding spot")
        params = DERIBIT_STANDARD.get(inst.asset)
        if params is None:
            return (f"no Deribit standard-margin parameters for {inst.asset} ({inst.label}); parameters exist "
                    f"for {sorted(DERIBIT_STANDARD)}")
        if inst.family == OPTION and not params.has_options:
            options = sorted(a for a, v in DERIBIT_STANDARD.items() if v.has_options)
            return f"Deribit {inst.asset} options ({inst.label}) are not modelled; options are modelled for {options}"
        return None

    def margin(self, state, positions: Sequence[Position], market: MarketData, t) -> float:
        """Standard margin of the book in the quote currency (see class docstring)."""
        net: dict[Instrument, float] = {}  # linear contract -> net size: each margined on its own (no offsets)
        total = 0.0
        for p in positions:
            why = self._unsupported(p.instrument)
            if why is not None:
                raise ValueError(f"{self.name}: {why}")
        for p in _held(positions, market, t):
            inst = p.instrument
            if inst.family != OPTION:
                net[inst] = net.get(inst, 0.0) + p.quantity
                continue
            index = _spot(market, t, inst.asset)
            mark_coin = _option_mark(inst, market, t, index, state) / index
            coin = deribit_option_margin_coin(inst.is_call, inst.strike, index, mark_coin, p.quantity < 0,
                                              self.level, DERIBIT_STANDARD[inst.asset])
            total += abs(p.quantity) * coin * index
        seen = int(market.observation_ns[market.loc_of(t)])  # the rule in force when t is observed
        for inst, size in net.items():
            asset = inst.asset
            index = _spot(market, t, asset)
            base, add_on = DERIBIT_STANDARD[asset].futures_rates(self.level, seen)
            total += (base + add_on * abs(size)) * abs(size) * index
        return float(total)
