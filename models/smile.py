r"""Implied-volatility smile (term and skew) fitted from the bundled option chains.

On each date with an end-of-day chain, the ratio of Deribit's mark implied vol
to that day's DVOL level is fitted by least squares as

.. math::
    \frac{\sigma(K, T)}{\mathrm{DVOL}} = b_0 + b_1 x + b_2 x^2 + b_3 (\sqrt{T} - \sqrt{30/365}),
    \qquad x = \frac{\ln(K/F)}{\sqrt{T}},

on out-of-the-money quotes with 2 to 365 days to expiry and |x| <= 2. An
option's vol is then DVOL_t x ratio_t(x, T) (sticky moneyness), where ratio_t
is the fit of the latest chain date at or before t **within the chain
coverage** (the six bundled months; a date more than ``max_age_days`` after the
last chain uses ratio 1, i.e. the flat DVOL). The ratio is clipped to [0.5, 3]
so extrapolation far out of the money stays sane.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["fit_smile", "smile_ratio", "SMILE_COLUMNS", "fit_smiles"]

SMILE_COLUMNS = ["b0", "b1", "b2", "b3"]
_T_REF = np.sqrt(30.0 / 365.0)
RATIO_BOUNDS = (0.5, 3.0)


def _design(x: np.ndarray, t_years: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(x), x, x * x, np.sqrt(t_years) - _T_REF])


def fit_smile(chain: pd.DataFrame, dvol: float) -> np.ndarray:
    """Least-squares smile coefficients (b0, b1, b2, b3) of one date's chain relative to ``dvol``.

    ``chain`` has the columns of :func:`marginlab.datasets.load_option_chains`.
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
    """Ratio of an option's vol to DVOL under smile ``coef`` (clipped to [0.5, 3]); 1 where T <= 0."""
    t = np.maximum(np.asarray(t_years, float), 1e-9)
    x = np.asarray(log_moneyness, float) / np.sqrt(t)
    ratio = _design(np.atleast_1d(x).ravel(), np.broadcast_to(t, np.shape(x)).ravel()) @ coef
    ratio = np.clip(ratio, *RATIO_BOUNDS).reshape(np.shape(x))
    return np.where(np.asarray(t_years) > 0, ratio, 1.0)


def fit_smiles(chains: pd.DataFrame, dvol: pd.Series) -> pd.DataFrame:
    """Smile coefficients for every chain date with a DVOL level: DataFrame indexed by date."""
    rows, dates = [], []
    for date, chain in chains.groupby("date"):
        level = dvol.get(date, np.nan)
        if not np.isfinite(level):
            continue
        rows.append(fit_smile(chain, float(level)))
        dates.append(date)
    return pd.DataFrame(rows, index=pd.DatetimeIndex(dates, name="date"), columns=SMILE_COLUMNS)
