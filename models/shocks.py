r"""Shock sizes calibrated on each date from data known at t: move quantiles and correlations.

Clearing houses recalibrate their scan ranges and risk weights as markets move (NSE Clearing sets
its SPAN price scan range from an EWMA volatility every day; CME reviews its scan ranges
regularly). The portfolio-margin models of marginlab do the same when a shock size is not fixed
in their parameters, from the rows up to and including t only:

* :func:`move_quantile`: the ``quantile`` of the absolute relative moves over ``horizon``
  observations, :math:`|P_s / P_{s-h} - 1|` for the rows s of the last ``lookback`` observations
  ending at t (overlapping when h > 1), of an asset's price or of its implied vol;
* :func:`return_correlation`: the Pearson correlation of the assets' h-observation log returns
  over the same window (rows where every asset is observed).

Both give NaN (no calibration yet: the model is warming up) with fewer than ``min_obs`` moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from marginlab.datasets import MarketData

__all__ = ["move_quantile", "return_correlation", "check_correlation", "asset_pairs"]


def _moves(values: np.ndarray, i: int, horizon: int, lookback: int) -> np.ndarray:
    """Relative h-observation moves ``values[s] / values[s - h] - 1`` for s in the window ending at row i."""
    lo = max(horizon, i - lookback + 1)
    if lo > i:
        return np.empty(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = values[lo:i + 1] / values[lo - horizon:i + 1 - horizon] - 1.0
    return x[np.isfinite(x)]


def move_quantile(market: MarketData, asset: str, i: int, horizon: int, lookback: int, quantile: float,
                  min_obs: int, series: str = "price") -> float:
    """The ``quantile`` of |relative h-observation moves| of ``asset`` in the window ending at row ``i``.

    Parameters
    ----------
    market : MarketData
    asset : str
    i : int
        Row of t; rows after it are never read.
    horizon : int
        h, the move's length in observations (the MPOR).
    lookback : int
        Rows of the window (the last one is row i).
    quantile : float
        In (0, 1), e.g. 0.99.
    min_obs : int
        Fewest finite moves for a calibration; fewer gives NaN.
    series : {"price", "vol"}
        The asset's close or its implied vol.

    Returns
    -------
    float: a fraction (0.12 = a 12% move), or NaN.
    """
    col = market.asset_index[asset]
    values = market.price_array[:, col] if series == "price" else market.vol_array[:, col]
    x = _moves(values, i, horizon, lookback)
    if x.size < max(min_obs, 1):
        return float("nan")
    return float(np.quantile(np.abs(x), quantile))


def return_correlation(market: MarketData, assets: Sequence[str], i: int, horizon: int, lookback: int,
                       min_obs: int) -> np.ndarray:
    """Correlation matrix of the assets' h-observation log returns over the window ending at row ``i``.

    Rows where an asset has no price are dropped (jointly); fewer than ``min_obs`` joint rows, or an
    asset without variance, gives a matrix of NaN. Returns an ndarray of shape (n_assets, n_assets).
    """
    n = len(assets)
    lo = max(horizon, i - lookback + 1)
    out = np.full((n, n), np.nan)
    if lo > i:
        return out
    p = market.price_array[:, [market.asset_index[a] for a in assets]]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(p[lo:i + 1] / p[lo - horizon:i + 1 - horizon])
    r = r[np.isfinite(r).all(axis=1)]
    if r.shape[0] < max(min_obs, 2):
        return out
    r = r - r.mean(axis=0)
    cov = r.T @ r
    sd = np.sqrt(np.diag(cov))
    if not (sd > 0).all():
        return out
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def check_correlation(where: str, matrix: np.ndarray, names: Sequence[str]) -> None:
    """Raise ValueError naming ``where`` unless ``matrix`` is a correlation matrix (PSD, unit diagonal)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(names), len(names)) or not np.isfinite(m).all():
        raise ValueError(f"{where}: correlation matrix over {list(names)} must be square and finite")
    if not np.allclose(m, m.T) or not np.allclose(np.diag(m), 1.0) or (np.abs(m) > 1.0).any():
        raise ValueError(f"{where}: correlations must be symmetric, in [-1, 1], with a unit diagonal")
    smallest = float(np.linalg.eigvalsh(m).min())
    if smallest < -1e-10:
        raise ValueError(f"{where}: the correlation matrix over {list(names)} is not positive semi-definite "
                         f"(smallest eigenvalue {smallest:.4g})")


def asset_pairs(where: str, table: dict[str, float], low: float, high: float) -> dict[tuple[str, str], float]:
    """Parse a table ``{"BTC/ETH": value, ...}`` of asset pairs; raise ValueError naming ``where`` on bad entries.

    Each key is two distinct catalogue assets joined by ``/``; each value a number in [low, high];
    a pair may appear once (in either order). Returns ``{(a, b): value}`` in the table's order.
    """
    from marginlab.datasets import known_assets

    known = known_assets()
    out: dict[tuple[str, str], float] = {}
    for key, value in table.items():
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) != 2 or parts[0] == parts[1] or any(p not in known for p in parts):
            raise ValueError(f"{where}: key {key!r} must be two distinct assets joined by '/', e.g. 'BTC/ETH'; "
                             f"known assets: {known}")
        a, b = parts
        if (a, b) in out or (b, a) in out:
            raise ValueError(f"{where}: the pair {key!r} is given twice")
        if not (low <= value <= high):
            raise ValueError(f"{where}[{key!r}] must be in [{low}, {high}], got {value!r}")
        out[(a, b)] = float(value)
    return out
