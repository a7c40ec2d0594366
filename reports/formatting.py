"""Numbers formatted for people, and escaped for HTML.

One function per kind of number, used by the HTML report and the terminal tables
alike, so that a number reads the same everywhere:

* money: thousands separators, no scientific notation, whole units from 100 up and
  two decimals below (``1,387,204``; ``12.35``); an amount that rounds to zero is
  ``0``;
* rates and fractions as percentages (``1.17%``; ``0%`` for zero);
* p-values with three significant digits (as a power of ten below 1e-4:
  ``1.23 × 10⁻⁷``), ``< 1e-10`` below 1e-10, ``1`` for one;
* counts with thousands separators; ratios with three significant digits;
* a missing value (None, NaN) as an em dash.

Every function returns plain text; :func:`esc` escapes text for HTML and is the only
way user text (names, labels, descriptions, file names) reaches the page.
"""

from __future__ import annotations

import html
import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["MISSING", "esc", "money", "percent", "pvalue", "count", "ratio", "number", "seconds", "probability",
           "by_unit", "is_missing", "frame_text", "and_list"]

#: How a missing value is shown.
MISSING = "\u2014"


def esc(text: Any) -> str:
    """``text`` as HTML text (``&``, ``<``, ``>``, quotes escaped)."""
    return html.escape(str(text), quote=True)


def is_missing(x: Any) -> bool:
    """True for None and NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def _finite(x: Any) -> float | None:
    if is_missing(x) or isinstance(x, bool):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _inf(x: Any) -> str | None:
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isinf(x):
        return "\u221e" if x > 0 else "\u2212\u221e"
    return None


def money(x: Any) -> str:
    """Amount in the quote currency: ``1,387,204``, ``12.35``, ``0``."""
    v = _finite(x)
    if v is None:
        return _inf(x) or MISSING
    if abs(v) >= 99.995:
        s = f"{v:,.0f}"
    else:
        s = f"{v:,.2f}"
        if float(s.replace(",", "")) == 0:
            return "0"
    return "0" if s in ("-0", "-0.00") else s


def percent(x: Any, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.0117`` -> ``1.17%``; tiny values keep 2 significant digits."""
    v = _finite(x)
    if v is None:
        return _inf(x) or MISSING
    if v == 0:
        return "0%"
    pct = 100.0 * v
    if abs(pct) >= 10 ** -digits:
        s = f"{pct:,.{digits}f}"
    else:  # keep two significant digits without scientific notation
        places = min(12, 1 - math.floor(math.log10(abs(pct))))
        s = f"{pct:.{places}f}"
    return ("0" if float(s.replace(",", "")) == 0 else s) + "%"


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def pvalue(x: Any) -> str:
    """A p-value: three significant digits, ``< 1e-10`` below, ``1`` for one, never scientific otherwise."""
    v = _finite(x)
    if v is None:
        return MISSING
    if v < 1e-10:
        return "< 1e-10"
    if v >= 0.9995:
        return "1"
    if v < 1e-4:  # 3 significant digits as a power of ten: 1.23 x 10^-7, never a string of zeros
        exp = math.floor(math.log10(v))
        mant = v / 10.0**exp
        if round(mant, 2) >= 10:
            mant, exp = mant / 10, exp + 1
        sup = str(exp).translate(_SUPERSCRIPT)
        return f"{mant:.2f} \u00d7 10{sup}"
    places = max(3, 2 - math.floor(math.log10(v)))
    return f"{v:.{places}f}"


def count(x: Any) -> str:
    """A whole number with thousands separators."""
    v = _finite(x)
    if v is None:
        return MISSING
    return f"{round(v):,d}"


def ratio(x: Any) -> str:
    """A ratio with three significant digits (thousands separators above 1,000)."""
    v = _finite(x)
    if v is None:
        return _inf(x) or MISSING
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    places = max(0, 2 - math.floor(math.log10(abs(v))))
    places = min(places, 10)
    return f"{v:.{places}f}"


def number(x: Any) -> str:
    """Any other number: a whole number as a count, else three significant digits without scientific notation."""
    v = _finite(x)
    if v is None:
        return _inf(x) or MISSING
    if float(v).is_integer() and abs(v) < 1e15:
        return count(v)
    return ratio(v)


def probability(x: Any) -> str:
    """A probability given as a level (``0.01``, ``0.025``): shortest exact form."""
    v = _finite(x)
    return MISSING if v is None else f"{v:g}"


def seconds(x: Any) -> str:
    """A duration in seconds, one decimal."""
    v = _finite(x)
    return MISSING if v is None else f"{v:,.1f}"


def expected_count(x: Any) -> str:
    """An expected number of breaches: one decimal from 1 up, two below (0.25, not 0.2), rounded half up.

    Half up on the number's shortest decimal text (18.25 -> 18.3, 3.65 -> 3.7, as a reader recomputes n x p),
    not Python's half-even rounding of the binary value (18.25 -> 18.2, 3.65 -> 3.6).
    """
    v = _finite(x)
    if v is None:
        return MISSING
    exact = Decimal(repr(v))
    two = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if abs(two) < 1:
        return f"{two:.2f}"
    return f"{exact.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):,.1f}"


def points(x: Any) -> str:
    """A difference of two fractions in percentage points: ``0.5951`` -> ``59.51 pp`` (not a relative change)."""
    v = _finite(x)
    if v is None:
        return _inf(x) or MISSING
    text = f"{100.0 * v:,.2f}"
    return ("0.00" if text == "-0.00" else text) + " pp"


#: Formatter of each unit (the ``unit`` of a metric, a column or a JSON value).
_UNITS = {"quote ccy": money, "usd": money, "money": money, "fraction": percent, "fraction points": points,
          "rate": percent,
          "percent": percent, "pvalue": pvalue, "p-value": pvalue, "count": count, "days": count,
          "observations": count, "ratio": ratio, "seconds": seconds,
          "probability": probability}


def by_unit(x: Any, unit: str | None) -> str:
    """Format ``x`` by its unit (see :data:`_UNITS`); text passes through, unknown units as :func:`number`."""
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "yes" if x else "no"
    return _UNITS.get((unit or "").lower(), number)(x)


def frame_text(frame, units: dict[str, str | None] | None = None) -> str:
    """A table (pandas DataFrame) as terminal text, each column formatted by its unit as on the report's pages.

    ``units``: column -> unit of :func:`by_unit` (columns not named: :func:`number` for numbers, text as is);
    right-aligned, index as the first column(s).
    """
    units = units or {}
    cells = frame.copy().astype(object)
    for c in frame.columns:
        unit = units.get(str(c))
        cells[c] = [MISSING if is_missing(v) else by_unit(v, unit) if unit or not isinstance(v, str) else v
                    for v in frame[c].tolist()]
    return cells.to_string()


def and_list(items: list[str], limit: int | None = None) -> str:
    """``a``, ``a and b``, ``a, b and c``: the items as prose; beyond ``limit`` items the rest as ``N more``."""
    if limit is not None and len(items) > limit:
        items = [*items[:limit], f"{len(items) - limit} more"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
