"""What moved between two runs: the rows of two backtests compared key by key.

A validator re-running a study after a code or data change needs to know which margins moved,
by how much, and whether any breach changed: ``marginlab diff BEFORE AFTER`` (two report folders
or two ``backtest.csv`` files) or :func:`compare_backtests` on two frames. Rows are matched on
``(date, portfolio, model)`` and every other column is compared: a number counts as moved when it
is not bit for bit the same (NaN equals NaN; ``-0.0`` and ``0.0`` differ), a flag or text when it
differs. For each model: the rows in both runs and in one only, the rows moved per column
(``margin_moved``, ``notional_moved``, ...), the median and largest relative move of the margin
among them (|after − before| / |before|; inf for a margin that moves from 0), the breach flags that
flipped (``breaches_flipped``) and the roll flags (``book_changed_flipped``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from marginlab.datasets.conventions import iso_text

__all__ = ["BacktestDiff", "backtest_file", "compare_backtests", "read_backtest"]

KEY = ["date", "portfolio", "model"]
#: the columns a backtest table must have to be compared
REQUIRED = [*KEY, "margin", "breach"]
#: numeric columns of a backtest table (``BacktestResult.frame``) -> whether the writer leaves them empty (NaN):
#: VaR, ES and PIT are NaN for rule-based models, the standalone margin before a model's warm-up ends, the Monte
#: Carlo standard error for models without simulated scenarios
NUMBERS = {"margin": False, "pnl": False, "loss": False, "notional": False, "var": True, "es": True, "pit": True,
           "standalone_margin": True, "mc_se": True}
#: true/false columns of a backtest table, written as ``True``/``False``
FLAGS = ("breach", "book_changed")


def backtest_file(path: str | Path) -> Path:
    """The backtest table a path names: ``<folder>/backtest.csv`` for a report folder, else the path itself."""
    path = Path(path).expanduser()
    return path / "backtest.csv" if path.is_dir() else path


def read_backtest(path: str | Path) -> pd.DataFrame:
    """The ``backtest.csv`` of a report folder (or the file itself), typed as marginlab wrote it.

    ``date`` is read as UTC timestamps (ISO 8601 text, :data:`marginlab.datasets.conventions.ISO_TEXT`: a
    file re-saved with ``YYYY-MM-DD`` dates matches the original), ``breach`` and ``book_changed`` as
    booleans (the text ``True`` or ``False`` only), the numeric columns (:data:`NUMBERS`) as finite floats
    (empty, i.e. NaN, only in ``var``, ``es``, ``pit``, ``standalone_margin`` and ``mc_se``). Anything else is a
    ValueError naming the file, the data row (1 = the first line after the header), its key and the column;
    nothing is coerced.
    """
    file = backtest_file(path)
    if not file.is_file():
        raise ValueError(f"{file}: no backtest.csv here (give a marginlab report folder or its backtest.csv)")
    try:
        raw = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{file}: cannot be read as a backtest table ({exc})") from None
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise ValueError(f"{file}: not a marginlab backtest table (missing column(s) {missing})")

    def where(bad: np.ndarray, column: str) -> str:
        k = int(np.flatnonzero(bad)[0])
        more = int(bad.sum()) - 1
        key = ", ".join(f"{c} {raw[c].iloc[k]!r}" for c in KEY if c != column)
        return (f"{file}: data row {k + 1} ({key}), column {column!r}"
                + (f" (and {more} more row(s))" if more else ""))

    out = pd.DataFrame(index=raw.index)
    for column in ("portfolio", "model"):
        empty = (raw[column].str.strip() == "").to_numpy()
        if empty.any():
            raise ValueError(f"{where(empty, column)}: missing value")
    text = raw["date"]
    dates = pd.to_datetime(text.where(iso_text(text), None), utc=True, format="ISO8601", errors="coerce")
    bad = dates.isna().to_numpy()
    if bad.any():
        shown = text[bad].iloc[0]
        what = "missing value" if not shown.strip() else \
            f"{shown!r} is not an ISO 8601 date or time (YYYY-MM-DD[ HH:MM[:SS]][+HH:MM])"
        raise ValueError(f"{where(bad, 'date')}: {what}")
    for column in raw.columns:
        if column == "date":
            out[column] = dates.astype("datetime64[ns, UTC]")
        elif column in FLAGS:
            bad = ~raw[column].isin(["True", "False"]).to_numpy()
            if bad.any():
                raise ValueError(f"{where(bad, column)}: {raw[column][bad].iloc[0]!r} is not True or False")
            out[column] = (raw[column] == "True").to_numpy()
        elif column in NUMBERS:
            empty = (raw[column] == "").to_numpy()
            values = pd.to_numeric(raw[column].mask(empty, None), errors="coerce").to_numpy(dtype=float)
            bad = ~empty & ~np.isfinite(values)
            if bad.any():
                raise ValueError(f"{where(bad, column)}: {raw[column][bad].iloc[0]!r} is not a finite number")
            if empty.any() and not NUMBERS[column]:
                raise ValueError(f"{where(empty, column)}: missing value (marginlab writes a number here)")
            out[column] = values
        else:
            out[column] = raw[column]
    dup = out.duplicated(KEY, keep=False).to_numpy()
    if dup.any():
        first = np.flatnonzero(dup)[0]
        same = np.flatnonzero((out[KEY] == out[KEY].iloc[first]).all(axis=1).to_numpy())[:2] + 1
        raise ValueError(f"{file}: data rows {same[0]} and {same[1]} have the same (date, portfolio, model) = "
                         f"({raw['date'].iloc[first]!r}, {raw['portfolio'].iloc[first]!r}, "
                         f"{raw['model'].iloc[first]!r})")
    return out


def _typed(frame: pd.DataFrame, which: str) -> pd.DataFrame:
    """``frame`` with UTC dates, after checking its columns' types (ValueError naming ``which`` and the column)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"the {which} backtest is not a marginlab backtest table (missing column(s) {missing})")
    if not pd.api.types.is_datetime64_any_dtype(frame["date"]):
        raise ValueError(f"the {which} backtest: column 'date' holds {frame['date'].dtype}, not timestamps "
                         "(read a backtest.csv with read_backtest)")
    for column in FLAGS:
        if column in frame.columns and not pd.api.types.is_bool_dtype(frame[column]):
            raise ValueError(f"the {which} backtest: column {column!r} holds {frame[column].dtype}, not booleans")
    for column in NUMBERS:
        if column in frame.columns and (not pd.api.types.is_numeric_dtype(frame[column])
                                        or pd.api.types.is_bool_dtype(frame[column])):
            raise ValueError(f"the {which} backtest: column {column!r} holds {frame[column].dtype}, not numbers")
    dates = pd.DatetimeIndex(frame["date"])
    return frame.assign(date=dates.tz_localize("UTC") if dates.tz is None else dates.tz_convert("UTC"))


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit for bit the same (``-0.0`` is not ``0.0``), any NaN equal to any NaN."""
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    return (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))


@dataclass(frozen=True)
class BacktestDiff:
    """The comparison of two backtests (see the module docstring); ``to_frame()`` has one row per model."""

    table: pd.DataFrame
    moved: pd.DataFrame
    #: value columns left out of the comparison on request (``compare_backtests(..., ignore=...)``)
    ignored: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        """Per model: rows in both, only before, only after, rows moved per column, relative moves, flipped breaches."""
        return self.table.copy()

    @property
    def identical(self) -> bool:
        """True when both runs have the same keys and every value of every column is bit for bit the same."""
        t = self.table
        return bool((t[["only_before", "only_after"]].to_numpy() == 0).all()
                    and (t.filter(regex="_moved$|_flipped$").to_numpy() == 0).all())

    def summary(self) -> str:
        """A table per model, and one line saying whether the runs are identical."""
        t = self.table
        others = {c.rsplit("_", 1)[0]: int(t[c].sum()) for c in t.filter(regex="_moved$|_flipped$").columns
                  if c not in ("margin_moved", "breaches_flipped") and t[c].sum()}
        skipped = ", ".join(self.ignored)
        if self.identical:
            head = "identical: every row and value bit for bit the same" + (f", not comparing {skipped}" if skipped
                                                                              else "")
        else:
            head = (f"{int(t['margin_moved'].sum()):,} margin(s) moved, "
                    f"{int(t['breaches_flipped'].sum()):,} breach flag(s) flipped, "
                    f"{int(t['only_before'].sum() + t['only_after'].sum()):,} row(s) in one run only"
                    + (f", other values changed: {', '.join(f'{c} {n:,}' for c, n in others.items())}" if others
                       else "") + (f" (not comparing {skipped})" if skipped else ""))
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format",
                               "{:.3g}".format):
            return f"{head}\n\n{self.table.to_string()}"


def compare_backtests(before: pd.DataFrame, after: pd.DataFrame,
                      names: tuple[str, str] = ("the first backtest", "the second backtest"),
                      ignore: tuple[str, ...] = ()) -> BacktestDiff:
    """Compare two backtest frames (``BacktestResult.frame`` or :func:`read_backtest`) row by row.

    Returns a :class:`BacktestDiff`; ``moved`` holds the rows whose margin moved or whose breach flipped,
    with both values and the relative move. Every column but the key is compared; a column in one frame only
    is a ValueError naming the frame without it (``names``: how messages call the two, e.g. their files): its
    values cannot be compared, and the runs would be called identical without them. ``ignore`` names value
    columns to leave out on purpose (e.g. ``mc_se`` against a table written before marginlab stated the Monte
    Carlo error); the summary says so. The key, ``margin`` and ``breach`` cannot be ignored.
    """
    ignore = tuple(dict.fromkeys(ignore))
    fixed = [c for c in ignore if c in REQUIRED]
    if fixed:
        raise ValueError(f"cannot ignore {fixed[0]!r}: the key, margin and breach are always compared")
    unknown = [c for c in ignore if c not in before.columns and c not in after.columns]
    if unknown:  # a typo would claim a column left out while every column is compared
        raise ValueError(f"cannot ignore {unknown[0]!r}: neither backtest has that column (value columns: "
                         f"{', '.join(c for c in dict.fromkeys([*before.columns, *after.columns]) if c not in KEY)})")
    a = _typed(before, "first").drop(columns=list(ignore), errors="ignore").set_index(KEY)
    b = _typed(after, "second").drop(columns=list(ignore), errors="ignore").set_index(KEY)
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError("a backtest has duplicate (date, portfolio, model) rows")
    for lacks, has, mine, theirs in ((names[0], names[1], a, b), (names[1], names[0], b, a)):
        one_only = [c for c in theirs.columns if c not in mine.columns]
        if one_only:
            hint = (f" (or leave it out: --ignore {one_only[0]})" if one_only[0] not in REQUIRED else "")
            raise ValueError(f"{lacks}: no column {one_only[0]!r}, which {has} has; compare backtests with the same "
                             "value columns (standalone_margin: the same standalone_legs setting; mc_se: tables "
                             f"written before marginlab stated the Monte Carlo error have none){hint}")
    both = a.index.intersection(b.index)
    columns = list(a.columns)  # the same in both (checked above)
    x, y = a.loc[both], b.loc[both]
    records = []
    moved_rows = []
    for model in dict.fromkeys([*a.index.get_level_values("model"), *b.index.get_level_values("model")]):
        in_a = a.index.get_level_values("model") == model
        in_b = b.index.get_level_values("model") == model
        sel = both.get_level_values("model") == model
        xa, yb = x[sel], y[sel]
        rec = {"model": model, "rows_both": int(sel.sum()),
               "only_before": int(in_a.sum() - sel.sum()), "only_after": int(in_b.sum() - sel.sum())}
        for c in columns:
            if c == "breach":
                continue  # breaches_flipped below
            numeric = pd.api.types.is_numeric_dtype(xa[c]) and not pd.api.types.is_bool_dtype(xa[c])
            differ = (~_same(xa[c].to_numpy(float), yb[c].to_numpy(float)) if numeric
                      else xa[c].to_numpy() != yb[c].to_numpy())
            rec[f"{c}_flipped" if c in FLAGS else f"{c}_moved"] = int(differ.sum())
        m0, m1 = xa["margin"].to_numpy(float), yb["margin"].to_numpy(float)
        moved = ~_same(m0, m1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(m1 - m0) / np.abs(m0)
        rel = rel[moved & ~np.isnan(rel)]  # inf: a margin that moves from 0
        rec["margin_rel_median"] = float(np.median(rel)) if rel.size else 0.0
        rec["margin_rel_max"] = float(rel.max()) if rel.size else 0.0
        flipped = xa["breach"].to_numpy() != yb["breach"].to_numpy()
        rec["breaches_flipped"] = int(flipped.sum())
        records.append(rec)
        keep = moved | flipped
        if keep.any():
            moved_rows.append(pd.DataFrame({"margin_before": m0[keep], "margin_after": m1[keep],
                                            "breach_before": xa["breach"].to_numpy()[keep],
                                            "breach_after": yb["breach"].to_numpy()[keep]},
                                           index=xa.index[keep]))
    moved_frame = pd.concat(moved_rows) if moved_rows else pd.DataFrame(
        columns=["margin_before", "margin_after", "breach_before", "breach_after"])
    return BacktestDiff(table=pd.DataFrame(records).set_index("model"), moved=moved_frame, ignored=ignore)
