r"""Full revaluation of a book: realised MPOR P&L and P&L under many scenarios.

One vectorised kernel prices every position of a book under every scenario at
once (:func:`revalue`); the realised P&L over the margin period of risk
(:func:`realised_pnl`) uses the same pricing.

Valuation rules
---------------
* Spot, perpetual and future: value change = quantity x (S_{t+h} - S_t)
  (futures times 1 + basis: F = S (1 + basis), a constant basis while the
  future lives). Perpetual funding over (t, t+h] is charged when
  ``include_funding`` is set: P&L -= quantity x S_t x sum of daily funding.
* Options: Black-76 on forward = spot at the vol of the regime in force
  (:func:`option_vols`): the asset's implied-vol level (DVOL, the last close
  known at the row) times the smile ratio of a chain snapshot known within the
  last 96 hours, or flat at DVOL mapped to the ATM level (x mean fitted ATM
  ratio of the snapshots known), or flat at DVOL without any snapshot
  (:mod:`marginlab.datasets.smile`). Time to expiry runs from the row's **observation
  time** (:attr:`MarketData.observation_time`: a daily row labelled D is the
  close at D 24:00 UTC) to the 08:00 UTC expiry, in years of 365 days.
  Scenario vol shocks move the at-the-money level; the smile ratio is sticky in
  moneyness.
* Horizon: the MPOR h is a number of **observations**. Scenario revaluation at
  t (:func:`revalue`) ages options by h nominal steps (h days on daily data, h
  hours on hourly data: a model at t cannot know the future observation times);
  the realised P&L (:func:`realised_pnl`) ages them to the actual observation
  time of row t + h (a maintenance gap in hourly data makes it longer) and
  re-marks them with the spot and implied vol of t + h.
* One vol regime per P&L: both ends of a realised P&L are marked under the same
  kind of regime. When fitted smiles are in force at t and at t + h, each end
  is marked under its own (the marks a participant saw, so skew changes
  between snapshots are P&L); otherwise both ends are marked under the regime
  in force at t (its smile, sticky in moneyness, applied to the implied-vol
  level of t + h; or its flat regime). A smile appearing or lapsing between t
  and t + h at the edge of the chain coverage would otherwise be an artificial
  jump (-$12.1k, 36% of the margin, on the short ATM straddle of 2022-05-03,
  whose t + h fell after the smile's 96 hours). Model scenarios
  (:func:`revalue`) mark both ends under the regime of t.
* Settlement: an option expiring inside (t, t + h] settles at intrinsic value
  on the close of the **last observation at or before its expiry** (the last
  price known at the fixing; nothing observed after expiry is used). On daily
  data that is the close at 00:00 UTC of the expiry day (the row labelled the
  day before expiry), 8 hours before Deribit's 08:00 fixing: the next daily
  close is 16 hours after it. On hourly data it is the close at 08:00 itself.
  An option that expired at or before t's observation has settled: it carries
  its settlement value and no P&L. A dated future expiring inside (t, t + h]
  settles on the same close S_e: P&L = quantity x (S_e - F_t), F_t = S_t (1 + basis)
  (the basis is paid back at settlement: a cash-settled future converges to its
  index at the fixing); one expired at or before t's observation has settled, with
  no P&L and no exposure. Scenarios (:func:`revalue_at`) settle a future
  expiring inside the horizon at the shocked spot, as they settle options.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.conventions import date_format
from marginlab.datasets.smile import RATIO_BOUNDS, T_REF, smile_ratio

from ._numba import NUMBA_ENABLED, njit
from .instruments import Future, Option, Perpetual, Position
from .pricing import black76_price

if NUMBA_ENABLED:
    from .pricing import black76_one

__all__ = ["Book", "BookArrays", "BookState", "book_arrays", "book_state", "linear_weights", "mark_to_market",
           "option_mark", "realised_pnl", "revalue", "revalue_at", "option_vols"]


def option_vols(market: MarketData, asset: str, i: int, atm_vol, strike, spot, t_years) -> np.ndarray:
    """Implied vol of options on ``asset`` under the vol regime in force at row ``i``.

    ``atm_vol`` is the asset's implied-vol level (DVOL, possibly shocked); the
    regime (:meth:`MarketData.smile_coefficients`, fitted once at load from the
    option chains, :mod:`marginlab.datasets.smile`) scales it by the smile ratio
    of a snapshot known at the row's observation time, sticky in moneyness
    ln(K / S); without a smile in force the vol is flat at ``atm_vol``. Arrays
    broadcast; returns an ndarray.
    """
    atm = np.asarray(atm_vol, dtype=float)
    t_years = np.asarray(t_years, dtype=float)
    shape = np.broadcast(atm, np.asarray(strike), np.asarray(spot), t_years).shape
    coefs = market.smile_coefficients(asset)
    regime = _regime(coefs, i)
    if regime == _NO_SMILE:
        return np.broadcast_to(atm, shape).copy()
    c = coefs[i]
    if regime == _FLAT_SMILE:  # DVOL mapped to the ATM level
        ratio = np.where(t_years > 0, min(max(c[0], RATIO_BOUNDS[0]), RATIO_BOUNDS[1]), 1.0)
        return np.broadcast_to(atm * ratio, shape).copy()
    x = np.broadcast_to(np.log(np.asarray(strike, float) / np.asarray(spot, float)), shape)
    return atm * smile_ratio(c, x, np.broadcast_to(t_years, shape))


def _position_vols(market: MarketData, book: BookArrays, i, atm, spots, t_years, m) -> np.ndarray:
    """Vols of the book's option positions ``m`` (mask or indices): :func:`option_vols` per underlying.

    ``i`` is the row whose vol regime applies, or an array of rows per book asset.
    ``atm`` and ``spots`` have shape (..., n_options); leading dimensions are scenarios.
    """
    atm = np.asarray(atm, dtype=float)
    spots = np.asarray(spots, dtype=float)
    out = np.empty(np.broadcast(atm, spots).shape)
    idx = book.asset_idx[m]
    strikes = book.strike[m]
    for a in np.unique(idx):
        sel = idx == a
        row = i if np.ndim(i) == 0 else i[a]
        out[..., sel] = option_vols(market, book.assets[a], row, atm[..., sel], strikes[sel], spots[..., sel],
                                    np.asarray(t_years)[sel])
    return out


#: The vol regime in force at a row (:func:`_regime`): flat at the ATM level (no smile known), flat at the
#: level x b0 (DVOL mapped to the ATM level), or a fitted smile (b0 .. b3).
_NO_SMILE, _FLAT_SMILE, _FITTED_SMILE = 0, 1, 2


def _regime(coefs: np.ndarray | None, i: int) -> int:
    """The vol regime of an asset's smile coefficients (:meth:`MarketData.smile_coefficients`) at row ``i``."""
    if coefs is None or not np.isfinite(coefs[i, 0]):
        return _NO_SMILE
    return _FLAT_SMILE if (coefs[i, 1] == 0.0 and coefs[i, 2] == 0.0 and coefs[i, 3] == 0.0) else _FITTED_SMILE


def _fitted_smile(coefs: np.ndarray | None, i: int) -> bool:
    return _regime(coefs, i) == _FITTED_SMILE


def _end_regime_rows(market: MarketData, book: BookArrays, i: int, j: int) -> np.ndarray:
    """Per book asset, the row whose vol regime marks the far end t + h of a realised P&L.

    Row ``j`` (its own snapshot's smile: the marks a participant saw) when fitted
    smiles are in force at both t and t + h; otherwise row ``i``, the regime of t.
    """
    rows = np.full(len(book.assets), i)
    for a, asset in enumerate(book.assets):
        coefs = market.smile_coefficients(asset)
        if _fitted_smile(coefs, i) and _fitted_smile(coefs, j):
            rows[a] = j
    return rows


def _smile_inputs(market: MarketData, book: BookArrays, i: int, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per option ``m`` of the book, the vol regime in force at row ``i`` (:func:`_regime`) and its coefficients."""
    mode = np.full(m.size, _NO_SMILE, dtype=np.int64)
    coef = np.zeros((m.size, 4))
    for a in np.unique(book.asset_idx[m]):
        c = market.smile_coefficients(book.assets[a])
        regime = _regime(c, i)
        if regime != _NO_SMILE:
            sel = book.asset_idx[m] == a
            coef[sel], mode[sel] = c[i], regime
    return mode, coef


@njit(cache=True)
def _scenario_option_pnl(spot, atm, log_moneyness, strike, is_call, tau, mode, coef, quantity, p0, lo, hi, t_ref,
                         out):  # pragma: no cover - compiled; tested against the NumPy path of revalue_at
    """P&L of each live option under each scenario: q (Black-76(S, K, tau, vol) - p0), vol = ATM x smile ratio.

    ``spot``, ``atm`` and ``log_moneyness`` (ln(K / S), used by fitted smiles only) have shape
    (n_scenarios, n_options): the shocked spot, ATM level and log-moneyness per option; ``out`` the same
    shape. The smile ratio is :func:`marginlab.datasets.smile.smile_ratio` (fitted smile) or the flat b0
    (flat regime), clipped to [lo, hi], 1 at or after expiry. The log-moneyness comes from NumPy's ``log``,
    as in :func:`option_vols`: NumPy's vectorised ``log`` and libm's differ in the last bit on ~0.5% of
    inputs (AVX-512), and the compiled pass must give the NumPy path's numbers exactly.
    """
    n, k = spot.shape
    for m in range(n):
        for j in range(k):
            f = spot[m, j]
            t = tau[j]
            v = atm[m, j]
            if t > 0.0 and mode[j] == _FLAT_SMILE:
                v = v * min(max(coef[j, 0], lo), hi)
            elif t > 0.0 and mode[j] == _FITTED_SMILE:
                rt = math.sqrt(max(t, 1e-9))
                x = log_moneyness[m, j] / rt
                r = coef[j, 0] + coef[j, 1] * x + coef[j, 2] * (x * x) + coef[j, 3] * (rt - t_ref)
                v = v * min(max(r, lo), hi)
            out[m, j] = (black76_one(f, strike[j], t, v, is_call[j]) - p0[j]) * quantity[j]


class BookArrays:
    """Column arrays of a book (one entry per position) for the vectorised kernels."""

    __slots__ = ("assets", "asset_idx", "quantity", "is_option", "is_call", "strike", "expiry", "expiry_ns",
                 "basis", "is_perp", "is_future", "has_options", "has_futures", "linear_weight", "option_assets",
                 "contracts", "positions_of", "linear_positions")

    def __init__(self, positions: Sequence[Position], assets: list[str]):
        self.assets = assets
        self.asset_idx = np.array([assets.index(p.instrument.asset) for p in positions], dtype=np.int64)
        self.quantity = np.array([p.quantity for p in positions], dtype=float)
        self.is_option = np.array([isinstance(p.instrument, Option) for p in positions], dtype=bool)
        self.is_call = np.array([isinstance(p.instrument, Option) and p.instrument.is_call for p in positions])
        self.strike = np.array([p.instrument.strike if isinstance(p.instrument, Option) else np.nan
                                for p in positions], dtype=float)
        self.expiry = [p.instrument.expiry if isinstance(p.instrument, Option | Future) else None
                       for p in positions]
        #: expiry as int64 nanoseconds since the epoch (0 for instruments without one)
        self.expiry_ns = np.array([0 if e is None else e.value for e in self.expiry], dtype=np.int64)
        self.basis = np.array([p.instrument.basis if isinstance(p.instrument, Future) else 0.0
                               for p in positions], dtype=float)
        self.is_perp = np.array([isinstance(p.instrument, Perpetual) for p in positions], dtype=bool)
        self.is_future = np.array([isinstance(p.instrument, Future) for p in positions], dtype=bool)
        self.has_options = bool(self.is_option.any())
        self.has_futures = bool(self.is_future.any())
        #: quantity x (1 + basis) of linear positions, 0 for options (a dated future's weight while it lives:
        #: :func:`linear_weights` gives the weights at a row, expired and settling futures included)
        self.linear_weight = np.where(self.is_option, 0.0, self.quantity * (1.0 + self.basis))
        #: indices (into ``assets``) of the assets the book holds options on, sorted
        self.option_assets = np.unique(self.asset_idx[self.is_option])
        #: per asset, the indices of its positions (ascending); the indices of the linear positions
        self.positions_of = tuple(tuple(j for j, k in enumerate(self.asset_idx.tolist()) if k == a)
                                  for a in range(len(assets)))
        self.linear_positions = tuple(np.flatnonzero(~self.is_option).tolist())
        #: per position, the option contract (asset, expiry in ns, strike, is_call), None for linear positions:
        #: the key of per-contract memos of one date (:func:`book_state`'s ``cache``)
        self.contracts = tuple((p.instrument.asset, int(p.instrument.expiry.value), float(p.instrument.strike),
                                bool(p.instrument.is_call)) if isinstance(p.instrument, Option) else None
                               for p in positions)

    def held_at(self, observed_ns: int) -> np.ndarray:
        """Boolean mask of the positions still held at ``observed_ns`` (ns since the epoch, UTC).

        :meth:`Position.held_at <marginlab.models.instruments.Position.held_at>` over the arrays: options and
        dated futures expired at or before it have settled; spot and perpetuals are always held.
        """
        return ~(self.is_option | self.is_future) | (self.expiry_ns > observed_ns)


class Book(tuple):
    """An immutable book of positions that builds its :class:`BookArrays` once.

    The engine hands every model a ``Book`` for each portfolio and date, so the
    column arrays are built once per book and date whoever asks (no process-wide
    cache). A plain sequence of positions works everywhere too; its arrays are
    then built on each call.
    """

    @functools.cached_property
    def arrays(self) -> BookArrays:
        """The book's column arrays (read-only)."""
        return _arrays(self)


def _arrays(positions: Sequence[Position]) -> BookArrays:
    book = BookArrays(positions, list(dict.fromkeys(p.instrument.asset for p in positions)))
    for name in ("asset_idx", "quantity", "is_option", "is_call", "strike", "expiry_ns", "basis", "is_perp",
                 "is_future", "linear_weight", "option_assets"):
        getattr(book, name).setflags(write=False)
    return book


def book_arrays(positions: Sequence[Position]) -> BookArrays:
    """:class:`BookArrays` of a book, assets in first-seen order (read-only arrays; built once per :class:`Book`)."""
    return positions.arrays if isinstance(positions, Book) else _arrays(positions)


def _years_to_expiry(book: BookArrays, market: MarketData, i: int) -> np.ndarray:
    """Years from the observation time of row ``i`` to each position's expiry (0 for linear positions)."""
    return np.where(book.is_option, market.years_to(i, book.expiry_ns), 0.0)


def _intrinsic(spot, strike, is_call):
    return np.where(is_call, np.maximum(spot - strike, 0.0), np.maximum(strike - spot, 0.0))


def _settlement_spots(market: MarketData, book: BookArrays, cols: list[int], k: np.ndarray) -> np.ndarray:
    """Close of the last observation at or before the expiry of each position ``k``."""
    e = np.searchsorted(market.observation_ns, book.expiry_ns[k], side="right") - 1
    s = market.price_array[e, np.asarray(cols)[book.asset_idx[k]]]
    if (e < 0).any() or np.isnan(s).any():
        bad = [book.expiry[j] for j in np.asarray(k)[(e < 0) | np.isnan(s)]]
        raise DataError(f"no {book.assets[book.asset_idx[k[0]]]} close at or before the expiry {bad[0]} to "
                        "settle the contract")
    return s


def linear_weights(book: BookArrays, market: MarketData, i: int, end_ns: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    r"""Weights of the book's linear positions at the start (row ``i``) and end (time ``end_ns``) of a P&L.

    The linear P&L from row i to a time e with end spots :math:`S_e` (a settling future's: its settlement
    spot) is :math:`\sum_k w^1_k S_{e,k} - w^0_k S_{i,k}`.

    * ``w0``: :math:`q(1 + b)` for spot, perpetuals and futures still held at the observation time of row
      ``i`` (:meth:`~marginlab.models.instruments.Position.held_at`); 0 for options and for futures expired
      at or before it (settled: no exposure).
    * ``w1``: ``w0``, except :math:`q` for a future expiring in (observation of i, ``end_ns``]: it settles
      on the spot (the basis is paid back; module docstring). Without ``end_ns``, ``w1 = w0``.

    A book without futures returns :attr:`BookArrays.linear_weight` twice (the same array). Shapes
    (n_positions,).
    """
    if not book.has_futures:
        return book.linear_weight, book.linear_weight
    expired, settling = _future_masks(book, market, i, end_ns)
    w0 = np.where(expired, 0.0, book.linear_weight)
    return w0, np.where(settling, book.quantity, w0)


def _future_masks(book: BookArrays, market: MarketData, i: int, end_ns: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Futures expired at or before the observation of row ``i``; those expiring in (that time, ``end_ns``]."""
    expired = book.is_future & ~book.held_at(market.observation_ns[i])
    if end_ns is None:
        return expired, np.zeros_like(expired)
    return expired, book.is_future & ~expired & (book.expiry_ns <= end_ns)


def _cols(market: MarketData, book: BookArrays) -> list[int]:
    try:
        return [market.asset_index[a] for a in book.assets]
    except KeyError:
        unknown = [a for a in book.assets if a not in market.asset_index]
        raise DataError(f"unknown asset(s) {unknown}; the market data has {market.assets}") from None


class Where:
    """A book's name in error messages, ``"<name> at <t>"``, formatted only when a message is.

    A model names its book on every call; formatting the timestamp costs ~5 us, more than many of the call's
    NumPy operations on a small book.
    """

    __slots__ = ("name", "t")

    def __init__(self, name: str, t) -> None:
        self.name, self.t = name, t

    def __str__(self) -> str:
        return f"{self.name} at {self.t}"


def _market_inputs(market: MarketData, book: BookArrays, i: int, where: str | Where):
    cols = _cols(market, book)
    spots = market.price_array[i, cols]
    if any(x != x for x in spots.tolist()):  # NaN: np.isnan(spots).any() without two NumPy calls
        missing = [a for a, s in zip(book.assets, spots, strict=True) if np.isnan(s)]
        raise DataError(f"{where}: no price for {missing} at {market.index[i]}")
    if not book.has_options:
        return spots, None  # implied vols are read for option books only
    vols = market.vol_array[i, cols]
    need = book.option_assets
    if len(need) and np.isnan(vols[need]).any():
        missing = [book.assets[j] for j in need if np.isnan(vols[j])]
        raise DataError(f"{where}: options on {missing} but no implied vol at {market.index[i]} "
                        "(DVOL starts 2021-03-24 for BTC and ETH)")
    return spots, vols


class BookState(NamedTuple):
    """A book's market inputs at one row, for scenario models (:func:`book_state`).

    Attributes
    ----------
    spots : ndarray of shape (n_assets,)
        Close of each of the book's assets (first-seen order), quote currency.
    live : ndarray of int, shape (n_live,)
        Positions (indices into the book) of the options still alive at the row's observation time.
    tau : ndarray of shape (n_live,)
        Their years (365 days) to expiry from the row's observation time.
    vol : ndarray of shape (n_live,), or None
        Their mark vols (decimal) under the vol regime in force at the row (:func:`option_vols`); None when
        left out (``book_state(..., with_vols=False)``).
    linear : ndarray of shape (n_positions,)
        Each position's linear weight held at the row, quantity x (1 + basis) (units of the underlying):
        0 for options and for futures expired at or before the row's observation time
        (``w0`` of :func:`linear_weights`).
    """

    spots: np.ndarray
    live: np.ndarray
    tau: np.ndarray
    vol: np.ndarray
    linear: np.ndarray


def book_state(book: BookArrays, market: MarketData, i: int, where: str | Where = "book", with_vols: bool = True,
               cache: dict | None = None) -> BookState:
    """Spots of the book's assets and the live options' time to expiry and mark vol at row ``i``.

    The inputs :func:`revalue_at` prices from, exposed for models that build their own scenario
    grids; options and dated futures that expired at or before the row's observation time have
    settled and are left out (no risk, as in :func:`revalue_at`). ``with_vols=False`` leaves the
    mark vols out (``vol`` is None: for a model that has what it needs of them already).

    ``cache``: a memo of row ``i`` only (e.g. ``context.row_cache("mark_vols", market, i)``) holding each
    option contract's mark vol (:attr:`BookArrays.contracts`), so that the books and standalone legs of a
    date holding the same contract compute its vol once. A contract's vol is the same number whichever
    options it is computed beside (:func:`option_vols` is element-wise), so the cache moves no number.
    """
    spots, vols = _market_inputs(market, book, i, where)
    linear = linear_weights(book, market, i)[0]
    if not book.has_options:
        empty = np.empty(0)
        return BookState(spots, np.empty(0, dtype=np.int64), empty, empty, linear)
    tau_all = _years_to_expiry(book, market, i)
    m = np.flatnonzero(book.is_option & (tau_all > 0))
    if not with_vols:
        return BookState(spots, m, tau_all[m], None, linear)
    if cache is None or not m.size:
        s = spots[book.asset_idx[m]]
        vol = _position_vols(market, book, i, vols[book.asset_idx[m]], s, tau_all[m], m) if m.size else np.empty(0)
        return BookState(spots, m, tau_all[m], np.asarray(vol, dtype=float), linear)
    keys = [book.contracts[j][:3] for j in m.tolist()]  # the vol does not depend on the option's kind
    missing = [k for k, key in enumerate(keys) if key not in cache]
    if missing:
        mm = m[missing]
        new = _position_vols(market, book, i, vols[book.asset_idx[mm]], spots[book.asset_idx[mm]], tau_all[mm], mm)
        for k, v in zip(missing, np.asarray(new, dtype=float).tolist(), strict=True):
            cache[keys[k]] = v
    return BookState(spots, m, tau_all[m], np.array([cache[key] for key in keys], dtype=float), linear)


def mark_to_market(positions: Sequence[Position], market: MarketData, t, where: str = "book") -> np.ndarray:
    """Value of each position at ``t`` (options at Black-76 mark; linear at 0: zero-cost contracts).

    Spot positions are valued at quantity x price; options at their Black-76
    mark with the time to expiry from the observation time of ``t`` (an option
    already expired at that time at its settlement value). Returns an array of
    shape (n_positions,).
    """
    book = book_arrays(positions)
    i = market.loc_of(t)
    spots, vols = _market_inputs(market, book, i, where)
    s = spots[book.asset_idx]
    value = np.zeros(len(positions))
    spot_mask = np.array([type(p.instrument).__name__ == "Spot" for p in positions], dtype=bool)
    value[spot_mask] = book.quantity[spot_mask] * s[spot_mask]
    if book.has_options:
        m = np.flatnonzero(book.is_option)
        tau = _years_to_expiry(book, market, i)[m]
        v = _position_vols(market, book, i, vols[book.asset_idx][m], s[m], tau, m)
        price = black76_price(s[m], book.strike[m], tau, v, book.is_call[m])
        dead = tau <= 0
        if dead.any():
            settle = _settlement_spots(market, book, _cols(market, book), m[dead])
            price[dead] = _intrinsic(settle, book.strike[m[dead]], book.is_call[m[dead]])
        value[m] = book.quantity[m] * price
    return value


def option_mark(option: Option, market: MarketData, t, where: str = "book") -> float:
    """Black-76 mark of one unit of ``option`` at ``t`` (see :func:`mark_to_market`)."""
    return float(mark_to_market((Position(option, 1.0),), market, t, where)[0])


def _horizon(market: MarketData, horizon: float, horizon_days: float | None, name: str = "horizon") -> float:
    """The horizon in observations, accepting the old keyword ``horizon_days`` on daily panels only."""
    if horizon_days is None:
        return horizon
    if horizon != 1:
        raise ValueError(f"give either {name} (observations) or horizon_days, not both")
    if market.freq != "1d":
        raise ValueError(f"horizon_days is ambiguous on a {market.freq!r} panel: pass {name}= (a number of "
                         "observations; converted to time through the panel's observation step)")
    return horizon_days


def revalue(positions: Sequence[Position], market: MarketData, t, spot_shocks, vol_shocks=None,
            horizon: float = 1, where: str = "book", *, horizon_days: float | None = None) -> np.ndarray:
    """P&L of a book under scenarios, reading market data at ``t`` only.

    Parameters
    ----------
    positions : sequence of Position
    market : MarketData
    t : timestamp in ``market.index``
    spot_shocks : ndarray of shape (n_scenarios, n_assets) or (n_scenarios,)
        Log returns of each of the book's assets (first-seen order, see
        :func:`book_arrays`) over the horizon; a 1-d array for a one-asset book.
        Leading dimensions are allowed: shape (..., n_assets).
    vol_shocks : ndarray, same shape as ``spot_shocks``, optional
        Additive changes of implied vol (decimal, 0.05 = +5 vol points); the
        shocked vol is floored at 1e-4.
    horizon : float
        The horizon in **observations** of the panel (the MPOR): options are
        aged by ``horizon`` x the panel's step (:meth:`MarketData.horizon_years`;
        1 = one day on a daily panel, one hour on an hourly panel); those
        expiring inside it are valued at intrinsic value on the shocked spot,
        dated futures expiring inside it settle on the shocked spot, and options
        and futures expired at or before t carry no P&L.
    where : str
        Names the book in error messages.
    horizon_days : float, optional
        The former name of ``horizon``, kept as an alias on daily panels (where
        an observation is a day); on other panels it raises ValueError.

    Returns
    -------
    ndarray of shape spot_shocks.shape[:-1] (or (n_scenarios,)): P&L in the quote currency.
    """
    return revalue_at(book_arrays(positions), market, market.loc_of(t), spot_shocks, vol_shocks,
                      _horizon(market, horizon, horizon_days), where)


def revalue_at(book: BookArrays, market: MarketData, i: int, spot_shocks, vol_shocks=None,
               horizon: float = 1, where: str = "book", option_legs: bool = False):
    """:func:`revalue` for a book's :class:`BookArrays` at row ``i`` of the market (the models' hot path).

    ``horizon`` is in observations (see :func:`revalue`). With ``option_legs=True`` returns
    ``(pnl, legs)``: ``legs`` maps the index (in the book) of each live option to its P&L alone on the
    same shocks of its underlying, equal bit for bit to revaluing that position as a one-position book
    (the same operations on the same numbers), so a model whose leg scenarios are the book's can take
    a leg's margin from the book's revaluation.
    """
    n_assets = len(book.assets)
    shocks = np.asarray(spot_shocks, dtype=float)
    if n_assets == 1 and (shocks.ndim == 1 or shocks.shape[-1] != 1):
        shocks = shocks[..., None]
    if shocks.shape[-1] != n_assets:
        raise ValueError(f"{where}: spot_shocks has {shocks.shape[-1]} columns for {n_assets} assets {book.assets}")
    if vol_shocks is not None:
        dvol = np.asarray(vol_shocks, dtype=float)
        if n_assets == 1 and dvol.shape != shocks.shape:
            dvol = dvol.reshape(shocks.shape)
        if dvol.shape != shocks.shape:
            raise ValueError(f"{where}: vol_shocks shape {dvol.shape} differs from spot_shocks {shocks.shape}")
    spots, vols = _market_inputs(market, book, i, where)
    s0 = spots[book.asset_idx]
    # linear positions: P&L = sum_i w1_i S_i (exp(shock_a(i)) - 1) + (w1_i - w0_i) S_i, one product per asset
    # (w0 = w1 = q (1 + basis) but for dated futures expired by t or settling inside the horizon:
    # linear_weights)
    w0, w1 = linear_weights(book, market, i, int(market.observation_ns[i]) + round(horizon * market.step.value))
    exposure = np.bincount(book.asset_idx, weights=w1 * s0, minlength=n_assets)
    moved = np.expm1(shocks)
    total = moved @ exposure
    if book.has_futures:  # a settling future pays its basis back: the constant (w1 - w0) S
        total = total + float(((w1 - w0) * s0).sum())
    if book.has_options:
        if vol_shocks is None:
            dvol = np.zeros_like(shocks)
        tau_all = _years_to_expiry(book, market, i)
        m = np.flatnonzero(book.is_option & (tau_all > 0))  # options expired by t have settled: no P&L
        if m.size:
            s1 = s0[m] * np.exp(shocks[..., book.asset_idx[m]])  # (..., n_live_options)
            tau0 = tau_all[m]
            tau1 = np.maximum(tau0 - market.horizon_years(horizon), 0.0)
            atm0 = vols[book.asset_idx[m]]
            atm1 = np.maximum(atm0 + dvol[..., book.asset_idx[m]], 1e-4)
            v0 = _position_vols(market, book, i, atm0, s0[m], tau0, m)
            p0 = black76_price(s0[m], book.strike[m], tau0, v0, book.is_call[m])
            if NUMBA_ENABLED:  # smile and price in one compiled pass over the scenarios
                mode, coef = _smile_inputs(market, book, i, m)
                shape = np.broadcast_shapes(s1.shape, atm1.shape)
                spot2 = np.ascontiguousarray(np.broadcast_to(s1, shape)).reshape(-1, m.size)
                atm2 = np.ascontiguousarray(np.broadcast_to(atm1, shape)).reshape(-1, m.size)
                contrib = np.empty(spot2.shape)
                logm = np.log(book.strike[m] / spot2) if (mode == _FITTED_SMILE).any() else spot2
                _scenario_option_pnl(spot2, atm2, logm, book.strike[m], book.is_call[m], tau1, mode, coef,
                                     book.quantity[m], p0, RATIO_BOUNDS[0], RATIO_BOUNDS[1], T_REF, contrib)
                contrib = contrib.reshape(shape)
            else:
                v1 = _position_vols(market, book, i, atm1, s1, tau1, m)
                p1 = black76_price(s1, book.strike[m], tau1, v1, book.is_call[m])
                contrib = (p1 - p0) * book.quantity[m]
            total = total + contrib.sum(axis=-1)
            if option_legs:
                # one option alone: no linear exposure (expm1(shocks) @ [0.0], as its own revaluation
                # computes it, signed zeros included) plus its column
                legs = {int(j): (moved[..., book.asset_idx[j]:book.asset_idx[j] + 1] @ np.zeros(1))
                        + contrib[..., k:k + 1].sum(axis=-1) for k, j in enumerate(m)}
                return total, legs
    return (total, {}) if option_legs else total


def _funding(market: MarketData, book: BookArrays, cols: list[int], i: int, j: int, where: str) -> np.ndarray:
    """Funding (fraction of notional) per book asset over rows i+1 .. j; DataError where a held perpetual has none."""
    rows = market.funding_array[i + 1:j + 1][:, cols] if market.funding_array is not None else \
        np.full((j - i, len(cols)), np.nan)
    fund = rows.sum(axis=0)
    missing = [a for a in np.unique(book.asset_idx[book.is_perp]) if np.isnan(fund[a])]
    if missing:
        asset = book.assets[missing[0]]
        covered = []
        if market.funding is not None:
            for name in market.funding.columns:
                s = market.funding[name]
                if s.notna().any():
                    covered.append(f"{name} from {s.first_valid_index():%Y-%m-%d} to {s.last_valid_index():%Y-%m-%d}")
        coverage = ("funding data covers " + "; ".join(covered)) if covered else "the market has no funding data"
        date = market.index[i].strftime(date_format(market.freq))
        raise DataError(f"{where}: include_funding is set but the {asset} perpetual has no funding data over the "
                        f"MPOR after {date} ({coverage}): set include_funding = false or restrict the books/dates")
    return fund


def realised_pnl(positions: Sequence[Position], market: MarketData, t, horizon: int = 1,
                 include_funding: bool = False, where: str = "book", *, horizon_days: int | None = None) -> float:
    """Realised P&L of the frozen book from ``t`` to ``t + horizon`` observations.

    Linear positions: quantity x (S_{t+h} - S_t) (x (1 + basis) for futures);
    a dated future expiring inside the window settles: quantity x (S_e - S_t (1 + basis)),
    S_e the close of the last observation at or before its expiry; one expired at or
    before the observation of t has no P&L; options aged from the observation time of t to that of t + h and re-marked
    there, or settled at intrinsic value on the close of the last observation
    at or before their expiry (module docstring); perpetual funding of rows
    t+1 .. t+h (paid over [observation of t, observation of t + h)) charged
    when ``include_funding``: a perpetual whose window lacks funding data
    (NaN: outside the series' coverage) raises DataError, never counts as 0.
    ``horizon_days`` is the former name of ``horizon`` (daily panels only).
    """
    horizon = _horizon(market, horizon, horizon_days)
    if not isinstance(horizon, int | np.integer) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"{where}: the realised P&L horizon must be a whole number of observations >= 1, "
                         f"got {horizon!r}")
    book = book_arrays(positions)
    i = market.loc_of(t)
    j = i + horizon
    if j >= len(market.index):
        raise DataError(f"{where}: no data {horizon} observation(s) after {market.index[i]} for the MPOR")
    cols = _cols(market, book)
    s0v, v0v = _market_inputs(market, book, i, where)
    s1v = market.price_array[j, cols]
    if np.isnan(s1v).any():
        raise DataError(f"{where}: no price for some of {book.assets} at {market.index[j]}")
    s0, s1 = s0v[book.asset_idx], s1v[book.asset_idx]
    pnl = np.zeros(len(positions))
    lin = ~book.is_option
    pnl[lin] = book.quantity[lin] * (1.0 + book.basis[lin]) * (s1[lin] - s0[lin])
    if book.has_futures:
        expired, settling = _future_masks(book, market, i, market.observation_ns[j])
        pnl[expired] = 0.0
        if settling.any():
            k = np.flatnonzero(settling)
            pnl[k] = book.quantity[k] * (_settlement_spots(market, book, cols, k) - (1.0 + book.basis[k]) * s0[k])
    if include_funding and book.is_perp.any():
        pm = book.is_perp
        fund = _funding(market, book, cols, i, j, where)
        pnl[pm] -= book.quantity[pm] * s0[pm] * fund[book.asset_idx[pm]]
    if book.has_options:
        tau0 = _years_to_expiry(book, market, i)
        tau1 = _years_to_expiry(book, market, j)
        m = np.flatnonzero(book.is_option & (tau0 > 0))  # options expired by t have settled: no P&L
        if m.size:
            v0 = _position_vols(market, book, i, v0v[book.asset_idx[m]], s0[m], tau0[m], m)
            p0 = black76_price(s0[m], book.strike[m], tau0[m], v0, book.is_call[m])
            p1 = np.empty(m.size)
            settled = tau1[m] <= 0
            if settled.any():
                k = m[settled]
                p1[settled] = _intrinsic(_settlement_spots(market, book, cols, k), book.strike[k], book.is_call[k])
            live = ~settled
            if live.any():
                k = m[live]
                vol1 = market.vol_array[j, cols][book.asset_idx[k]]
                if np.isnan(vol1).any():
                    bad = k[np.isnan(vol1)][0]
                    raise DataError(f"{where}: option {positions[bad].instrument.label} needs implied vol of "
                                    f"{book.assets[book.asset_idx[bad]]} at {market.index[j]}, which is missing")
                # one vol regime per P&L (module docstring): t + h under its own fitted smile when both ends
                # have one, otherwise under the regime of t
                v1 = _position_vols(market, book, _end_regime_rows(market, book, i, j), vol1, s1[k], tau1[k], k)
                p1[live] = black76_price(s1[k], book.strike[k], tau1[k], v1, book.is_call[k])
            pnl[m] = book.quantity[m] * (p1 - p0)
    return float(pnl.sum())
