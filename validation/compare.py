"""What moved between two runs: the rows of two backtests compared key by key.

A validator re-running a study after a code or data change needs to know which margins moved,
by how much, and whether any breach changed: ``marginlab diff BEFORE AFTER`` (two report folders
or two ``backtest.csv`` files) or :func:`compare_backtests` on two frames. Rows are matched on
``(date, portfolio, model)``; a value counts as moved when it is not bit for bit the same (NaN
equals NaN). For each model: the rows in both runs and in one only, the rows whose margin moved,
the median and largest relative move among them (|after − before| / |before|), and the breach
flags that flipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BacktestDiff", "compare_backtests", "read_backtest"]

KEY = ["date", "portfolio", "model"]
#: the numeric columns compared (those present in both runs)
VALUES = ["margin", "var", "es", "pit", "pnl", "standalone_margin"]


def read_backtest(path: str | Path) -> pd.DataFrame:
    """The ``backtest.csv`` of a report folder (or the file itself); ValueError naming the path if unreadable."""
    path = Path(path)
    file = path / "backtest.csv" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{file}: no backtest.csv here (give a marginlab report folder or its backtest.csv)")
    try:
        frame = pd.read_csv(file)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{file}: cannot be read as a backtest table ({exc})") from None
    missing = [c for c in [*KEY, "margin", "breach"] if c not in frame.columns]
    if missing:
        raise ValueError(f"{file}: not a marginlab backtest table (missing column(s) {missing})")
    return frame


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


@dataclass(frozen=True)
class BacktestDiff:
    """The comparison of two backtests (see the module docstring); ``to_frame()`` has one row per model."""

    table: pd.DataFrame
    moved: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """Per model: rows in both, only before, only after, rows moved per column, relative moves, flipped breaches."""
        return self.table.copy()

    @property
    def identical(self) -> bool:
        """True when both runs have the same keys and every compared value is bit for bit the same."""
        t = self.table
        return bool((t[["only_before", "only_after", "breaches_flipped"]].to_numpy() == 0).all()
                    and (t.filter(like="_moved").to_numpy() == 0).all())

    def summary(self) -> str:
        """A table per model, and one line saying whether the runs are identical."""
        head = ("identical: every row and value bit for bit the same" if self.identical else
                f"{int(self.table['margin_moved'].sum()):,} margin(s) moved, "
                f"{int(self.table['breaches_flipped'].sum()):,} breach flag(s) flipped, "
                f"{int(self.table['only_before'].sum() + self.table['only_after'].sum()):,} row(s) in one run only")
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format",
                               "{:.3g}".format):
            return f"{head}\n\n{self.table.to_string()}"


def compare_backtests(before: pd.DataFrame, after: pd.DataFrame) -> BacktestDiff:
    """Compare two backtest frames (``BacktestResult.frame`` or :func:`read_backtest`) row by row.

    Returns a :class:`BacktestDiff`; ``moved`` holds the rows whose margin moved or whose breach flipped,
    with both values and the relative move.
    """
    a = before.assign(date=before["date"].astype(str)).set_index(KEY)
    b = after.assign(date=after["date"].astype(str)).set_index(KEY)
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError("a backtest has duplicate (date, portfolio, model) rows")
    both = a.index.intersection(b.index)
    columns = [c for c in VALUES if c in a.columns and c in b.columns]
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
            rec[f"{c}_moved"] = int((~_same(xa[c].to_numpy(float), yb[c].to_numpy(float))).sum())
        m0, m1 = xa["margin"].to_numpy(float), yb["margin"].to_numpy(float)
        moved = ~_same(m0, m1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(m1 - m0) / np.abs(m0)
        rel = rel[moved & np.isfinite(rel)]
        rec["margin_rel_median"] = float(np.median(rel)) if rel.size else 0.0
        rec["margin_rel_max"] = float(rel.max()) if rel.size else 0.0
        flipped = xa["breach"].astype(bool).to_numpy() != yb["breach"].astype(bool).to_numpy()
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
    return BacktestDiff(table=pd.DataFrame(records).set_index("model"), moved=moved_frame)
