r"""Full revaluation of a book: realised MPOR P&L and P&L under many scenarios.

One vectorised kernel prices every position of a book under every scenario at
once (:func:`revalue`); the realised P&L over the margin period of risk
(:func:`realised_pnl`) uses the same pricing.

Valuation rules
---------------
* Spot, perpetual and future: value change = quantity x (S_{t+h} - S_t)
  (futures times 1 + basis). Perpetual funding over (t, t+h] is charged when
  ``include_funding`` is set: P&L -= quantity x S_t x sum of daily funding.
* Options: Black-76 on forward = spot at the asset's implied vol of the date
  (DVOL as the at-the-money vol; flat across strikes unless the market carries
  the BTC option chains, whose fitted smile then scales it on chain dates, see
  :func:`option_vols`), time to expiry in days of 365. Scenario vol shocks move
  the at-the-money level; the smile ratio is sticky in moneyness. Over the MPOR
  the option is aged by h days and re-marked with the spot and implied vol of
  t + h. An option expiring inside (t, t + h] settles at intrinsic value on the
  spot of the last observation at or before expiry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from marginlab.datasets import DataError, MarketData

from .instruments import Future, Option, Perpetual, Position
from .pricing import black76_price
from .smile import fit_smiles, smile_ratio

__all__ = ["BookArrays", "book_arrays", "mark_to_market", "realised_pnl", "revalue", "revalue_at", "option_vols",
           "DAY"]

DAY = pd.Timedelta(days=1)
YEAR_DAYS = 365.0
SMILE_ASSET = "BTC"  # the bundled chains are Deribit BTC options
SMILE_MAX_AGE_DAYS = 3


def _smile_coefs(market: MarketData) -> np.ndarray | None:
    """Per market row, the smile coefficients in force (NaN rows: flat DVOL), or None without chains."""
    if market.option_chains is None or SMILE_ASSET not in market.asset_index:
        return None
    cached = market.__dict__.get("_marginlab_smile")
    if cached is None:
        fits = fit_smiles(market.option_chains, market.implied_vol[SMILE_ASSET])
        cached = np.full((len(market.index), 4), np.nan)
        if len(fits):
            pos = market.index.searchsorted(fits.index)
            for row, (p, date) in enumerate(zip(pos, fits.index, strict=True)):
                if p < len(market.index) and market.index[p] == date:
                    end = min(p + SMILE_MAX_AGE_DAYS + 1, len(market.index))
                    cached[p:end] = fits.iloc[row].to_numpy()
        market.__dict__["_marginlab_smile"] = cached
    return cached


def option_vols(market: MarketData, asset: str, i: int, atm_vol, strike, spot, t_years) -> np.ndarray:
    """Implied vol of options on ``asset`` at row ``i``: the ATM level (DVOL) times the smile ratio.

    The smile (:mod:`marginlab.models.smile`) applies on and up to 3 days after a bundled
    chain date when the market carries option chains (``load_market(..., with_option_chains=True)``);
    otherwise the vol is flat at ``atm_vol``.
    """
    atm = np.asarray(atm_vol, dtype=float)
    coefs = _smile_coefs(market) if asset == SMILE_ASSET else None
    if coefs is None or not np.isfinite(coefs[i, 0]):
        return np.broadcast_to(atm, np.broadcast(atm, np.asarray(strike), np.asarray(spot)).shape).copy()
    x = np.log(np.asarray(strike, float) / np.asarray(spot, float))
    return atm * smile_ratio(coefs[i], x, t_years)


def _position_vols(market: MarketData, book: BookArrays, i: int, atm, spots, t_years, m) -> np.ndarray:
    """Vols of the book's option positions ``m`` (mask or indices): :func:`option_vols` per underlying.

    ``atm`` and ``spots`` have shape (..., n_options); leading dimensions are scenarios.
    """
    atm = np.asarray(atm, dtype=float)
    spots = np.asarray(spots, dtype=float)
    out = np.empty(np.broadcast(atm, spots).shape)
    idx = book.asset_idx[m]
    strikes = book.strike[m]
    for a in np.unique(idx):
        sel = idx == a
        out[..., sel] = option_vols(market, book.assets[a], i, atm[..., sel], strikes[sel], spots[..., sel],
                                    np.asarray(t_years)[sel])
    return out


class BookArrays:
    """Column arrays of a book (one entry per position) for the vectorised kernels."""

    __slots__ = ("assets", "asset_idx", "quantity", "is_option", "is_call", "strike", "expiry",
                 "basis", "is_perp", "has_options", "linear_weight")

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
        self.basis = np.array([p.instrument.basis if isinstance(p.instrument, Future) else 0.0
                               for p in positions], dtype=float)
        self.is_perp = np.array([isinstance(p.instrument, Perpetual) for p in positions], dtype=bool)
        self.has_options = bool(self.is_option.any())
        #: quantity x (1 + basis) of linear positions, 0 for options
        self.linear_weight = np.where(self.is_option, 0.0, self.quantity * (1.0 + self.basis))


_BOOK_CACHE: dict[tuple[Position, ...], BookArrays] = {}
_BOOK_CACHE_SIZE = 4096


def book_arrays(positions: Sequence[Position]) -> BookArrays:
    """:class:`BookArrays` of a book, assets in first-seen order (read-only arrays, memoised per book)."""
    key = tuple(positions)
    book = _BOOK_CACHE.get(key)
    if book is None:
        book = BookArrays(key, list(dict.fromkeys(p.instrument.asset for p in key)))
        for name in ("asset_idx", "quantity", "is_option", "is_call", "strike", "basis", "is_perp", "linear_weight"):
            getattr(book, name).setflags(write=False)
        if len(_BOOK_CACHE) >= _BOOK_CACHE_SIZE:
            _BOOK_CACHE.clear()
        _BOOK_CACHE[key] = book
    return book


def _years_to_expiry(book: BookArrays, t: pd.Timestamp) -> np.ndarray:
    return np.array([((e - t) / DAY) / YEAR_DAYS if (o and e is not None) else 0.0
                     for e, o in zip(book.expiry, book.is_option, strict=True)])


def _cols(market: MarketData, book: BookArrays) -> list[int]:
    try:
        return [market.asset_index[a] for a in book.assets]
    except KeyError:
        unknown = [a for a in book.assets if a not in market.asset_index]
        raise DataError(f"unknown asset(s) {unknown}; the market data has {market.assets}") from None


def _market_inputs(market: MarketData, book: BookArrays, i: int, where: str):
    cols = _cols(market, book)
    spots = market.price_array[i, cols]
    if np.isnan(spots).any():
        missing = [a for a, s in zip(book.assets, spots, strict=True) if np.isnan(s)]
        raise DataError(f"{where}: no price for {missing} at {market.index[i]}")
    if not book.has_options:
        return spots, None  # implied vols are read for option books only
    vols = market.vol_array[i, cols]
    need = np.unique(book.asset_idx[book.is_option])
    if len(need) and np.isnan(vols[need]).any():
        missing = [book.assets[j] for j in need if np.isnan(vols[j])]
        raise DataError(f"{where}: options on {missing} but no implied vol at {market.index[i]} "
                        "(DVOL starts 2021-03-24 for BTC and ETH)")
    return spots, vols


def mark_to_market(positions: Sequence[Position], market: MarketData, t, where: str = "book") -> np.ndarray:
    """Value of each position at ``t`` (options at Black-76 mark; linear at 0: zero-cost contracts).

    Spot positions are valued at quantity x price. Returns an array of shape (n_positions,).
    """
    book = book_arrays(positions)
    i = market.loc_of(t)
    ts = market.index[i]
    spots, vols = _market_inputs(market, book, i, where)
    s = spots[book.asset_idx]
    value = np.zeros(len(positions))
    spot_mask = np.array([type(p.instrument).__name__ == "Spot" for p in positions], dtype=bool)
    value[spot_mask] = book.quantity[spot_mask] * s[spot_mask]
    if book.is_option.any():
        m = book.is_option
        tau = _years_to_expiry(book, ts)[m]
        v = _position_vols(market, book, i, vols[book.asset_idx][m], s[m], tau, m)
        price = black76_price(s[m], book.strike[m], tau, v, book.is_call[m])
        value[m] = book.quantity[m] * price
    return value


def revalue(positions: Sequence[Position], market: MarketData, t, spot_shocks, vol_shocks=None,
            horizon_days: float = 1.0, where: str = "book") -> np.ndarray:
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
    horizon_days : float
        Options are aged by this many days; those expiring inside it are valued
        at intrinsic value on the shocked spot.

    Returns
    -------
    ndarray of shape spot_shocks.shape[:-1] (or (n_scenarios,)): P&L in the quote currency.
    """
    return revalue_at(book_arrays(positions), market, market.loc_of(t), spot_shocks, vol_shocks, horizon_days,
                      where)


def revalue_at(book: BookArrays, market: MarketData, i: int, spot_shocks, vol_shocks=None,
               horizon_days: float = 1.0, where: str = "book") -> np.ndarray:
    """:func:`revalue` for a book's :class:`BookArrays` at row ``i`` of the market (the models' hot path)."""
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
    # linear positions: P&L = sum_i q_i (1 + basis_i) S_i (exp(shock_a(i)) - 1), one product per asset
    exposure = np.bincount(book.asset_idx, weights=book.linear_weight * s0, minlength=n_assets)
    total = np.expm1(shocks) @ exposure
    if book.has_options:
        if vol_shocks is None:
            dvol = np.zeros_like(shocks)
        ts = market.index[i]
        s1 = s0 * np.exp(shocks[..., book.asset_idx])  # (..., n_positions)
        pnl = np.zeros(s1.shape)
        m = book.is_option
        tau0 = _years_to_expiry(book, ts)[m]
        tau1 = np.maximum(tau0 - horizon_days / YEAR_DAYS, 0.0)
        atm0 = vols[book.asset_idx][m]
        atm1 = np.maximum(atm0 + dvol[..., book.asset_idx][..., m], 1e-4)
        v0 = _position_vols(market, book, i, atm0, s0[m], tau0, m)
        v1 = _position_vols(market, book, i, atm1, s1[..., m], tau1, m)
        p0 = black76_price(s0[m], book.strike[m], tau0, v0, book.is_call[m])
        p1 = black76_price(s1[..., m], book.strike[m], tau1, v1, book.is_call[m])
        pnl[..., m] = book.quantity[m] * (p1 - p0)
        total = total + pnl.sum(axis=-1)
    return total


def realised_pnl(positions: Sequence[Position], market: MarketData, t, horizon_days: int = 1,
                 include_funding: bool = False, where: str = "book") -> float:
    """Realised P&L of the frozen book from ``t`` to ``t + horizon_days`` observations.

    Linear positions: quantity x (S_{t+h} - S_t) (x (1 + basis) for futures);
    options aged and re-marked at t + h, or settled at intrinsic value on the
    last observation at or before their expiry; perpetual funding charged when
    ``include_funding`` (NaN funding counts as zero).
    """
    book = book_arrays(positions)
    i = market.loc_of(t)
    j = i + horizon_days
    if j >= len(market.index):
        raise DataError(f"{where}: no data {horizon_days} observation(s) after {market.index[i]} for the MPOR")
    cols = _cols(market, book)
    s0v, v0v = _market_inputs(market, book, i, where)
    s1v = market.price_array[j, cols]
    if np.isnan(s1v).any():
        raise DataError(f"{where}: no price for some of {book.assets} at {market.index[j]}")
    s0, s1 = s0v[book.asset_idx], s1v[book.asset_idx]
    pnl = np.zeros(len(positions))
    lin = ~book.is_option
    pnl[lin] = book.quantity[lin] * (1.0 + book.basis[lin]) * (s1[lin] - s0[lin])
    if include_funding and market.funding_array is not None and book.is_perp.any():
        fund = np.nan_to_num(market.funding_array[i + 1:j + 1][:, cols]).sum(axis=0)
        pm = book.is_perp
        pnl[pm] -= book.quantity[pm] * s0[pm] * fund[book.asset_idx[pm]]
    if book.has_options:
        t0, t1 = market.index[i], market.index[j]
        v1v = market.vol_array[j, cols]
        m = np.flatnonzero(book.is_option)
        tau0 = _years_to_expiry(book, t0)
        v0 = _position_vols(market, book, i, v0v[book.asset_idx[m]], s0[m], tau0[m], m)
        p0 = black76_price(s0[m], book.strike[m], tau0[m], v0, book.is_call[m])
        p1 = np.empty(m.size)
        for n, k in enumerate(m):
            expiry = book.expiry[k]
            a = book.asset_idx[k]
            if expiry <= t1:
                e = int(market.index.searchsorted(expiry, side="right")) - 1
                s_exp = market.price_array[e, cols[a]]
                p1[n] = max(s_exp - book.strike[k], 0.0) if book.is_call[k] else max(book.strike[k] - s_exp, 0.0)
            else:
                vol1 = v1v[a]
                if np.isnan(vol1):
                    raise DataError(f"{where}: option {positions[k].instrument.label} needs implied vol of "
                                    f"{book.assets[a]} at {t1}, which is missing")
                tau1 = ((expiry - t1) / DAY) / YEAR_DAYS
                vol1 = float(option_vols(market, book.assets[a], j, vol1, book.strike[k], s1[k], tau1))
                p1[n] = black76_price(s1[k], book.strike[k], tau1, vol1, book.is_call[k])
        pnl[m] = book.quantity[m] * (p1 - p0)
    return float(pnl.sum())
