r"""SPAN-style portfolio margin (CME SPAN methodology), on marginlab's instruments.

The method, its formulas, parameters, sources and simplifications: :class:`SpanMargin`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData
from scipy.special import ndtr

from .base import MarginModel, ModelState, check_ints, check_range, register
from .context import RunContext
from .instruments import Position
from .params import Asset
from .revaluation import Where, book_arrays, book_state
from .scenarios import grid_values
from .shocks import asset_pairs, check_window, move_quantile

__all__ = ["SpanMargin", "SpanBreakdown", "SPAN_PRICE_FRACTIONS", "SPAN_VOL_DIRECTIONS", "COMPOSITE_POINTS",
           "normal_bin_weights"]

#: price move of each of the 16 scenarios, in multiples of the PSR (15-16: times the extreme multiple k)
SPAN_PRICE_FRACTIONS = (0.0, 0.0, 1 / 3, 1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3, 1.0, 1.0, -1.0, -1.0,
                        1.0, -1.0)
#: vol move of each scenario in multiples of the VSR (+1 up, -1 down, 0 unchanged)
SPAN_VOL_DIRECTIONS = (1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 0, 0)
#: price points of the composite delta, in multiples of the PSR
COMPOSITE_POINTS = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0)


def normal_bin_weights() -> tuple[float, ...]:
    """Composite-delta weights: P(normal move, sd PSR/3, in the PSR/3-wide bin of each point), outer bins open."""
    edges = np.array([-np.inf, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, np.inf])
    return tuple(float(w) for w in np.diff(ndtr(edges)))


@dataclass(frozen=True)
class SpanBreakdown:
    """Every intermediate of one SPAN requirement (quote currency unless stated).

    ``per_asset`` has one row per underlying: ``spot``, ``psr`` and ``vsr`` (fractions), ``scan``
    (scan risk) and ``scan_scenario`` (1-16, the worst), ``net_delta`` (composite, units of the
    underlying), ``long_tier_delta``/``short_tier_delta`` (sums over tiers), ``intra``, ``inter``
    (credit), ``som``, ``risk`` = max(scan + intra - inter, som), ``nov``.
    """

    rows: dict[str, dict[str, float]]
    total: float

    @property
    def per_asset(self) -> pd.DataFrame:
        """One row per underlying (built on demand: the hot path keeps plain dicts)."""
        return pd.DataFrame.from_dict(self.rows, orient="index").rename_axis("asset")

    def to_frame(self) -> pd.DataFrame:
        """The per-asset table."""
        return self.per_asset


@register
@dataclass(frozen=True)
class SpanMargin(MarginModel):
    r"""SPAN-style portfolio margin (CME SPAN methodology), on marginlab's instruments.

    Each underlying asset a is one SPAN *combined commodity*. For a book held at t, in the quote
    currency:

    .. math::
        M = \max\left(0,\ \sum_a \left[\max\left(\mathrm{scan}_a + \mathrm{intra}_a - \mathrm{inter}_a,\
        \mathrm{SOM}_a\right) - \mathrm{NOV}_a\right]\right)

    (``net_option_value=False`` leaves NOV out, :math:`\mathrm{NOV}_a = 0`: a risk-only requirement).
    Notation: positions i of quantity :math:`q_i` (units of the underlying, negative short) on
    underlying a, spot :math:`S_a`, price and vol scan ranges :math:`PSR_a`, :math:`VSR_a`
    (fractions), an option's Black-76 value :math:`V_i(S, \sigma, \tau)` and delta :math:`\Delta_i`
    at its mark vol :math:`\sigma_i` and years to expiry :math:`\tau_i`, a future's basis
    :math:`b_i` (0 for perpetuals and spot), L the look-ahead time in years. An option or dated
    future expired by t has settled: it has no risk array, delta or option value.

    1. **Risk arrays** (CME, "Components of SPAN", cme.com/clearing/rmspan/span/components.html: risk
       arrays, risk scenarios, look-ahead time): per position, for one unit long, the loss (positive) in
       16 scenarios j of the underlying price and its implied vol over the look-ahead time —
       price moves :math:`f_j` = 0, ±1/3, ±2/3, ±1 of the PSR, each with the vol up and down by the
       VSR (:math:`v_j = \pm 1`), and two extreme moves ±k PSR at unchanged vol (:math:`v_j = 0`)
       counted at the cover fraction c (:math:`w_j = c` for scenarios 15-16, 1 otherwise; the
       16-scenario layout is as printed in NSE Clearing's SPAN documentation, whose extreme moves are
       ±2 PSR at 35%; CME Clearing Advisory 08-303, 2008-11-03, lists an "Extreme Move Value" of 3 and an
       "Extreme Move Coverage" of 0.33 for gasoil options; defaults here k = 3 as CME's, c = 0.35 as NSE's):

       .. math::
           RA_{ij} = -w_j\left[V_i\left(S_a x_j,\ \max(\sigma_i(1 + v_j VSR_a), 0),\
           \max(\tau_i - L, 0)\right) - V_i(S_a, \sigma_i, \tau_i)\right],\quad
           x_j = \max(1 + f_j PSR_a,\ 0.01)

       for options (repriced with Black-76, their time to expiry shortened by the look-ahead time:
       ``look_ahead`` observations at the panel's step; by default the MPOR of the run, the period
       the scan range covers: one day on daily data at MPOR 1, 24 hours on hourly data at MPOR 24;
       the loss therefore includes the time decay over L), and

       .. math:: RA_{ij} = -w_j (1 + b_i) S_a (x_j - 1)

       for linear positions (the price factor is floored at 0.01, a fall of 99%, which binds only
       when a dynamic PSR exceeds 1/k). Arrays are computed once per contract and date (the run
       context's cache) and shared by every book holding the contract.

    2. **Scan risk** per underlying, the worst scenario loss of the net book:

       .. math:: \mathrm{scan}_a = \max\left(0,\ \max_{j} \sum_{i \in a} q_i RA_{ij}\right)

    3. **Composite delta** per position (CME Clearing, SPAN Advisory 04-06, 2004-03-22: composite deltas
       are "probability-weighted estimates of what each contract's delta will be one day in the
       future"; PC-SPAN "Risk Scenarios" report: each delta point carries a probability weight): the
       weighted mean of the Black-76 deltas at the seven price points :math:`p_m` = -1, -2/3, -1/3,
       0, 1/3, 2/3, 1 PSR (vol unchanged, aged by the look-ahead time); 1 + b for a linear position:

       .. math::
           cd_i = \sum_{m=1}^{7} \omega_m\, \Delta_i\left(S_a \max(1 + p_m PSR_a, 0.01),\ \sigma_i,\
           \max(\tau_i - L, 0)\right)

       The weights :math:`\omega_m` (``composite_weights``) are not published; the default is
       marginlab's: the probabilities of a normal move with standard deviation PSR/3 falling in the
       bin of width PSR/3 around each point (outer bins open): 0.0062, 0.0606, 0.2417, 0.3829,
       0.2417, 0.0606, 0.0062.

    4. **Intra-commodity (calendar) spread charge**: composite deltas are netted per tier e (one tier
       per expiry; perpetuals and spot form the undated tier), :math:`D_{a,e} = \sum_{i \in e} q_i cd_i`;
       offsetting long and short tier deltas form spread deltas, charged ``intra_spread_rate``
       :math:`r_{intra}` times their notional (NSE Clearing "SPAN Risk Parameters", updated
       2024-07-04: calendar spread charge 1.75% of the far-month contract for index derivatives,
       computed on the delta of each month; the default here):

       .. math::
           \mathrm{intra}_a = r_{intra}\, S_a \min\left(\sum_e \max(D_{a,e}, 0),\
           \sum_e \max(-D_{a,e}, 0)\right)

       Scan risk treats all tiers as perfectly correlated; this charge adds back their basis risk.
       marginlab prices every tier off the spot (zero basis), so the realised P&L has no basis
       risk: the charge is an add-on only.

    5. **Inter-commodity spread credit** between configured pairs (``inter_spreads``, e.g.
       ``{"BTC/ETH": 0.5}``): when the remaining net deltas :math:`D_a = \sum_e D_{a,e}` of two
       underlyings have opposite signs, spreads are formed on their USD deltas, each leg credited
       ``rate`` x its weighted price risk (scan risk per unit of net delta) x the delta it puts in
       spreads (CME SPAN methodology overview: inter-commodity spreads on delta; the "Normal"
       weighted-price-risk method of the PC-SPAN "Combined Commodities" report). For a pair (A, B)
       at rate :math:`r_{AB}`, with :math:`R_a` the USD delta not yet in spreads (:math:`|S_a D_a|`
       before the first pair):

       .. math::
           s = \min(R_A, R_B),\quad \mathrm{inter}_A \leftarrow \min\left(\mathrm{inter}_A
           + r_{AB}\, \mathrm{scan}_A\, \frac{s}{|S_A D_A|},\ \mathrm{scan}_A\right),\quad
           R_A \leftarrow R_A - s

       and the same for B. Pairs are taken in the table's order; credit never exceeds a leg's
       scan risk. The default rate 0.5 is marginlab's illustration, not a published CME rate.

    6. **Short option minimum** (CME Clearing Advisory 20-319, 2020-08-13: "a charge that is applied
       only to portfolios concentrated in short options"; NSE Clearing "SPAN parameters": "3% of the
       notional value of all short index option positions", 7.5% for options on individual
       securities), default 3% (Deribit's BTC and ETH options are options on an index):

       .. math:: \mathrm{SOM}_a = r_{SOM}\, S_a \sum_{\text{short options } i \in a} |q_i|

    7. **Net option value** (NSE Clearing: long minus short option positions valued at the last
       closing price), the options at their mark:

       .. math:: \mathrm{NOV}_a = \sum_{\text{options } i \in a} q_i V_i(S_a, \sigma_i, \tau_i)

    A book of long options can have :math:`M = 0`: SPAN credits the long option value held in the
    account, so marginlab's loss test then counts any loss as a breach, although a fully paid long
    option costs the clearing house nothing (a limitation of the loss test on such books, not of
    SPAN; the default study runs ``net_option_value=False``).

    **Scan ranges** are fixed (``price_scan_range``/``vol_scan_range``: one number, or a number per
    asset) or **dynamic** (None, the default): recalibrated on every date from data up to t
    (:func:`~marginlab.models.shocks.move_quantile`): PSR = the ``scan_quantile`` of
    :math:`|S_s/S_{s-h} - 1|` and VSR = that of :math:`|\sigma_s/\sigma_{s-h} - 1|` over the last
    ``lookback`` observations (default: 365 days of observations at the panel's step, 365 rows daily
    and 8,760 hourly, :func:`~marginlab.models.shocks.window_rows`), h = the MPOR in observations, as
    clearing houses recalibrate (NSE Clearing: PSR from an EWMA volatility, VSR 25% of the EWMA
    volatility, reset daily). No margin (NaN, warm-up) before ``min_obs`` moves (default: 60 days of
    observations, 60 daily and 1,440 hourly).

    **Simplified** (not modelled): SPAN's time risk and volatility risk split of the scan risk (the
    weighted price risk is the whole scan risk per delta), tiered intra-commodity rates, spread
    priorities across several pairs beyond the table's order, delivery (spot) charges, super
    inter-commodity and inter-exchange spreads, per-contract scan ranges (one PSR/VSR per
    underlying), and the limits on available NOV. Prices, strikes and moves are relative to the spot
    (no contract value factors: one unit = one unit of the underlying).

    Parameters
    ----------
    price_scan_range : float, dict or None
        PSR as a fraction of the spot (0.15 = 15%), in [0, 1/k): one for every asset, or per asset
        (assets missing from the dict are dynamic); None (default): dynamic, the ``scan_quantile`` of
        the h-observation relative spot moves up to t.
    vol_scan_range : float, dict or None
        VSR as a fraction of the vol (0.25: vol x 1.25 and x 0.75), in [0, 1); as ``price_scan_range``
        (dynamic: the quantile of the relative implied-vol moves). Read only for underlyings with a
        live option.
    scan_quantile : float
        Quantile of the dynamic scan ranges, in (0, 1); default 0.99.
    lookback : int or None
        Observations in the dynamic calibration window (an integer >= 20, the last one at t); None
        (default): 365 calendar days of observations at the panel's step (365 daily, 8,760 hourly).
        Unused when both scan ranges are fixed.
    min_obs : int or None
        Fewest h-observation moves in the window to calibrate (an integer >= 2, at most the window);
        fewer: no margin (warm-up). None (default): 60 calendar days of observations (60 daily, 1,440
        hourly).
    extreme_multiple : float
        k >= 1: the extreme scenarios (15-16) move the price by ±k PSR; default 3.
    cover_fraction : float
        c in [0, 1]: the part of the extreme scenarios' loss counted; default 0.35.
    look_ahead : int or None
        Observations (>= 0) options are aged by in the risk arrays and composite deltas; None
        (default): the run's MPOR (``context.mpor``), the horizon of the scan ranges (CME
        "Components of SPAN": the look-ahead time is the period the margin covers, "typically one
        trading day").
    composite_weights : tuple of 7 floats
        Probability weights of the composite delta at -1, -2/3, ..., +1 PSR (non-negative, sum 1);
        default :func:`normal_bin_weights`.
    intra_spread_rate : float
        Calendar spread charge in [0, 1], a fraction of the spread's notional (spread delta x spot);
        default 0.0175.
    short_option_minimum : float
        Short option minimum in [0, 1], a fraction of the short options' notional (short option units
        x spot); default 0.03.
    inter_spreads : dict
        ``{"A/B": rate}`` inter-commodity credit rates in [0, 1], each pair of distinct catalogue
        assets at most once, applied in the table's order; default ``{"BTC/ETH": 0.5}``
        (marginlab's illustration); ``{}``: no credit.
    net_option_value : bool
        Subtract the net option value (long options credited, short charged); default True.

    References
    ----------
    * CME Group, "Components of SPAN", cme.com/clearing/rmspan/span/components.html (undated):
      risk arrays, risk scenarios, look-ahead time ("typically set to one trading day"), losses
      positive for one unit long.
    * CME Group, "CME SPAN Methodology Overview", cmegroup.com/clearing/risk-management/span-overview.html,
      and the CME presentation "CME SPAN Standard Portfolio Analysis of Risk" (2010): combined
      commodities, scan risk, intra-commodity charge, inter-commodity credit on delta, short option
      minimum.
    * CME Clearing, SPAN Advisory 04-06 (2004-03-22): composite deltas.
    * CME Clearing Advisory 08-303 (2008-11-03): "Extreme Move Value" 3, "Extreme Move Coverage"
      0.33 (gasoil options).
    * CME Clearing Advisory 20-319 (2020-08-13): short option minimum.
    * CME PC-SPAN reports "Risk Scenarios" (scan-point and delta-point weights) and "Combined
      Commodities" (weighted price risk, "Normal" method), cmegroup.com confluence "pubspan".
    * NSE Clearing, SPAN documentation (the 16 risk scenarios and their loss fractions; net option
      value) and "SPAN Risk Parameters", nseclearing.in, updated 2024-07-04 (calendar spread charge
      1.75% for index derivatives; short option minimum 3% of the notional of short index options;
      PSR and VSR recalibrated daily from an EWMA volatility).
    """

    name: ClassVar[str] = "span"
    relative_cost: ClassVar[float] = 4.0  # MarginModel.relative_cost (default study: 4.2 x static)
    price_scan_range: float | dict[Asset, float] | None = None
    vol_scan_range: float | dict[Asset, float] | None = None
    scan_quantile: float = 0.99
    lookback: int | None = None
    min_obs: int | None = None
    extreme_multiple: float = 3.0
    cover_fraction: float = 0.35
    look_ahead: int | None = None
    composite_weights: tuple[float, ...] = field(default_factory=normal_bin_weights)
    intra_spread_rate: float = 0.0175
    inter_spreads: dict[str, float] = field(default_factory=lambda: {"BTC/ETH": 0.5})
    short_option_minimum: float = 0.03
    net_option_value: bool = True

    def __post_init__(self) -> None:
        check_range(self.name, "extreme_multiple", self.extreme_multiple, 1.0, None)
        check_range(self.name, "cover_fraction", self.cover_fraction, 0.0, 1.0)
        check_range(self.name, "scan_quantile", self.scan_quantile, 0.0, 1.0, low_open=True, high_open=True)
        check_range(self.name, "intra_spread_rate", self.intra_spread_rate, 0.0, 1.0)
        check_range(self.name, "short_option_minimum", self.short_option_minimum, 0.0, 1.0)
        check_window(self, 20, 2)
        if self.look_ahead is not None:
            check_ints(self, {"look_ahead": 0})
        for key, high in (("price_scan_range", 1.0 / self.extreme_multiple), ("vol_scan_range", 1.0)):
            value = getattr(self, key)
            table = value if isinstance(value, dict) else {} if value is None else {"": value}
            for asset, v in table.items():
                where = f"{key}[{asset!r}]" if asset else key
                check_range(self.name, where, v, 0.0, high, high_open=True)
        w = self.composite_weights
        if len(w) != len(COMPOSITE_POINTS) or any(x < 0 for x in w) or abs(sum(w) - 1.0) > 1e-9:
            raise ValueError(f"{self.name}: composite_weights must be {len(COMPOSITE_POINTS)} non-negative "
                             f"weights summing to 1, got {w!r}")
        self._pairs  # noqa: B018  (parses and checks the table)

    @cached_property
    def _key(self) -> str:
        return repr(self)

    # -- scan ranges -----------------------------------------------------------------------------------
    def _range(self, key: str, state: ModelState, market: MarketData, asset: str) -> float:
        value = getattr(self, key)
        if isinstance(value, dict):
            if asset in value:
                return float(value[asset])
            value = None
        if value is not None:
            return float(value)
        series = "price" if key == "price_scan_range" else "vol"
        return state.context.shared("span_scan_ranges", (self._key, key, asset, state.i, state.context.mpor),
                                    lambda: move_quantile(market, asset, state.i, state.context.mpor,
                                                          self.lookback, self.scan_quantile, self.min_obs, series))

    def scan_ranges(self, state: ModelState, market: MarketData, asset: str) -> tuple[float, float]:
        """(PSR, VSR) of ``asset`` at the state's date (fractions; NaN while warming up)."""
        return (self._range("price_scan_range", state, market, asset),
                self._range("vol_scan_range", state, market, asset))

    def look_ahead_obs(self, state: ModelState) -> int:
        """Observations options are aged by: ``look_ahead``, or the run's MPOR when it is None."""
        return state.context.mpor if self.look_ahead is None else self.look_ahead

    def _price_moves(self, psr: float, context: RunContext | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Spot factors of the 16 scan scenarios and 7 composite-delta points, and the scan weights (read-only).

        With a run context, built once per PSR value in the run (every linear position of every book at a
        date asks for its asset's).
        """
        if context is not None:
            return context.shared("span_price_moves", (self._key, psr), lambda: self._price_moves(psr))
        f = np.array(SPAN_PRICE_FRACTIONS) * psr
        f[14:] *= self.extreme_multiple
        weights = np.ones(16)
        weights[14:] = self.cover_fraction
        # a dynamic PSR above 1/k (or 1): falls floored at -99%
        out = np.maximum(1.0 + f, 0.01), np.maximum(1.0 + np.array(COMPOSITE_POINTS) * psr, 0.01), weights
        for x in out:
            x.setflags(write=False)
        return out

    # -- risk arrays -----------------------------------------------------------------------------------
    def _option_arrays(self, state: ModelState, market: MarketData, contracts: list[tuple], spot: np.ndarray,
                       tau: np.ndarray, vol: np.ndarray, psr: float, vsr: float) -> list[tuple]:
        """Risk array (16), composite delta and mark per unit long of each option contract (one kernel call)."""
        factors, points, weights = self._price_moves(psr)
        moves = np.log(np.concatenate([[1.0], factors, points]))[:, None]
        n_scan, n_pts = 16, len(COMPOSITE_POINTS)
        time_index = np.array([0] + [1] * (n_scan + n_pts))
        vol_index = np.array([0] + [{1: 1, -1: 2, 0: 0}[d] for d in SPAN_VOL_DIRECTIONS] + [0] * n_pts)
        aged = np.maximum(tau - market.horizon_years(self.look_ahead_obs(state)), 0.0)
        vols = np.vstack([vol, vol * (1.0 + vsr), np.maximum(vol * (1.0 - vsr), 0.0)])
        strike = np.array([c[2] for c in contracts])
        is_call = np.array([c[3] for c in contracts])
        price, delta = grid_values(spot, strike, is_call, np.zeros(len(contracts), dtype=np.int64),
                                   np.vstack([tau, aged]), vols, moves, time_index, vol_index)
        w = np.asarray(self.composite_weights)
        out = []
        for j in range(len(contracts)):
            ra = -(price[1:1 + n_scan, j] - price[0, j]) * weights
            # the composite delta summed in a fixed order: a BLAS dot product takes another path (another
            # rounding) for a strided column, i.e. depending on how many contracts share this call, and a
            # contract's array must not depend on the books computed beside it in a task
            out.append((ra, float((w * delta[1 + n_scan:, j]).sum()), float(price[0, j])))
        return out

    def _arrays(self, state: ModelState, positions: Sequence[Position], market: MarketData):
        """The book's arrays, market state, (PSR, VSR) per asset and per-position risk arrays (None: warm-up)."""
        book = book_arrays(positions)
        where = Where(self.name, state.t)
        # the mark vols only matter for contracts whose arrays are not in the run's cache yet (below)
        bs = book_state(book, market, state.i, where, with_vols=False)
        has_option = set(book.asset_idx[bs.live].tolist()) if bs.live.size else ()
        ranges = [(self._range("price_scan_range", state, market, a),
                   self._range("vol_scan_range", state, market, a) if k in has_option else float("nan"))
                  for k, a in enumerate(book.assets)]
        if any(not math.isfinite(psr) or (k in has_option and not math.isfinite(vsr))
               for k, (psr, vsr) in enumerate(ranges)):
            return book, bs, ranges, None
        # option risk arrays, per contract and date, from the run's cache (computed once per contract)
        store = state.context.cache("span_risk_arrays")
        arrays: list = [None] * len(positions)
        missing: dict[int, list[int]] = {}
        mpor = state.context.mpor
        for pos_k, j in enumerate(bs.live.tolist()):
            key = (self._key, *book.contracts[j], state.i, mpor)  # (asset, expiry ns, strike, is_call)
            if key in store:
                arrays[j] = store[key]
            else:
                missing.setdefault(int(book.asset_idx[j]), []).append(pos_k)
        if missing:
            bs = book_state(book, market, state.i, where)  # with the live options' mark vols
        for a, pos_list in missing.items():
            psr, vsr = ranges[a]
            js = bs.live[pos_list]
            contracts = [(positions[j].instrument.asset, positions[j].instrument.expiry.value,
                          positions[j].instrument.strike, positions[j].instrument.is_call) for j in js]
            unique = list(dict.fromkeys(contracts))
            where_u = [pos_list[contracts.index(c)] for c in unique]
            built = self._option_arrays(state, market, unique, np.full(len(unique), bs.spots[a]),
                                        bs.tau[where_u], bs.vol[where_u], psr, vsr)
            for c, arr in zip(unique, built, strict=True):
                store[(self._key, *c, state.i, state.context.mpor)] = arr
            for j, c in zip(js, contracts, strict=True):
                arrays[j] = store[(self._key, *c, state.i, state.context.mpor)]
        # linear positions held at t (a future expired by t has settled: no risk), one array per asset and basis
        # at the date (the run's row cache: every book holding the asset asks for it)
        linear = None
        held = book.linear_positions if not book.has_futures else \
            np.flatnonzero(~book.is_option & book.held_at(market.observation_ns[state.i])).tolist()
        for j in held:
            a = int(book.asset_idx[j])
            lin = 1.0 + float(book.basis[j])
            if linear is None:
                linear = state.context.row_cache("span_linear_arrays", market, state.i)
            key = (self._key, book.assets[a], lin, mpor)
            arr = linear.get(key)
            if arr is None:
                factors, _, weights = self._price_moves(ranges[a][0], state.context)
                arr = linear[key] = -lin * float(bs.spots[a]) * (factors - 1.0) * weights
                arr.setflags(write=False)
            arrays[j] = (arr, lin, None)
        return book, bs, ranges, arrays

    def risk_arrays(self, state: ModelState, positions: Sequence[Position], market: MarketData, t
                    ) -> list[tuple[np.ndarray, float, float | None] | None] | None:
        """Per position, for one unit long: the risk array, the composite delta and the option mark.

        The risk array has shape (16,): the loss (positive, quote currency) in each scenario, the
        extreme ones (15-16) already at the cover fraction; the mark is None for linear positions.
        An option or dated future expired by t has none (None); the whole result is None while the
        dynamic scan ranges are warming up.
        """
        return self._arrays(state, positions, market)[3]

    def breakdown(self, state: ModelState, positions: Sequence[Position], market: MarketData, t) -> SpanBreakdown:
        """Every intermediate of the requirement for ``positions`` at ``t`` (see the class docstring)."""
        book, bs, ranges, arrays = self._arrays(state, positions, market)
        if arrays is None:
            return SpanBreakdown({}, float("nan"))
        rows: dict[str, dict[str, float]] = {}
        quantity, expiry = book.quantity.tolist(), book.expiry_ns.tolist()
        spots = bs.spots.tolist()
        for a, asset in enumerate(book.assets):
            psr, vsr = ranges[a]
            spot = spots[a]
            scan_vec = np.zeros(16)
            tiers: dict[int, float] = {}
            nov = som_units = 0.0
            for j in book.positions_of[a]:
                if arrays[j] is None:
                    continue  # an option or future expired by t: settled, no risk and no option value
                q = quantity[j]
                ra, cd, mark = arrays[j]
                if mark is not None:
                    nov += q * mark
                    som_units += max(-q, 0.0)
                scan_vec += q * ra
                tier = expiry[j]
                tiers[tier] = tiers.get(tier, 0.0) + q * cd
            worst = int(np.argmax(scan_vec))
            longs = sum(d for d in tiers.values() if d > 0)
            shorts = -sum(d for d in tiers.values() if d < 0)
            rows[asset] = {"spot": spot, "psr": psr, "vsr": vsr, "scan": max(float(scan_vec[worst]), 0.0),
                           "scan_scenario": worst + 1, "net_delta": longs - shorts, "long_tier_delta": longs,
                           "short_tier_delta": shorts, "intra": self.intra_spread_rate * spot * min(longs, shorts),
                           "inter": 0.0, "som": self.short_option_minimum * spot * som_units, "nov": nov}
        self._inter_credits(rows)
        total = 0.0
        for r in rows.values():
            r["risk"] = max(r["scan"] + r["intra"] - r["inter"], r["som"])
            total += r["risk"] - (r["nov"] if self.net_option_value else 0.0)
        return SpanBreakdown(rows, max(total, 0.0))

    @cached_property
    def _pairs(self) -> dict[tuple[str, str], float]:
        return asset_pairs(f"{self.name}: inter_spreads", self.inter_spreads, 0.0, 1.0)

    def _inter_credits(self, rows: dict[str, dict[str, float]]) -> None:
        """Inter-commodity credits (``inter``) for the configured pairs, in the table's order."""
        if len(rows) < 2:
            return  # no pair
        usd = {a: r["net_delta"] * r["spot"] for a, r in rows.items()}
        remaining = {a: abs(v) for a, v in usd.items()}
        for (a, b), rate in self._pairs.items():
            if a not in rows or b not in rows or usd[a] * usd[b] >= 0:
                continue
            spread = min(remaining[a], remaining[b])
            if spread <= 0:
                continue
            for leg in (a, b):
                credit = rate * rows[leg]["scan"] * spread / abs(usd[leg])
                rows[leg]["inter"] = min(rows[leg]["inter"] + credit, rows[leg]["scan"])
                remaining[leg] -= spread

    def margin(self, state: ModelState, positions: Sequence[Position], market: MarketData, t) -> float:
        """The SPAN requirement (NaN while the dynamic scan ranges are warming up)."""
        return self.breakdown(state, positions, market, t).total
