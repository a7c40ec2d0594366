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

The models' windows are in calendar time by default (:func:`window_rows`): 365 days of observations
(:data:`LOOKBACK_DAYS`) and at least 60 days of moves (:data:`MIN_OBS_DAYS`) at the panel's step, i.e.
365 and 60 rows on daily data, 8,760 and 1,440 on hourly data, so that an hourly run calibrates on a year
as a daily one does; an integer ``lookback``/``min_obs`` is a number of observations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from marginlab.datasets import MarketData
from marginlab.datasets.conventions import YEAR_DAYS

from .base import check_ints

__all__ = ["move_quantile", "return_correlation", "check_correlation", "asset_pairs", "window_rows",
           "lookback_rows", "check_window", "LOOKBACK_DAYS", "MIN_OBS_DAYS"]

#: default calibration window of the dynamic shock sizes, calendar days
LOOKBACK_DAYS = 365
#: default fewest moves to calibrate, calendar days of observations
MIN_OBS_DAYS = 60


def _days_to_rows(market: MarketData, days: float) -> int:
    return int(round(days * market.periods_per_year / YEAR_DAYS))


def lookback_rows(market: MarketData, lookback: int | None) -> int:
    """Rows of a calibration window: ``lookback`` observations, or :data:`LOOKBACK_DAYS` days at the step if None."""
    return _days_to_rows(market, LOOKBACK_DAYS) if lookback is None else int(lookback)


def window_rows(market: MarketData, lookback: int | None, min_obs: int | None) -> tuple[int, int]:
    """``(lookback, min_obs)`` in rows of ``market``: integers as given, None the calendar defaults.

    A default ``min_obs`` (:data:`MIN_OBS_DAYS` days of observations) is capped at the window.
    """
    n = lookback_rows(market, lookback)
    return n, (min(_days_to_rows(market, MIN_OBS_DAYS), n) if min_obs is None else int(min_obs))


def check_window(model, lookback_min: int, min_obs_min: int) -> None:
    """Check ``model.lookback``/``model.min_obs``: None (calendar default) or an integer >= its minimum.

    An explicit ``min_obs`` must not exceed the window: ``lookback``, or with the default window its
    shortest length, :data:`LOOKBACK_DAYS` daily observations (hourly windows are 24 times longer).
    """
    check_ints(model, {k: v for k, v in (("lookback", lookback_min), ("min_obs", min_obs_min))
                       if getattr(model, k) is not None})
    if model.min_obs is not None:
        window = model.lookback if model.lookback is not None else LOOKBACK_DAYS
        if model.min_obs > window:
            what = model.lookback if model.lookback is not None else f"None: {LOOKBACK_DAYS} days, {window} daily rows"
            raise ValueError(f"{model.name}: min_obs ({model.min_obs}) must not exceed lookback ({what})")


def _moves(values: np.ndarray, i: int, horizon: int, lookback: int) -> np.ndarray:
    """Relative h-observation moves ``values[s] / values[s - h] - 1`` for s in the window ending at row i."""
    lo = max(horizon, i - lookback + 1)
    if lo > i:
        return np.empty(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = values[lo:i + 1] / values[lo - horizon:i + 1 - horizon] - 1.0
    return x[np.isfinite(x)]


def move_quantile(market: MarketData, asset: str, i: int, horizon: int, lookback: int | None, quantile: float,
                  min_obs: int | None, series: str = "price") -> float:
    """The ``quantile`` of |relative h-observation moves| of ``asset`` in the window ending at row ``i``.

    Parameters
    ----------
    market : MarketData
    asset : str
    i : int
        Row of t; rows after it are never read.
    horizon : int
        h, the move's length in observations (the MPOR).
    lookback : int or None
        Rows of the window (the last one is row i); None: 365 days of rows (:func:`window_rows`).
    quantile : float
        In (0, 1), e.g. 0.99.
    min_obs : int or None
        Fewest finite moves for a calibration, fewer gives NaN; None: 60 days of rows.
    series : {"price", "vol"}
        The asset's close or its implied vol.

    Returns
    -------
    float: a fraction (0.12 = a 12% move), or NaN.
    """
    lookback, min_obs = window_rows(market, lookback, min_obs)
    col = market.asset_index[asset]
    values = market.price_array[:, col] if series == "price" else market.vol_array[:, col]
    x = _moves(values, i, horizon, lookback)
    if x.size < max(min_obs, 1):
        return float("nan")
    return float(np.quantile(np.abs(x), quantile))


def return_correlation(market: MarketData, assets: Sequence[str], i: int, horizon: int, lookback: int | None,
                       min_obs: int | None) -> np.ndarray:
    """Correlation matrix of the assets' h-observation log returns over the window ending at row ``i``.

    Rows where an asset has no price are dropped (jointly); fewer than ``min_obs`` joint rows, or an
    asset without variance, gives a matrix of NaN. ``lookback``/``min_obs`` as in :func:`move_quantile`.
    Returns an ndarray of shape (n_assets, n_assets).
    """
    lookback, min_obs = window_rows(market, lookback, min_obs)
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
