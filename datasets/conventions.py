"""The conventions every marginlab module shares: UTC, the clock of observations, the year, the breach.

One definition of each, imported everywhere else (never re-defined):

* **UTC** (:func:`utc`): naive timestamps are taken as UTC, aware ones converted.
* **Observation time** (:func:`observation_times`): a bar is labelled by its
  *open* time (the bundled CryptoDataDownload files give the open time in their
  ``unix`` column; the next bar's open equals the close) and holds the close,
  so a row is observed at ``label + step``: a daily row labelled D is the
  close at D 24:00 UTC (= D+1 00:00), an hourly row labelled H the close at
  H + 1 h. Result frames keep the label (``date``); every time difference
  (time to expiry, ageing over the MPOR, settlement, funding accrual, data
  availability) is taken between observation times.
* **Year**: 365 days of 24 hours (crypto trades every day), :data:`YEAR`;
  :func:`year_fraction` is ``(end - start) / 365 days``.
* **Breach** (:func:`breach`): ``loss > margin``, strictly (a loss equal to the
  margin is covered); a missing margin (NaN) is no breach.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .validate import frequency_delta

__all__ = ["YEAR_DAYS", "YEAR", "utc", "observation_times", "date_format", "year_fraction", "breach", "ISO_TEXT",
           "iso_text"]

#: A date or time as marginlab reads it from text: ISO 8601 ``YYYY-MM-DD``, optionally ``[ T]HH:MM[:SS[.f]]`` and
#: ``Z`` or an offset ``+HH[:MM]`` (pandas' ``format="ISO8601"`` alone also takes 2022/01/10, 2022.01.10,
#: 2022-1-10 and 20220110, which this does not).
ISO_TEXT = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"


def iso_text(values: pd.Series) -> np.ndarray:
    """Boolean mask: each value is text matching :data:`ISO_TEXT` exactly (no surrounding spaces)."""
    return values.astype(str).str.fullmatch(ISO_TEXT).to_numpy(dtype=bool)

#: Days in a year for every annualisation and time to expiry.
YEAR_DAYS = 365.0
#: One year as a Timedelta (365 days).
YEAR = pd.Timedelta(days=365)
_YEAR_NS = float(YEAR.value)


def utc(t) -> pd.Timestamp | None:
    """``t`` as a UTC Timestamp (naive taken as UTC, aware converted); None stays None.

    Text must be ISO 8601 (:data:`ISO_TEXT`): ``"01/02/2022"`` (2 January or 1 February?) is a ValueError.
    """
    if t is None:
        return None
    if isinstance(t, str) and not re.fullmatch(ISO_TEXT, t):
        raise ValueError(f"{t!r} is not an ISO 8601 date or time (YYYY-MM-DD[ HH:MM[:SS]][+HH:MM])")
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def observation_times(index: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex:
    """Observation time of every row: its label plus one step of ``freq`` (the bar's close).

    Parameters
    ----------
    index : DatetimeIndex
        Row labels (bar open times, UTC).
    freq : {"1d", "1h"}

    Returns
    -------
    DatetimeIndex of the same length, named ``observation_time``.
    """
    return pd.DatetimeIndex(index + frequency_delta(freq), name="observation_time")


def date_format(freq: str) -> str:
    """The strftime format of a row's date on a ``freq`` panel as files and messages write it.

    ``"%Y-%m-%d"`` on a daily panel, ``"%Y-%m-%d %H:%M"`` on an hourly one.
    """
    return "%Y-%m-%d" if frequency_delta(freq) == pd.Timedelta(days=1) else "%Y-%m-%d %H:%M"


def year_fraction(start, end):
    """``(end - start)`` in years of 365 days.

    ``start`` and ``end`` are Timestamps, DatetimeIndexes or datetime64 arrays
    (broadcast); returns a float or an ndarray of floats (negative when ``end``
    is before ``start``).
    """
    out = (_ns(end) - _ns(start)) / _YEAR_NS
    return float(out) if np.ndim(out) == 0 else out


def _ns(t):
    """Nanoseconds since the epoch (UTC) of a Timestamp, a DatetimeIndex or a sequence of timestamps."""
    if isinstance(t, pd.Timestamp | str):
        return np.int64(utc(t).value)
    idx = pd.DatetimeIndex(t)
    return (idx.tz_localize("UTC") if idx.tz is None else idx).as_unit("ns").asi8


def breach(loss, margin):
    """Breach indicator ``loss > margin`` (strict; NaN margin or loss: no breach), elementwise."""
    with np.errstate(invalid="ignore"):
        return np.greater(loss, margin)
