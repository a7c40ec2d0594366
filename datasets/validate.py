"""Checks applied to every price, volatility or funding series before use.

Every check raises :class:`~marginlab.datasets.DataError` naming the source
(file or dataset), the column and the first offending timestamps. Nothing is
repaired here: repairs of the bundled raw files happen, by documented rules, in
:mod:`marginlab.datasets.build`; a user's own file must already be clean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError

__all__ = ["FREQUENCIES", "frequency_delta", "validate_frame", "first_items"]

#: Supported sampling frequencies and their step.
FREQUENCIES: dict[str, pd.Timedelta] = {"1d": pd.Timedelta(days=1), "1h": pd.Timedelta(hours=1)}


def frequency_delta(freq: str) -> pd.Timedelta:
    """Return the time step of ``freq`` ("1d" or "1h"), or raise DataError."""
    try:
        return FREQUENCIES[freq]
    except KeyError:
        raise DataError(
            f"unknown frequency {freq!r}; known frequencies: {sorted(FREQUENCIES)}"
        ) from None


def first_items(values, limit: int = 5) -> str:
    """Format the first ``limit`` items of ``values`` for an error message."""
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    more = f" (and {len(values) - limit} more)" if len(values) > limit else ""
    return f"{shown}{more}"


def validate_frame(
    frame: pd.DataFrame,
    *,
    source: str,
    freq: str = "1d",
    max_gap: int | None = 0,
    positive: bool = True,
    columns: list[str] | None = None,
    plausible_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Validate a time-indexed frame and return it unchanged.

    Parameters
    ----------
    frame : DataFrame
        Index of timestamps (UTC), one column per series.
    source : str
        File path or dataset name, used in error messages.
    freq : {"1d", "1h"}
        Expected sampling step. Every timestamp must lie on the grid
        (midnight UTC for daily data, the full hour for hourly data).
    max_gap : int or None
        Largest number of consecutive missing steps tolerated, an integer >= 0
        (0: none; crypto trades every day). ``None`` disables the gap check.
    positive : bool
        Require strictly positive values (prices, volatilities).
    columns : list of str, optional
        Columns to check for NaN and sign; all columns by default.
    plausible_range : (float, float), optional
        Values outside ``[low, high]`` are an error (absurd magnitudes such as
        1e300 or 1e-300); no check by default.

    Raises
    ------
    DataError
        On an empty frame, a non-datetime index, duplicate or unsorted
        timestamps, off-grid timestamps, gaps beyond ``max_gap``, true/false
        columns, NaN, infinite, non-positive or implausible values, naming the
        source, column and first timestamps; on a bad ``max_gap`` or
        ``plausible_range``.
    """
    step = frequency_delta(freq)
    if max_gap is not None and (isinstance(max_gap, bool) or not isinstance(max_gap, int | np.integer)
                                or max_gap < 0):
        raise DataError(f"{source}: max_gap must be an integer >= 0 or None, got {max_gap!r}")
    if plausible_range is not None:
        low, high = _range(plausible_range, source)
    if frame.empty:
        raise DataError(f"{source}: no rows")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"{source}: index is not a datetime index (got {type(index).__name__})")
    dup = index[index.duplicated()]
    if len(dup):
        raise DataError(f"{source}: duplicate timestamps: {first_items(dup.unique())}")
    if not index.is_monotonic_increasing:
        diffs = np.asarray(index[1:] - index[:-1])
        bad = index[1:][diffs < np.timedelta64(0)]
        raise DataError(f"{source}: timestamps not sorted ascending; first out of order: "
                        f"{first_items(bad)}")
    off_grid = index[index != index.floor(step)]
    if len(off_grid):
        raise DataError(f"{source}: timestamps not on the {freq} grid (wrong frequency?): "
                        f"{first_items(off_grid)}")
    if max_gap is not None and len(index) > 1:
        steps = np.asarray((index[1:] - index[:-1]) / step)
        too_big = np.flatnonzero(steps - 1 > max_gap)
        if len(too_big):
            gaps = [f"{index[i]} -> {index[i + 1]} ({int(steps[i]) - 1} missing)" for i in too_big]
            raise DataError(f"{source}: gaps longer than {max_gap} step(s) of {freq}: "
                            f"{first_items(gaps, 3)}")
    for column in columns if columns is not None else list(frame.columns):
        if column not in frame.columns:
            raise DataError(f"{source}: missing column {column!r}; columns are {list(frame.columns)}")
        if pd.api.types.is_bool_dtype(frame[column]):
            raise DataError(f"{source}: column {column!r} holds true/false values, not numbers")
        values = pd.to_numeric(frame[column], errors="coerce")
        nan = index[values.isna().to_numpy()]
        if len(nan):
            raise DataError(f"{source}: column {column!r} has missing/NaN or non-numeric values at "
                            f"{first_items(nan)}")
        infinite = index[np.isinf(values.to_numpy(dtype=float))]
        if len(infinite):
            raise DataError(f"{source}: column {column!r} has infinite values at {first_items(infinite)}")
        if positive:
            bad = index[(values <= 0).to_numpy()]
            if len(bad):
                raise DataError(f"{source}: column {column!r} has non-positive values at "
                                f"{first_items(bad)}")
        if plausible_range is not None:
            implausible = ((values < low) | (values > high)).to_numpy()
            if implausible.any():
                raise DataError(f"{source}: column {column!r} has values outside the plausible range "
                                f"[{low:g}, {high:g}] (e.g. {values[implausible].iloc[0]:g}) at "
                                f"{first_items(index[implausible])}; pass plausible_range= to change the range")
    return frame


def _range(plausible_range, source: str) -> tuple[float, float]:
    try:
        low, high = plausible_range
        ok = all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
                 for v in (low, high)) and 0 <= low < high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"{source}: plausible_range must be two numbers (low, high) with 0 <= low < high, "
                        f"got {plausible_range!r}")
    return float(low), float(high)
