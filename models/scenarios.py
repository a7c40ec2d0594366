r"""Scenario revaluation of option books on a grid: one numba kernel for every portfolio-margin model.

A scenario grid is a list of scenarios, each a combination of three levels:

* a **spot move** per underlying asset: the shocked spot is :math:`S_1 = S_0 e^{x}` (``log_moves``,
  shape (n_scenarios, n_assets); a relative move m is :math:`x = \ln(1 + m)`);
* a **vol level** per option (``vols``, shape (n_vol_levels, n_options)): the option's vol under that
  level, shocked however the model likes (SPAN: :math:`\sigma(1 \pm VSR)`; Deribit: scaled by
  :math:`(30/DTE)^p` and floored);
* a **time level** per option (``taus``, shape (n_time_levels, n_options)): years to expiry at the
  valuation time (t, or t plus the look-ahead time).

:func:`grid_values` prices every option under every scenario with Black-76 (forward = spot, zero
rates; :mod:`marginlab.models.pricing`) and returns the price and the delta, shape
(n_scenarios, n_options). The kernel :func:`revalue_grid` is written once, ``@njit(cache=True)``;
with numba switched off (``NUMBA_DISABLE_JIT=1`` or ``MARGINLAB_DISABLE_NUMBA=1``: the project's one
switch, :mod:`marginlab.models._numba`) the same source runs as plain Python. Its cost per price
is two ``erfc`` calls: the log-moneyness is taken once per option,
:math:`\sigma\sqrt T` once per option and level, the spot factors once per call.

Linear positions need no kernel: their P&L under a move is :math:`q (1 + b) S_0 (e^{x} - 1)`
(:func:`linear_pnl`).
"""

from __future__ import annotations

import math

import numpy as np

from ._numba import njit

__all__ = ["revalue_grid", "grid_values", "linear_pnl"]

_SQRT2 = math.sqrt(2.0)


@njit(cache=True)
def revalue_grid(spot, strike, is_call, asset, taus, vols, log_moves, time_index, vol_index, price,
                 delta):  # pragma: no cover - compiled; the same source runs as Python (py_func)
    """Black-76 price and delta of every option under every scenario (see module docstring).

    Parameters
    ----------
    spot, strike : ndarray of shape (n_options,)
        Spot of each option's underlying at t and its strike, quote currency.
    is_call : ndarray of bool, shape (n_options,)
    asset : ndarray of int64, shape (n_options,)
        Column of each option's underlying in ``log_moves``.
    taus : ndarray of shape (n_time_levels, n_options)
        Years to expiry at each time level (<= 0: expired, valued at intrinsic).
    vols : ndarray of shape (n_vol_levels, n_options)
        Vol of each option at each vol level (<= 0: valued at intrinsic).
    log_moves : ndarray of shape (n_scenarios, n_assets)
        Log spot move of each asset in each scenario.
    time_index, vol_index : ndarray of int64, shape (n_scenarios,)
        Time and vol level of each scenario.
    price, delta : ndarray of shape (n_scenarios, n_options)
        Output: price per unit (quote currency) and Black-76 delta.
    """
    n_scen, n_assets = log_moves.shape
    n_times, n_vols = taus.shape[0], vols.shape[0]
    factor = np.empty((n_scen, n_assets))  # spot factors, once per call
    for m in range(n_scen):
        for a in range(n_assets):
            factor[m, a] = math.exp(log_moves[m, a])
    sq = np.empty((n_vols, n_times))  # sigma sqrt(T) of the option at each (vol, time) level
    inv = np.empty((n_vols, n_times))
    for j in range(spot.shape[0]):
        s0 = spot[j]
        k = strike[j]
        call = is_call[j]
        a = asset[j]
        x0 = math.log(s0 / k)
        for tl in range(n_times):
            t = taus[tl, j]
            rt = math.sqrt(t) if t > 0.0 else 0.0
            for vl in range(n_vols):
                s = vols[vl, j]
                q = s * rt if s > 0.0 else 0.0
                sq[vl, tl] = q
                inv[vl, tl] = 1.0 / q if q > 0.0 else 0.0
        for m in range(n_scen):
            f = s0 * factor[m, a]
            q = sq[vol_index[m], time_index[m]]
            if q <= 0.0:  # expired, or no vol: intrinsic value
                if call:
                    price[m, j] = max(f - k, 0.0)
                    delta[m, j] = 1.0 if f > k else 0.0
                else:
                    price[m, j] = max(k - f, 0.0)
                    delta[m, j] = -1.0 if f < k else 0.0
                continue
            d1 = (x0 + log_moves[m, a]) * inv[vol_index[m], time_index[m]] + 0.5 * q
            d2 = d1 - q
            if call:
                nd1 = 0.5 * math.erfc(-d1 / _SQRT2)
                price[m, j] = f * nd1 - k * 0.5 * math.erfc(-d2 / _SQRT2)
                delta[m, j] = nd1
            else:
                nmd1 = 0.5 * math.erfc(d1 / _SQRT2)
                price[m, j] = k * 0.5 * math.erfc(d2 / _SQRT2) - f * nmd1
                delta[m, j] = -nmd1


def _kernel():
    """The kernel: compiled, or its Python source when numba is switched off (:mod:`marginlab.models._numba`)."""
    return revalue_grid


def grid_values(spot, strike, is_call, asset, taus, vols, log_moves, time_index, vol_index
                ) -> tuple[np.ndarray, np.ndarray]:
    """Price and delta of options on a scenario grid: :func:`revalue_grid` with checked, contiguous inputs.

    Arguments as in :func:`revalue_grid` (array-likes; a 1-d ``taus`` or ``vols`` is one level).
    Returns ``(price, delta)``, each an ndarray of shape (n_scenarios, n_options).
    """
    spot = np.ascontiguousarray(spot, dtype=float)
    n = spot.size
    strike = np.ascontiguousarray(strike, dtype=float)
    is_call = np.ascontiguousarray(is_call, dtype=bool)
    asset = np.ascontiguousarray(asset, dtype=np.int64)
    taus = np.ascontiguousarray(np.atleast_2d(taus), dtype=float)
    vols = np.ascontiguousarray(np.atleast_2d(vols), dtype=float)
    log_moves = np.ascontiguousarray(np.atleast_2d(log_moves), dtype=float)
    time_index = np.ascontiguousarray(time_index, dtype=np.int64)
    vol_index = np.ascontiguousarray(vol_index, dtype=np.int64)
    n_scen = log_moves.shape[0]
    for name, arr in (("strike", strike), ("is_call", is_call), ("asset", asset)):
        if arr.shape != (n,):
            raise ValueError(f"grid_values: {name} has shape {arr.shape}, expected ({n},)")
    for name, arr in (("taus", taus), ("vols", vols)):
        if arr.shape[1] != n:
            raise ValueError(f"grid_values: {name} has {arr.shape[1]} columns for {n} options")
    for name, arr, levels in (("time_index", time_index, taus.shape[0]), ("vol_index", vol_index, vols.shape[0])):
        if arr.shape != (n_scen,):
            raise ValueError(f"grid_values: {name} has shape {arr.shape}, expected ({n_scen},)")
        if n_scen and (arr.min() < 0 or arr.max() >= levels):
            raise ValueError(f"grid_values: {name} must index the {levels} levels")
    if n and (asset.min() < 0 or asset.max() >= log_moves.shape[1]):
        raise ValueError(f"grid_values: asset must index the {log_moves.shape[1]} columns of log_moves")
    price = np.empty((n_scen, n))
    delta = np.empty((n_scen, n))
    if n and n_scen:
        _kernel()(spot, strike, is_call, asset, taus, vols, log_moves, time_index, vol_index, price, delta)
    return price, delta


def linear_pnl(weight_spot: np.ndarray, log_moves: np.ndarray) -> np.ndarray:
    r"""P&L of linear exposures under spot moves: :math:`\sum_a w_a (e^{x_{ka}} - 1)`.

    Parameters
    ----------
    weight_spot : ndarray of shape (n_assets,)
        Per asset, :math:`\sum_i q_i (1 + b_i) S_{0}` over its linear positions (quote currency).
    log_moves : ndarray of shape (n_scenarios, n_assets)

    Returns
    -------
    ndarray of shape (n_scenarios,), quote currency.
    """
    return np.expm1(np.atleast_2d(log_moves)) @ np.asarray(weight_spot, dtype=float)
