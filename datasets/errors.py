"""The error raised for every defect in market data or in a request for it."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad market data or a bad request for it.

    The message always names what is at fault: the file (or dataset), the column
    and the first offending timestamps or keys, so that a user can find the row.
    """
