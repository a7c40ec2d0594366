r"""Implied-volatility smile (term and skew) fitted from option-chain snapshots: a market input.

Each chain snapshot (the bundled Deribit BTC chains are taken at 00:00 US/Eastern,
i.e. 04:00 UTC in summer and 05:00 UTC in winter) is paired with the **last DVOL
value known at the snapshot time** (the close of the previous UTC day: DVOL of
day D is known at D 24:00), and the ratio of Deribit's mark implied vol to that
level is fitted by least squares as

.. math::
    \frac{\sigma(K, T)}{\mathrm{DVOL}} = b_0 + b_1 x + b_2 x^2 + b_3 (\sqrt{T} - \sqrt{30/365}),
    \qquad x = \frac{\ln(K/F)}{\sqrt{T}},

on out-of-the-money quotes with 2 to 365 days to expiry and |x| <= 2. The ratio
is clipped to [0.5, 3] so extrapolation far out of the money stays sane.

Vol regime of a row (:func:`smile_regimes`), from the snapshots known at the
row's observation time (quote time at or before it):

* the latest snapshot is at most :data:`SMILE_MAX_AGE` (96 h) old: its fitted
  smile, sticky in moneyness: vol = DVOL x ratio(x, T) (on daily rows: the
  chain date and the three days after it);
* otherwise, once at least one snapshot is known: **DVOL mapped to the
  at-the-money level**, flat across strikes, vol = DVOL x mean b0 of every
  snapshot known so far. DVOL is a 30-day variance-swap-like index over the
  whole smile, not the ATM vol: on the 181 bundled snapshots it sits a median
  7.4 vol points above the 30-day ATM implied vol measured from the quotes
  (interpolated in total variance between expiries). b0 is the fitted ratio
  at the money at 30 days (mean 0.913); DVOL x mean b0 of the other months
  matches the held-out month's ATM vol to a median 1.9 vol points (leave one
  month out; 7.4 unmapped), and the 2021 mean on the 2022 months to 1.6 (5.9
  unmapped) (tested in ``tests/test_option_marks.py``);
* before the first snapshot (or for an asset without chains): flat DVOL, with
  its bias (stated in the README's limitations).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SMILE_COLUMNS", "SMILE_MAX_AGE", "RATIO_BOUNDS", "T_REF", "fit_smile", "fit_smiles", "smile_ratio",
           "smile_regimes"]

SMILE_COLUMNS = ["b0", "b1", "b2", "b3"]
#: How long a snapshot's smile stays in force after its quote time.
SMILE_MAX_AGE = pd.Timedelta(days=4)
#: DVOL older than this at a snapshot is not paired with it (the daily close is one day apart).
_DVOL_MAX_AGE = pd.Timedelta(days=1)
#: Reference tenor of the smile's term-structure term, sqrt(years): b3 x (sqrt(T) - T_REF).
T_REF = float(np.sqrt(30.0 / 365.0))
RATIO_BOUNDS = (0.5, 3.0)


def _design(x: np.ndarray, t_years: np.ndarray) -> np.ndarray:
    out = np.empty((x.shape[0], 4))  # the columns 1, x, x^2, sqrt(T) - sqrt(30/365), C order
    out[:, 0] = 1.0
    out[:, 1] = x
    np.multiply(x, x, out=out[:, 2])
    np.sqrt(t_years, out=out[:, 3])
    out[:, 3] -= T_REF
    return out


def fit_smile(chain: pd.DataFrame, dvol: float) -> np.ndarray:
    """Least-squares smile coefficients (b0, b1, b2, b3) of one snapshot relative to the level ``dvol``.

    ``chain`` has the columns of :func:`marginlab.datasets.load_option_chains`;
    ``dvol`` is a decimal (0.75 = 75%). Returns an ndarray of shape (4,).
    """
    t = chain["dte"].to_numpy(float) / 365.0
    f = chain["underlying_price"].to_numpy(float)
    k = chain["strike"].to_numpy(float)
    is_call = (chain["kind"] == "call").to_numpy()
    otm = np.where(is_call, k >= f, k <= f)
    keep = otm & (chain["dte"].to_numpy(float) >= 2) & (chain["dte"].to_numpy(float) <= 365)
    x = np.log(k / f) / np.sqrt(np.maximum(t, 1e-9))
    keep &= np.abs(x) <= 2.0
    if keep.sum() < 8:
        raise ValueError(f"fit_smile: only {int(keep.sum())} usable quotes")
    a = _design(x[keep], t[keep])
    y = chain["mark_iv"].to_numpy(float)[keep] / dvol
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef


def smile_ratio(coef: np.ndarray, log_moneyness: np.ndarray, t_years: np.ndarray) -> np.ndarray:
    """Ratio of an option's vol to DVOL under smile ``coef`` (clipped to [0.5, 3]); 1 where T <= 0.

    ``log_moneyness`` is ln(K/F), ``t_years`` the time to expiry in years
    (broadcast against each other).
    """
    t = np.maximum(np.asarray(t_years, float), 1e-9)
    x = np.asarray(log_moneyness, float) / np.sqrt(t)
    # element by element, in a fixed order: a BLAS matrix-vector product rounds a row differently
    # depending on its position in the matrix, so an option's vol (and every margin revaluing it) would
    # depend on which other options were evaluated with it (found as last-bit differences of SPAN margins
    # between a serial and a 2-worker run of the default study)
    b0, b1, b2, b3 = (float(c) for c in coef)
    ratio = b0 + b1 * x + b2 * (x * x) + b3 * (np.sqrt(np.broadcast_to(t, np.shape(x))) - T_REF)
    ratio = np.clip(ratio, *RATIO_BOUNDS)
    return np.where(np.asarray(t_years) > 0, ratio, 1.0)


def fit_smiles(chains: pd.DataFrame, dvol: pd.Series, asset: str = "BTC") -> pd.DataFrame:
    """Fit every snapshot of ``chains`` against the last DVOL known at its quote time.

    Parameters
    ----------
    chains : DataFrame
        Option chains (:func:`marginlab.datasets.load_option_chains`), one
        snapshot per ``quote_time``.
    dvol : Series
        DVOL levels (decimal) indexed by the UTC time each became known (for
        the daily closes: the end of their day).
    asset : str
        Underlying, written in the ``asset`` column.

    Returns
    -------
    DataFrame
        One row per snapshot paired with a DVOL value at most one day old,
        sorted by ``quote_time``: ``asset``, ``quote_time`` (when the smile
        became known), ``date`` (the chain's UTC day), ``dvol`` and
        ``dvol_time`` (the level the ratio is relative to and when it became
        known), ``b0`` .. ``b3``.
    """
    known = dvol.dropna().sort_index()
    times = pd.DatetimeIndex(known.index)
    rows = []
    for quote_time, chain in chains.groupby("quote_time", sort=True):
        k = int(times.searchsorted(quote_time, side="right")) - 1
        if k < 0 or quote_time - times[k] >= _DVOL_MAX_AGE:
            continue
        level = float(known.iloc[k])
        coef = fit_smile(chain, level)
        rows.append({"asset": asset, "quote_time": quote_time, "date": chain["date"].iloc[0], "dvol": level,
                     "dvol_time": times[k], **dict(zip(SMILE_COLUMNS, coef, strict=True))})
    columns = ["asset", "quote_time", "date", "dvol", "dvol_time", *SMILE_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def smile_regimes(table: pd.DataFrame, observation_ns: np.ndarray,
                  max_age: pd.Timedelta = SMILE_MAX_AGE) -> np.ndarray:
    """Smile coefficients in force at each observation time (see the module docstring).

    Parameters
    ----------
    table : DataFrame
        One asset's rows of :func:`fit_smiles` (``quote_time``, ``b0`` .. ``b3``).
    observation_ns : ndarray of int64, shape (n_rows,)
        Observation times, nanoseconds since the epoch (UTC), increasing.
    max_age : Timedelta
        How long a snapshot's fitted smile stays in force.

    Returns
    -------
    ndarray of shape (n_rows, 4)
        The fitted coefficients of a snapshot at most ``max_age`` old;
        ``(mean b0 of the snapshots known, 0, 0, 0)`` (DVOL mapped to the ATM
        level, flat) when the latest is older; NaN before any snapshot is known.
    """
    n = len(observation_ns)
    out = np.full((n, len(SMILE_COLUMNS)), np.nan)
    if table.empty:
        return out
    table = table.sort_values("quote_time", kind="mergesort")
    q = pd.DatetimeIndex(table["quote_time"]).as_unit("ns").asi8
    coefs = table[SMILE_COLUMNS].to_numpy(float)
    k = np.searchsorted(q, observation_ns, side="right") - 1
    known = k >= 0
    kk = np.where(known, k, 0)
    fresh = known & (observation_ns - q[kk] < pd.Timedelta(max_age).value)
    out[fresh] = coefs[kk[fresh]]
    # older snapshots only: DVOL mapped to the ATM level, ratio = mean b0 of every snapshot known
    mean_b0 = np.cumsum(coefs[:, 0]) / np.arange(1, len(q) + 1)
    stale = known & ~fresh
    out[stale] = 0.0
    out[stale, 0] = mean_b0[kk[stale]]
    return out
