r"""Deribit portfolio margin (the risk-matrix model launched in 2024), on marginlab's USD instruments.

The method, its formulas, parameters, sources and what is inferred: :class:`DeribitPortfolioMargin`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData
from marginlab.datasets.conventions import utc

from .base import MarginModel, ModelState, register
from .instruments import Future, Perpetual, Position
from .methodology import Methodology
from .params import Asset
from .pricing import black76_greeks
from .revaluation import Where, book_arrays, book_state
from .scenarios import grid_values

__all__ = ["DeribitPMVintage", "DeribitPortfolioMargin", "DeribitPMBreakdown", "DERIBIT_PM_VINTAGES",
           "check_vintages", "shocked_vols"]

@dataclass(frozen=True)
class DeribitPMVintage:
    """Deribit portfolio-margin parameters of one currency, as published on one date.

    Names follow Deribit's API (``private/pme/simulate``, ``model_params``): ``currency_pair``
    parameters (price and vol grid, extended table, delta shock), ``currency`` parameters (roll
    shock, extended dampener in USD) and ``general`` ones (``mm_factor``, ``buckets_count``).
    ``start``/``end``: ISO dates (UTC); the vintage applies from ``start`` (inclusive) to ``end``
    (exclusive; None = open).
    """

    start: str
    end: str | None
    price_range: float
    buckets: int
    volatility_range_up: float
    volatility_range_down: float
    min_volatility_for_shock_up: float
    short_term_vega_power: float
    long_term_vega_power: float
    extended_table_factor: float
    extended_dampener: float
    max_delta_shock: float
    delta_total_liq_shock_threshold: float
    m_inc: float
    annualised_move_risk: float
    min_annualised_move: float
    mm_factor: float
    source: str
    extended_moves: tuple[float, ...] = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)

    def __post_init__(self) -> None:
        where = f"Deribit PM vintage from {self.start}"
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is None and name == "end":
                continue
            try:
                dt.date.fromisoformat(value)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {name} must be an ISO date (YYYY-MM-DD), got {value!r}") from None
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"{where}: end {self.end} is not after start {self.start}")
        if not (isinstance(self.buckets, int) and not isinstance(self.buckets, bool) and self.buckets >= 1):
            raise ValueError(f"{where}: buckets must be an integer >= 1, got {self.buckets!r}")
        bounds = {"price_range": (0.0, 1.0), "volatility_range_up": (0.0, 10.0), "volatility_range_down": (0.0, 1.0),
                  "min_volatility_for_shock_up": (0.0, 10.0), "short_term_vega_power": (0.0, 5.0),
                  "long_term_vega_power": (0.0, 5.0), "extended_table_factor": (0.0, 10.0),
                  "extended_dampener": (0.0, math.inf), "max_delta_shock": (0.0, 1.0),
                  "delta_total_liq_shock_threshold": (0.0, math.inf), "m_inc": (0.0, 1.0),
                  "annualised_move_risk": (0.0, 10.0), "min_annualised_move": (0.0, 1.0), "mm_factor": (0.0, 1.0)}
        for name, (lo, hi) in bounds.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi or math.isnan(v):
                raise ValueError(f"{where}: {name} must be a number in [{lo}, {hi}], got {v!r}")
        if not (isinstance(self.extended_moves, tuple) and all(
                isinstance(m, int | float) and m > -1.0 and m != 0.0 for m in self.extended_moves)):
            raise ValueError(f"{where}: extended_moves must be a tuple of non-zero moves > -1, "
                             f"got {self.extended_moves!r}")

    def parameters(self) -> dict:
        """The vintage as a dict (name -> value)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_vintages(where: str, vintages: Sequence[DeribitPMVintage]) -> None:
    """Raise ValueError naming ``where`` unless the vintages are sorted and do not overlap (only the last open)."""
    if not vintages:
        raise ValueError(f"{where}: no vintage given")
    for k, v in enumerate(vintages):
        if not isinstance(v, DeribitPMVintage):
            raise ValueError(f"{where}[{k}] must be a DeribitPMVintage, got {type(v).__name__}")
    for k, (a, b) in enumerate(zip(vintages, vintages[1:], strict=False)):
        if a.end is None or b.start < a.end:
            end = "open" if a.end is None else a.end
            raise ValueError(f"{where}: vintage {k + 1} (from {b.start}) overlaps vintage {k} ({a.start} .. {end}); "
                             "vintages must be sorted by date and must not overlap")


_API_DOC = ("Deribit API documentation, 'private/pme/simulate', example response (model_params; timestamp "
            "1718619740501 = 2024-06-17 10:22 UTC), https://docs.deribit.com/api-reference/account-management/"
            "private-simulate")
_API_LOG_ETH = ("Deribit API response to private/pme/simulate for an ETH-PERPETUAL position, logged 2026-02-15 "
                "23:20 UTC (model_params timestamp 1771197609587) in the public GitHub repository ven-ajie/examples; "
                "the same parameters as the Deribit margin page shows")

#: Deribit portfolio-margin parameters per currency, one vintage per observation (see DeribitPortfolioMargin).
DERIBIT_PM_VINTAGES: Mapping[str, tuple[DeribitPMVintage, ...]] = MappingProxyType({
    "BTC": (DeribitPMVintage(
        start="2024-06-17", end=None, price_range=0.16, buckets=4, volatility_range_up=0.5,
        volatility_range_down=0.25, min_volatility_for_shock_up=0.5, short_term_vega_power=0.3,
        long_term_vega_power=0.13, extended_table_factor=1.0, extended_dampener=100_000.0, max_delta_shock=0.1,
        delta_total_liq_shock_threshold=20_000_000.0, m_inc=0.00005, annualised_move_risk=0.075,
        min_annualised_move=0.01, mm_factor=0.8, source=_API_DOC),),
    "ETH": (DeribitPMVintage(
        start="2026-02-15", end=None, price_range=0.18, buckets=4, volatility_range_up=0.4,
        volatility_range_down=0.25, min_volatility_for_shock_up=0.5, short_term_vega_power=0.3,
        long_term_vega_power=0.13, extended_table_factor=1.0, extended_dampener=200_000.0, max_delta_shock=0.1,
        delta_total_liq_shock_threshold=20_000_000.0, m_inc=0.000004, annualised_move_risk=0.05,
        min_annualised_move=0.005, mm_factor=0.8, source=_API_LOG_ETH),),
})


def shocked_vols(vol: np.ndarray, tau: np.ndarray, vintage: DeribitPMVintage) -> np.ndarray:
    """The up, same and down vols of options (shape (3, n_options)) under a vintage (:class:`DeribitPortfolioMargin`).

    ``vol`` is each option's vol (decimal), ``tau`` its years to expiry.
    """
    dte = np.maximum(np.asarray(tau, dtype=float) * 365.0, 1.0)
    power = np.where(dte < 30.0, vintage.short_term_vega_power, vintage.long_term_vega_power)
    scale = (30.0 / dte) ** power
    up = np.maximum(vol * (1.0 + vintage.volatility_range_up * scale), vintage.min_volatility_for_shock_up)
    down = np.maximum(vol * (1.0 - vintage.volatility_range_down * scale), 0.0)
    return np.vstack([up, vol, down])


@dataclass(frozen=True)
class DeribitPMBreakdown:
    """Every intermediate of one Deribit PM requirement (quote currency).

    ``per_asset``: per currency the vintage's ``start``, ``worst_standard``, ``worst_extended``,
    ``worst``, ``delta_shock``, ``roll_shock``, ``initial``, ``maintenance``. ``standard``: per
    currency the P&L grid, shape (2n + 1, 3): price buckets from -p to +p x vol (up, same, down);
    ``extended``: per currency the counted extended losses, shape (n_extended,).
    """

    rows: dict[str, dict]
    standard: dict[str, np.ndarray]
    extended: dict[str, np.ndarray]
    initial: float
    maintenance: float

    @property
    def per_asset(self) -> pd.DataFrame:
        """One row per currency (built on demand: the hot path keeps plain dicts)."""
        return pd.DataFrame.from_dict(self.rows, orient="index").rename_axis("asset")


@register
@dataclass(frozen=True)
class DeribitPortfolioMargin(MarginModel):
    r"""Deribit portfolio margin (the risk-matrix model launched in 2024), on marginlab's USD instruments.

    Per currency a (Deribit's segregated portfolio margin treats each settlement currency alone; its
    cross-collateral model publishes ``correlation_set: false``, i.e. no offsets between currencies),
    for the book's positions on that asset at t, in USD:

    .. math:: M = \sum_a \lambda_a \left(W_a + DS_a + RS_a\right)

    with :math:`\lambda_a = 1` for the initial margin (``level="initial"``) and ``mm_factor`` for the
    maintenance margin, W the worst case, DS the delta shock and RS the roll shock below. Notation:
    spot S, positions i of quantity :math:`q_i` (negative short), an option's Black-76 value
    :math:`V_i(S, \sigma, \tau)` and delta :math:`\Delta_i` at its mark vol :math:`\sigma_i` and years
    to expiry :math:`\tau_i`, a linear position's weight :math:`\ell_i = q_i(1 + b_i)` (b the basis of
    a dated future, 0 for perpetuals and spot; 0 for a future expired by t), :math:`\Lambda = S
    \sum_i \ell_i`. The other symbols are the fields of the currency's vintage in force
    (:class:`DeribitPMVintage`): p ``price_range``, n ``buckets``, u ``volatility_range_up``, d
    ``volatility_range_down``, :math:`\sigma_{floor}` ``min_volatility_for_shock_up``, f
    ``extended_table_factor``, D ``extended_dampener`` (USD), :math:`m_k` ``extended_moves``,
    :math:`\delta_{max}` ``max_delta_shock``, T ``delta_total_liq_shock_threshold`` (USD),
    :math:`m_{inc}`, A ``annualised_move_risk``, :math:`A_{min}` ``min_annualised_move``.

    * **Standard table** (Deribit Support, "Portfolio Margin", article 25944756247837, undated page
      read in 2026: "maximum underlying price move e.g. +/-16% ... broken down into 9 evenly spaced
      buckets ... including a bucket for zero price movement"; "Volatility Range Up, Same, and Down ...
      for each bucket"): spot moves :math:`m_b = b \cdot p / n`, b = -n..n (``buckets`` n = 4,
      ``price_range`` p), each with three vol scenarios v (up, same, down); the book's P&L

      .. math::
          P_{b,v} = \sum_{\text{options}} q_i \left[V_i\left(S(1 + m_b), \sigma_i^{v}, \tau_i\right)
          - V_i(S, \sigma_i, \tau_i)\right] + m_b \Lambda

      The shocked vols of an option with DTE days to expiry are

      .. math::
          \sigma^{up} = \max\left(\sigma(1 + u\,(30/DTE)^{w}),\ \sigma_{floor}\right),\quad
          \sigma^{same} = \sigma,\quad \sigma^{down} = \max\left(\sigma(1 - d\,(30/DTE)^{w}),\ 0\right),\quad
          DTE = \max(365\,\tau, 1)

      The power w is ``short_term_vega_power`` for DTE < 30 and ``long_term_vega_power`` otherwise (parameter
      names and values from Deribit's API, ``private/pme/simulate``, ``model_params``; the formula's form —
      relative shocks, DTE floored at 1 day, the floor on the shocked-up vol only — is **inferred**:
      Deribit does not publish it; it matches Paradex's published copy of the model, docs.paradex.trade
      "Portfolio Margin", IV x (1 + shock x (30/max(1, DTE))^power), power 30% below 30 days, 13%
      from 30 days). Positions are revalued in full (Black-76) at t, not aged (**inferred**: the
      published grid has no time dimension).

    * **Extended table** (same article: "price moves of, e.g. -66%, -33%, +50%, +100%, +200%, +300%,
      +400%, +500% — only on Volatility Range Up — only a fraction of simulated P&L — application of a
      dampener"): options revalued at each extended move with the vol-up shock, their P&L scaled by
      :math:`f_k = \text{factor} \cdot p / |m_k|` (**inferred** from Paradex's published weights, 16%/|m|:
      24%, 48%, 32%, 16%, 8%, 5.33%, 4%, 3.2%); linear positions enter at their P&L at the edge of the
      standard range (as in Deribit's published risk vectors of a perpetual, see
      ``tests/results/deribit_pm_reference.json``). The loss counted is :math:`\max(L_k - D, 0)` with D
      the currency's ``extended_dampener`` in USD (**inferred**: the published example's extended
      vector aggregates to 0 for losses far below D):

      .. math::
          L_k = -\left(\frac{f\,p}{|m_k|} \sum_{\text{options}} q_i \left[V_i\left(S(1 + m_k),
          \sigma_i^{up}, \tau_i\right) - V_i(S, \sigma_i, \tau_i)\right] + \mathrm{sign}(m_k)\, p\,
          \Lambda\right),\quad E_k = \max(L_k - D,\ 0)

    * **Worst case**: the largest loss of both tables (0 if none):

      .. math:: W = \max\left(0,\ -\min_{b,v} P_{b,v},\ \max_k E_k\right)

    * **Delta shock** (liquidity add-on; ``max_delta_shock``, ``delta_total_liq_shock_threshold``,
      ``m_inc`` published, formula **inferred**): with the book's net delta
      :math:`\Delta = \sum_i \ell_i + \sum_{\text{options}} q_i \Delta_i` (units of the coin, Black-76
      deltas at the mark vol), a rate on the delta notional :math:`|\Delta| S`; zero below the
      threshold T (USD 20m), so never on marginlab's $1m books:

      .. math::
          DS = \min\left(m_{inc} \max\left(|\Delta| - T/S,\ 0\right),\ \delta_{max}\right) |\Delta| S

    * **Roll shock** (``annualised_move_risk``, ``min_annualised_move`` published; formula
      **inferred**, except for perpetuals): per expiry e, the net delta :math:`\Delta_e` of its
      options and futures held at t (:math:`q_i \Delta_i` and :math:`\ell_i`) times
      :math:`\max(A\,T_e, A_{min})` times the spot, :math:`T_e` in years; a perpetual's net delta
      :math:`\Delta_{perp} = \sum_{\text{perpetuals}} q_i` times :math:`A_{min}` (this reproduces
      Deribit's published roll shock of a short ETH perpetual: 0.005 x 0.999487053 = 0.004997435265
      ETH, and of a BTC perpetual with a short dated future at A_min, with no netting between them:
      0.00315725898 BTC, Deribit API example of 2024-06-17; an expiry where A T_e exceeds A_min is not
      in a published example). Spot holdings do not roll:

      .. math:: RS = A_{min} S |\Delta_{perp}| + \sum_e \max(A\,T_e,\ A_{min})\, S\, |\Delta_e|

    Initial margin = worst case + delta shock + roll shock, summed over currencies; maintenance =
    ``mm_factor`` x initial (``mm_factor`` 0.8 in both published vintages; the published example
    has maintenance 0.125969249812 = 0.8 x initial 0.157461562265).

    **Parameter vintages** (:data:`DERIBIT_PM_VINTAGES`): one table per currency, each entry with its
    source and the date it was observed. A replay uses the vintage in force at each date's
    observation time. The start of a vintage's validity is not published, so ``start`` is the date it
    was observed; dates before a currency's first vintage use that first vintage
    (``before_first="backfill"``, the default: before 2024 Deribit ran an older portfolio-margin model
    with contingency add-ons, which is **not** replayed) or get no margin (``"none"``).

    **Simplified** (not modelled): Deribit's BTC and ETH portfolios are coin-margined (inverse
    contracts, risk vectors in coin); marginlab's instruments are linear USD contracts and its grid
    is in USD (a linear position's USD grid value is the coin value times the shocked index, so the
    grid shapes agree, but the worst case is taken in USD rather than in coin); ``pnl_offset``,
    ``max_offsetable_pnl`` and haircuts (cross-collateral P&L offsets), open-order margin, and the
    delta decay during settlement. Spot holdings are delta-one positions in the grid (Deribit counts
    the currency's balance as equity moving with the index). Currencies without published PM
    parameters (SOL, XRP and the other bundled alt coins) are not applicable.

    Parameters
    ----------
    level : {"initial", "maintenance"}
        Initial margin (default), or maintenance = each currency's vintage ``mm_factor`` x its initial
        margin.
    vintages : dict or None
        Per currency, a tuple of :class:`DeribitPMVintage` (every parameter of the method, with its
        source and dates) sorted by date, not overlapping; a book holding a currency missing from the
        dict is outside the model (``applies_to`` is False: reported n/a), and a date after a closed
        vintage's ``end`` with no later vintage gets no margin (NaN). None (default):
        :data:`DERIBIT_PM_VINTAGES`, BTC observed 2024-06-17 and ETH observed 2026-02-15.
    before_first : {"backfill", "none"}
        Dates before a currency's first vintage: use that vintage (``"backfill"``, default; these
        dates are margined with parameters published later), or give no margin (``"none"``: NaN).

    References
    ----------
    * Deribit Support, "Portfolio Margin", support.deribit.com/hc/en-us/articles/25944756247837
      (undated, read in 2026): segregated per currency; ±16% in 9 buckets, vol up/same/down per
      bucket; extended table -66% .. +500% on vol up only, "only a fraction of simulated P&L",
      "application of a dampener".
    * Deribit API documentation, ``private/pme/simulate``, example response (``model_params``,
      timestamp 1718619740501 = 2024-06-17 10:22 UTC), docs.deribit.com: the BTC parameters, the
      risk vectors and the roll shock of a BTC perpetual with a short dated future.
    * Deribit API response to ``private/pme/simulate`` for an ETH-PERPETUAL position, logged
      2026-02-15 23:20 UTC (``model_params`` timestamp 1771197609587) in the public GitHub
      repository ven-ajie/examples: the ETH parameters and the published risk vector, roll shock and
      margins (``tests/results/deribit_pm_reference.json``).
    * Deribit Insights, "Introducing changes to Deribit portfolio margin model" (early 2024): the
      extended table and the delta and roll shocks replace the option and futures contingencies.
    * Paradex documentation, "Portfolio Margin", docs.paradex.trade: the published copy of the
      model whose vol-shock form and extended-table weights the inferred parts follow.
    """

    name: ClassVar[str] = "deribit_pm"
    relative_cost: ClassVar[float] = 6.0  # MarginModel.relative_cost (default study: 5.8 x static)
    level: str = "initial"
    vintages: dict[Asset, tuple[DeribitPMVintage, ...]] | None = None
    before_first: str = "backfill"

    def __post_init__(self) -> None:
        if self.level not in ("initial", "maintenance"):
            raise ValueError(f"{self.name}: level must be 'initial' or 'maintenance', got {self.level!r}")
        if self.before_first not in ("backfill", "none"):
            raise ValueError(f"{self.name}: before_first must be 'backfill' or 'none', got {self.before_first!r}")
        for asset, table in self.table.items():
            check_vintages(f"{self.name}: vintages[{asset!r}]", table)

    @property
    def table(self) -> Mapping[str, tuple[DeribitPMVintage, ...]]:
        """The vintage table in use (per currency)."""
        return DERIBIT_PM_VINTAGES if self.vintages is None else self.vintages

    def rule_switches(self) -> dict[str, str]:
        """Dates on which a currency's parameters change; ``{}``: one vintage per currency on every date.

        A later vintage's start; with ``before_first="none"`` also the first vintage's start (margining begins).
        """
        dates = self.assets_by_date((v.start, asset) for asset, table in self.table.items()
                                    for v in (table if self.before_first == "none" else table[1:]))
        return {day: f"Deribit portfolio-margin parameters of {' and '.join(assets)} change (vintage from {day})"
                for day, assets in dates.items()}

    def applies_to(self, positions: Sequence[Position]) -> bool:
        """True if every position's currency has portfolio-margin parameters."""
        return all(p.instrument.asset in self.table for p in positions)

    def vintage(self, asset: str, time: pd.Timestamp) -> DeribitPMVintage | None:
        """The vintage of ``asset`` in force at ``time`` (UTC); before the first: per ``before_first``."""
        found = self._in_force(asset, utc(time).value)
        return None if found is None else found[0]

    @cached_property
    def _bounds(self) -> dict[str, tuple[tuple[int, int | None, DeribitPMVintage, tuple[np.ndarray, ...]], ...]]:
        """Per currency, each vintage with its start and end (None: open) in ns since the epoch (UTC) and its grid.

        Parsed and built once per model. The grid, ``(std_moves, ext, sign_ext, scen_moves, vol_index,
        fraction)`` (read-only arrays): the standard price moves -p .. +p, the extended moves and their signs,
        the log moves of the valuation grid (unshocked first, then each standard move under the vol up, same
        and down, then the extended moves), each grid row's vol (0 up, 1 same, 2 down) and the extended losses'
        counted fractions.
        """
        out = {}
        for asset, table in self.table.items():
            rows = []
            for v in table:
                std_moves = np.arange(-v.buckets, v.buckets + 1) * v.price_range / v.buckets
                ext = np.asarray(v.extended_moves, dtype=float)
                moves = np.log1p(np.concatenate([[0.0], std_moves, ext]))[:, None]
                n_std = std_moves.size
                scen_moves = np.concatenate([moves[:1], np.repeat(moves[1:1 + n_std], 3, axis=0), moves[1 + n_std:]])
                vol_index = np.concatenate([[1], np.tile([0, 1, 2], n_std), np.zeros(ext.size, dtype=int)])
                with np.errstate(divide="ignore"):
                    fraction = v.extended_table_factor * v.price_range / np.abs(ext)
                grid = (std_moves, ext, np.sign(ext), scen_moves, vol_index, fraction)
                for x in grid:
                    x.setflags(write=False)
                rows.append((utc(v.start).value, None if v.end is None else utc(v.end).value, v, grid))
            out[asset] = tuple(rows)
        return out

    def _in_force(self, asset: str, ns: int) -> tuple[DeribitPMVintage, tuple[np.ndarray, ...]] | None:
        """The vintage of ``asset`` in force at ``ns`` (ns since the epoch, UTC; see :meth:`vintage`) and its grid."""
        table = self._bounds[asset]
        found = None
        for start, end, v, grid in table:
            if start <= ns and (end is None or ns < end):
                found = v, grid
        if found is None and ns < table[0][0] and self.before_first == "backfill":
            found = table[0][2], table[0][3]
        return found

    def breakdown(self, state: ModelState, positions: Sequence[Position], market: MarketData, t
                  ) -> DeribitPMBreakdown | None:
        """Every intermediate for ``positions`` at ``t``; None when a currency has no vintage in force."""
        book = book_arrays(positions)
        unsupported = [p.instrument.label for p in positions if p.instrument.asset not in self.table]
        if unsupported:
            raise ValueError(f"{self.name}: no Deribit portfolio-margin parameters for {unsupported[0]}; "
                             f"parameters exist for {sorted(self.table)}")
        # the mark vols only matter for contracts whose grid is not in the run's row cache yet (_options)
        bs = book_state(book, market, state.i, Where(self.name, state.t), with_vols=False)
        seen = int(market.observation_ns[state.i])
        # years to expiry: for the roll shock of dated futures and live options only
        years = np.where(book.expiry_ns != 0, market.years_to(state.i, book.expiry_ns), 0.0) \
            if book.has_futures or bs.live.size else None
        is_option = book.is_option.tolist()
        rows: dict[str, dict] = {}
        standard, extended = {}, {}
        for a, asset in enumerate(book.assets):
            found = self._in_force(asset, seen)
            if found is None:
                return None
            v, (std_moves, ext, sign_ext, scen_moves, vol_index, fraction) = found
            spot = float(bs.spots[a])
            sel = book.positions_of[a]
            if len(book.assets) == 1:
                live, lk = bs.live, np.arange(bs.live.size)
            else:
                live = bs.live[book.asset_idx[bs.live] == a]
                lk = np.searchsorted(bs.live, live)
            weights = bs.linear[[j for j in sel if not is_option[j]]]  # futures expired by t: settled, weight 0
            lin_weight = float((weights * spot).sum())
            delta = float(weights.sum())
            lin_std = lin_weight * std_moves
            lin_ext = lin_weight * sign_ext * v.price_range
            opt_std = np.zeros((std_moves.size, 3))
            opt_ext = np.zeros(ext.size)
            option_delta: dict[int, float] = {}
            if live.size:
                q = book.quantity[live]
                n_std = std_moves.size
                moved, g_delta = self._options(state, market, book, bs, live, lk, spot, v, scen_moves, vol_index)
                pnl = moved @ q
                opt_std = pnl[:3 * n_std].reshape(n_std, 3)
                opt_ext = pnl[3 * n_std:] * fraction
                delta += float(g_delta @ q)
                option_delta = dict(zip(live.tolist(), g_delta.tolist(), strict=True))
            grid = opt_std + lin_std[:, None]
            ext_loss = np.maximum(-(opt_ext + lin_ext) - v.extended_dampener, 0.0)
            worst_std = max(float(-grid.min()), 0.0)
            worst_ext = float(ext_loss.max()) if ext_loss.size else 0.0
            worst = max(worst_std, worst_ext)
            rate = min(v.m_inc * max(abs(delta) - v.delta_total_liq_shock_threshold / spot, 0.0), v.max_delta_shock)
            delta_shock = rate * abs(delta) * spot
            roll = self._roll_shock(positions, sel, option_delta, years, spot, v)
            initial = worst + delta_shock + roll
            rows[asset] = {"vintage": v.start, "worst_standard": worst_std, "worst_extended": worst_ext,
                           "worst": worst, "delta_shock": delta_shock, "roll_shock": roll, "initial": initial,
                           "maintenance": v.mm_factor * initial}
            standard[asset], extended[asset] = grid, ext_loss
        return DeribitPMBreakdown(rows, standard, extended, sum(r["initial"] for r in rows.values()),
                                  sum(r["maintenance"] for r in rows.values()))

    def _options(self, state: ModelState, market: MarketData, book, bs, live: np.ndarray, lk: np.ndarray,
                 spot: float, v: DeribitPMVintage, scen_moves: np.ndarray, vol_index: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Per live option on one currency: its grid P&L per unit and its Black-76 delta.

        The grid P&L is the price under each scenario less the unshocked price, a column of shape
        (n_scenarios - 1,).

        Memoised per option contract for the date (the run context's row cache; a model, a date and a currency
        have one vintage): the books and standalone legs of a date holding a contract share its numbers, each
        computed element by element (the compiled kernels price one option at a time), so the same number
        whichever options it is computed beside. Returned as the book's own computation lays them out: the
        columns side by side (C order) and the deltas a column of a (n, 4) array (BLAS takes the same path).
        """
        store = state.context.row_cache("deribit_pm_options", market, state.i)
        keys = [(self._key, book.contracts[j]) for j in live.tolist()]
        missing = [k for k, key in enumerate(keys) if key not in store]
        if missing:
            mj, mk = live[missing], lk[missing]
            mark = book_state(book, market, state.i, Where(self.name, state.t),
                              cache=state.context.row_cache("mark_vols", market, state.i)).vol[mk]
            vols = shocked_vols(mark, bs.tau[mk], v)
            price, _ = grid_values(np.full(mj.size, spot), book.strike[mj], book.is_call[mj],
                                   np.zeros(mj.size, dtype=np.int64), bs.tau[mk], vols, scen_moves,
                                   np.zeros(len(scen_moves), dtype=np.int64), vol_index)
            moved = price[1:] - price[0]
            g = black76_greeks(spot, book.strike[mj], bs.tau[mk], mark, book.is_call[mj])
            for c, k in enumerate(missing):
                store[keys[k]] = (moved[:, c].copy(), float(g["delta"][c]))
        entries = [store[key] for key in keys]
        greeks = np.empty((len(entries), 4))
        greeks[:, 0] = [e[1] for e in entries]
        return np.stack([e[0] for e in entries], axis=1), greeks[:, 0]

    @cached_property
    def _key(self) -> str:
        return repr(self)

    @staticmethod
    def _roll_shock(positions: Sequence[Position], sel: Sequence[int], option_delta: dict[int, float],
                    years: np.ndarray | None, spot: float, v: DeribitPMVintage) -> float:
        """Sum over expiries of |net delta| x max(a T, a_min) x S; perpetuals at a_min (class docstring).

        ``option_delta`` maps a live option's position to its Black-76 delta; ``years`` gives every
        position's years to expiry (0 for instruments without one; None for a book with neither a dated
        future nor a live option, where it is not read).
        """
        by_expiry: dict[int, list[float]] = {}  # expiry (ns) -> [net delta, years to expiry]
        perp = 0.0
        for j in sel:
            inst, q = positions[j].instrument, float(positions[j].quantity)
            if isinstance(inst, Perpetual):
                perp += q
            elif (isinstance(inst, Future) and years[j] > 0) or int(j) in option_delta:  # held at t
                d = q * (1.0 + inst.basis) if isinstance(inst, Future) else q * option_delta[int(j)]
                entry = by_expiry.setdefault(int(inst.expiry.value), [0.0, max(float(years[j]), 0.0)])
                entry[0] += d
        total = abs(perp) * v.min_annualised_move * spot
        for net, t_years in by_expiry.values():
            total += abs(net) * max(v.annualised_move_risk * t_years, v.min_annualised_move) * spot
        return total

    def methodology(self) -> Methodology:
        """:meth:`MarginModel.methodology`, with a limitation naming each currency's first vintage under backfill.

        With ``before_first="backfill"`` every date before a currency's first vintage is margined with parameters
        published later (a methodology look-ahead the data look-ahead test cannot see): the reader of the
        report's breach rates is told which dates that is.
        """
        base = super().methodology()
        if self.before_first != "backfill":
            return base
        firsts = ", ".join(f"{asset} {table[0].start}" for asset, table in sorted(self.table.items()))
        note = (f"Dates before each currency's first parameter vintage ({firsts}) use that vintage "
                "(before_first='backfill'): they are margined with parameters Deribit published later, not the "
                "older portfolio-margin model then in force; set before_first='none' to leave them without a margin.")
        return dataclasses.replace(base, limitations=(*base.limitations, note))

    def margin(self, state: ModelState, positions: Sequence[Position], market: MarketData, t) -> float:
        """Initial or maintenance margin (NaN before the first vintage with ``before_first="none"``)."""
        b = self.breakdown(state, positions, market, t)
        if b is None:
            return float("nan")
        return b.initial if self.level == "initial" else b.maintenance
