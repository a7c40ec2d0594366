r"""Black-76 prices and Greeks of European options, numba kernels with Python twins.

Conventions (documented once, used everywhere): the forward equals the spot
(zero rates, zero basis: crypto options on Deribit are priced off a synthetic
forward very close to the index), time in years of 365 days, volatility
annualised as a decimal. Prices are in the quote currency per unit of the
underlying.

.. math::
    d_1 = \frac{\ln(F/K) + \sigma^2 T/2}{\sigma\sqrt T},\quad d_2 = d_1 - \sigma\sqrt T,\quad
    C = F N(d_1) - K N(d_2),\quad P = K N(-d_2) - F N(-d_1).

Greeks (undiscounted): :math:`\Delta_C = N(d_1)`, :math:`\Delta_P = N(d_1) - 1`,
:math:`\Gamma = \phi(d_1)/(F\sigma\sqrt T)`, vega :math:`= F\phi(d_1)\sqrt T` per 1.00 of
vol, theta :math:`= -F\phi(d_1)\sigma/(2\sqrt T)` per year. At or after expiry
(T <= 0) or with zero vol the price is the intrinsic value and the Greeks are
those of the payoff (delta 0/±1, gamma = vega = theta = 0).

Reference: Black (1976), "The pricing of commodity contracts", J. Financial
Economics 3. The kernels are ``@njit(cache=True)`` loops; setting the
environment variable ``MARGINLAB_DISABLE_NUMBA=1`` forces the vectorised NumPy
twin, which the tests use as the reference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from ._numba import NUMBA_ENABLED, njit

__all__ = ["black76_price", "black76_greeks", "strike_from_delta", "NUMBA_ENABLED"]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _norm_cdf(x):
    return 0.5 * math.erfc(-x / _SQRT2)


if NUMBA_ENABLED:
    _norm_cdf_nb = njit(cache=True)(_norm_cdf)

    @njit(cache=True)
    def black76_one(f, k, t, s, is_call):  # pragma: no cover - compiled
        """Black-76 price of one option (the formula of the module docstring; intrinsic if t <= 0 or s <= 0)."""
        if t <= 0.0 or s <= 0.0:
            return max(f - k, 0.0) if is_call else max(k - f, 0.0)
        sq = s * math.sqrt(t)
        d1 = (math.log(f / k) + 0.5 * sq * sq) / sq
        d2 = d1 - sq
        if is_call:
            return f * _norm_cdf_nb(d1) - k * _norm_cdf_nb(d2)
        return k * _norm_cdf_nb(-d2) - f * _norm_cdf_nb(-d1)

    @njit(cache=True)
    def _price_kernel(forward, strike, t_years, vol, is_call, out):  # pragma: no cover - compiled
        for i in range(forward.size):
            out[i] = black76_one(forward[i], strike[i], t_years[i], vol[i], is_call[i])

    @njit(cache=True)
    def _greeks_kernel(forward, strike, t_years, vol, is_call, out):  # pragma: no cover - compiled
        for i in range(forward.size):
            f, k, t, s = forward[i], strike[i], t_years[i], vol[i]
            if t <= 0.0 or s <= 0.0:
                itm = f > k if is_call[i] else f < k
                out[i, 0] = (1.0 if is_call[i] else -1.0) if itm else 0.0
                out[i, 1] = 0.0
                out[i, 2] = 0.0
                out[i, 3] = 0.0
                continue
            rt = math.sqrt(t)
            sq = s * rt
            d1 = (math.log(f / k) + 0.5 * sq * sq) / sq
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
            nd1 = _norm_cdf_nb(d1)
            out[i, 0] = nd1 if is_call[i] else nd1 - 1.0
            out[i, 1] = pdf / (f * sq)
            out[i, 2] = f * pdf * rt
            out[i, 3] = -f * pdf * s / (2.0 * rt)


def _broadcast(forward, strike, t_years, vol, is_call):
    arrays = [np.asarray(forward, float), np.asarray(strike, float), np.asarray(t_years, float),
              np.asarray(vol, float), np.asarray(is_call, bool)]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays[1:]):  # (inputs of one shape, the models' case, need no broadcast)
        arrays = np.broadcast_arrays(*arrays)
        shape = arrays[0].shape
    return shape, [np.ascontiguousarray(a).ravel() for a in arrays]


def _price_numpy(f, k, t, s, c):
    intrinsic = np.where(c, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    live = (t > 0) & (s > 0)
    tt = np.where(live, t, 1.0)
    ss = np.where(live, s, 1.0)
    sq = ss * np.sqrt(tt)
    d1 = (np.log(f / k) + 0.5 * sq * sq) / sq
    d2 = d1 - sq
    call = f * ndtr(d1) - k * ndtr(d2)
    put = k * ndtr(-d2) - f * ndtr(-d1)
    return np.where(live, np.where(c, call, put), intrinsic)


def _greeks_numpy(f, k, t, s, c):
    live = (t > 0) & (s > 0)
    tt = np.where(live, t, 1.0)
    ss = np.where(live, s, 1.0)
    rt = np.sqrt(tt)
    sq = ss * rt
    d1 = (np.log(f / k) + 0.5 * sq * sq) / sq
    pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi)
    nd1 = ndtr(d1)
    delta = np.where(c, nd1, nd1 - 1.0)
    itm = np.where(c, f > k, f < k)
    delta_dead = np.where(itm, np.where(c, 1.0, -1.0), 0.0)
    out = np.empty((f.size, 4))
    out[:, 0] = np.where(live, delta, delta_dead)
    out[:, 1] = np.where(live, pdf / (f * sq), 0.0)
    out[:, 2] = np.where(live, f * pdf * rt, 0.0)
    out[:, 3] = np.where(live, -f * pdf * ss / (2.0 * rt), 0.0)
    return out


def black76_price(forward, strike, t_years, vol, is_call, use_numba: bool | None = None) -> np.ndarray:
    """Black-76 option price (undiscounted), broadcasting over the inputs.

    Parameters
    ----------
    forward, strike : array-like
        Forward (= spot) and strike, same currency, > 0.
    t_years : array-like
        Time to expiry in years of 365 days; <= 0 gives the intrinsic value.
    vol : array-like
        Annualised volatility (decimal).
    is_call : array-like of bool
    use_numba : bool, optional
        Force (True) or bypass (False) the numba kernel; default: enabled
        unless ``MARGINLAB_DISABLE_NUMBA=1``.

    Returns
    -------
    ndarray of the broadcast shape, price in the currency of ``forward``.
    """
    shape, (f, k, t, s, c) = _broadcast(forward, strike, t_years, vol, is_call)
    use = NUMBA_ENABLED if use_numba is None else (use_numba and NUMBA_ENABLED)
    if use:
        out = np.empty(f.size)
        _price_kernel(f, k, t, s, c, out)
    else:
        out = _price_numpy(f, k, t, s, c)
    return out.reshape(shape)


def black76_greeks(forward, strike, t_years, vol, is_call, use_numba: bool | None = None) -> dict[str, np.ndarray]:
    """Black-76 delta, gamma, vega (per 1.00 of vol) and theta (per year).

    Returns
    -------
    dict with keys ``delta``, ``gamma``, ``vega``, ``theta``, arrays of the broadcast shape.
    """
    shape, (f, k, t, s, c) = _broadcast(forward, strike, t_years, vol, is_call)
    use = NUMBA_ENABLED if use_numba is None else (use_numba and NUMBA_ENABLED)
    if use:
        out = np.empty((f.size, 4))
        _greeks_kernel(f, k, t, s, c, out)
    else:
        out = _greeks_numpy(f, k, t, s, c)
    return {name: out[:, i].reshape(shape) for i, name in enumerate(("delta", "gamma", "vega", "theta"))}


def strike_from_delta(forward: float, t_years: float, vol: float, delta: float, is_call: bool) -> float:
    r"""Strike whose Black-76 delta equals ``delta`` (call: in (0, 1); put: in (-1, 0)).

    Closed form: :math:`K = F\exp(-\sigma\sqrt T\, N^{-1}(\Delta') + \sigma^2 T/2)` with
    :math:`\Delta' = \Delta` for calls and :math:`1 + \Delta` for puts.
    """
    from scipy.special import ndtri

    if is_call and not 0.0 < delta < 1.0:
        raise ValueError(f"call delta must be in (0, 1), got {delta}")
    if not is_call and not -1.0 < delta < 0.0:
        raise ValueError(f"put delta must be in (-1, 0), got {delta}")
    d1 = float(ndtri(delta if is_call else 1.0 + delta))
    sq = vol * math.sqrt(t_years)
    return float(forward * math.exp(-sq * d1 + 0.5 * sq * sq))
