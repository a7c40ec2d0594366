"""Capital-efficiency and procyclicality metrics, one registry entry each.

Each :class:`Metric` takes the backtest rows of one (portfolio, model) pair —
a frame with ``margin``, ``loss`` and ``breach`` (and, for the procyclicality
measures, the book's gross ``notional`` and ``book_changed``) indexed by date —
and returns a number. Tables and reports are generated from :data:`METRICS`
(the efficiency table) and :data:`PROCYCLICALITY`, so a new metric is one entry
plus its test.

Procyclicality is measured **on the model, not on the book**: margins are
normalised by the book's gross notional (margin per unit notional, the margin
*rate*), so re-sizing a book (constant-notional books are re-sized every day)
is not a margin change, and an n-day increase counts only over a window in
which the book keeps its instruments (no ``book_changed`` inside: a roll to
new options is a new book, not a margin increase; 30-day windows of option
books that roll every 23 days therefore have none, NaN). The
measures follow ESMA's Guidelines on EMIR anti-procyclicality margin measures
for CCPs (ESMA70-151-1293, 28 May 2018; Guideline on monitoring: the
peak-to-trough ratio over defined windows, the maximum margin increase over
rolling n-day windows, and the distribution of daily margin calls) and the
CCP literature (Murphy, Vasios and Vause 2014, "An investigation into the
procyclicality of risk-based initial margin models", Bank of England FSP 29;
2016, "A comparative analysis of tools to limit the procyclicality of initial
margin requirements", BoE SWP 597): the largest 1-, 5- and 30-day
increases, the peak-to-trough ratio of the margin rate over the sample and
over the worst rolling 365-day window (a level measure, rolls included), and quantiles of the daily change of the margin
rate on days without a book change (the margin calls per unit notional of an
unchanged book).

Windows in days are calendar windows counted in observations of the panel:
an n-day window is ``round(n x per_day)`` observations, ``per_day`` the
observations per day of the panel's step (1 on daily data, 24 on hourly data,
as the overlays and ``vol_floor`` count their windows), so on hourly data
``max_1d_increase`` is the largest increase over 24 rows and
``peak_to_trough_1y`` the worst rolling 8,760 rows. ``per_day`` is passed by
:class:`~marginlab.validation.engine.BacktestResult` from its ``freq``; the
functions below take windows in observations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Metric", "METRICS", "PROCYCLICALITY", "compute_metrics", "compute_procyclicality", "apc_tradeoff",
           "margin_rate", "offset_benefit", "comparable", "max_n_day_increase", "n_day_increases",
           "largest_increase_window", "peak_to_trough", "INCREASE_WINDOWS", "observations", "monte_carlo_rel_se",
           "comparable_days"]

#: The n of the "largest n-day margin increase" measures (days: ``round(n x per_day)`` observations).
INCREASE_WINDOWS: tuple[int, ...] = (1, 5, 30)


def observations(days: float, per_day: float = 1.0) -> int:
    """The observations of a window of ``days`` days on a panel with ``per_day`` observations a day (at least 1)."""
    return max(int(round(days * per_day)), 1)


@dataclass(frozen=True)
class Metric:
    """A named metric: ``func(rows) -> float`` with its unit and family."""

    key: str
    title: str
    func: Callable[[pd.DataFrame], float]
    unit: str
    family: str  # "coverage", "efficiency", "procyclicality" or "precision" (Monte Carlo error)
    #: whether ``func`` measures over windows in days: then it takes ``per_day`` (observations a day) too
    in_days: bool = False

    def value(self, rows: pd.DataFrame, per_day: float = 1.0) -> float:
        """``func`` on ``rows``, its windows in days counted at ``per_day`` observations a day."""
        return self.func(rows, per_day) if self.in_days else self.func(rows)


def margin_rate(rows: pd.DataFrame) -> np.ndarray:
    """Margin per unit of gross notional, shape (n_rows,); the margin itself when rows carry no ``notional``.

    A zero notional gives NaN (no rate).
    """
    m = rows["margin"].to_numpy(float)
    if "notional" not in rows.columns:
        return m
    n = rows["notional"].to_numpy(float)
    out = np.full(m.shape, np.nan)
    np.divide(m, n, out=out, where=n > 0)
    return out


def comparable(rows: pd.DataFrame, n: int) -> np.ndarray:
    """For each row k >= n, whether rows k - n and k hold the same book: no ``book_changed`` in rows k-n+1 .. k.

    Returns a boolean array of shape (n_rows - n,) aligned with rows n, n+1, ... (all True when rows carry no
    ``book_changed`` column).
    """
    size = len(rows) - n
    if size <= 0:
        return np.zeros(0, dtype=bool)
    if "book_changed" not in rows.columns:
        return np.ones(size, dtype=bool)
    changed = rows["book_changed"].to_numpy(bool).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(changed)])
    # changes in rows k-n+1 .. k = csum[k+1] - csum[k-n+1]
    return (csum[n + 1:] - csum[1:size + 1]) == 0


def n_day_increases(rows: pd.DataFrame, n: int) -> np.ndarray:
    r"""Relative n-observation changes of the margin rate on windows without a book change, :math:`m_t/m_{t-n} - 1`.

    Only windows where rows t - n and t hold the same book (:func:`comparable`: no roll inside) and the
    earlier rate is positive count; empty when there is none (e.g. 30-day windows of a book that rolls
    every 23 days).
    """
    windows = _increase_windows(rows, n)
    if windows is None:
        return np.zeros(0)
    prev, cur, ok = windows
    return cur[ok] / prev[ok] - 1.0


def _increase_windows(rows: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(m_t-n, m_t, ok)`` over the n-observation windows of the margin rate; None with n rows or fewer.

    ``ok``: the windows that count in :func:`n_day_increases` (same book, earlier rate positive, both finite).
    """
    m = margin_rate(rows)
    if m.size <= n:
        return None
    prev, cur = m[:-n], m[n:]
    return prev, cur, comparable(rows, n) & (prev > 0) & np.isfinite(prev) & np.isfinite(cur)


def max_n_day_increase(margin: pd.Series | pd.DataFrame, n: int) -> float:
    r"""Largest relative increase over n observations, :math:`\max_t m_t / m_{t-n} - 1` (NaN if undefined).

    Given a pair's rows (a frame), ``m`` is the margin rate on windows without a book change
    (:func:`n_day_increases`); given a Series, the margin itself over every window.
    """
    rows = margin if isinstance(margin, pd.DataFrame) else pd.DataFrame({"margin": margin})
    x = n_day_increases(rows, n)
    return float(x.max()) if x.size else float("nan")


def largest_increase_window(rows: pd.DataFrame, n: int) -> tuple[object, object] | None:
    """Row labels ``(start, end)`` of the window of :func:`max_n_day_increase` (the first if tied); None if none.

    ``rows`` is one pair's rows indexed by date, as :func:`n_day_increases` reads them.
    """
    windows = _increase_windows(rows, n)
    if windows is None or not windows[2].any():
        return None
    prev, cur, ok = windows
    k = int(np.flatnonzero(ok)[np.argmax(cur[ok] / prev[ok] - 1.0)])
    return rows.index[k], rows.index[k + n]


def peak_to_trough(rows: pd.DataFrame, window: int | None = None) -> float:
    """Peak-to-trough ratio of the margin rate (margin / notional), max / min (inf when the minimum is 0).

    With ``window`` (observations), the largest ratio over rolling windows of that length (the sample's when
    shorter). NaN without a rate. A level measure: for rolling option books it includes the rate's changes
    at rolls (the n-day increases do not).
    """
    m = pd.Series(margin_rate(rows)).dropna()
    if m.empty:
        return float("nan")
    if window is not None and len(m) > window:
        hi = m.rolling(window).max().to_numpy()[window - 1:]
        lo = m.rolling(window).min().to_numpy()[window - 1:]
        with np.errstate(divide="ignore"):
            return float(np.max(np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), np.inf)))
    low = m.min()
    return float(m.max() / low) if low > 0 else float("inf")


def offset_benefit(rows: pd.DataFrame) -> float:
    r"""Average over dates of the book's margin over the sum of its legs' standalone margins.

    .. math:: \frac{1}{T}\sum_t \frac{M_t(\text{book})}{\sum_i M_t(\text{leg}_i)}

    1 = no offset (the book costs what its legs cost apart); 0.3 = the book needs 30% of the
    collateral of its legs margined one by one. Needs the ``standalone_margin`` column
    (``Backtest(..., standalone_legs=True)``); NaN without it, and dates whose legs need no
    margin are left out.
    """
    if "standalone_margin" not in rows:
        return float("nan")
    parts = rows["standalone_margin"].to_numpy(float)
    ok = np.isfinite(parts) & (parts > 0) & np.isfinite(rows["margin"].to_numpy(float))
    return float(np.mean(rows["margin"].to_numpy(float)[ok] / parts[ok])) if ok.any() else float("nan")


def monte_carlo_rel_se(rows: pd.DataFrame) -> float:
    r"""Median over dates of the margin's Monte Carlo standard error relative to the margin, ``mc_se / margin``.

    ``mc_se`` is :attr:`marginlab.models.base.Forecast.mc_se` (:func:`marginlab.models.simulation.monte_carlo_se`):
    the sampling error of one date's risk measure estimated from simulated i.i.d. scenarios (an average over many
    dates moves far less: the draws are independent across dates). NaN when the rows state none (rules,
    historical simulation and FHS at a one-observation MPOR have no simulation noise; simulated margins with
    fewer than 10 tail scenarios and the ``stressed_weight`` overlay's mixture are not estimated); dates with a
    zero margin are left out.
    """
    if "mc_se" not in rows:
        return float("nan")
    se, m = rows["mc_se"].to_numpy(float), rows["margin"].to_numpy(float)
    ok = np.isfinite(se) & np.isfinite(m) & (m > 0)
    return float(np.median(se[ok] / m[ok])) if ok.any() else float("nan")


def _daily_calls(rows: pd.DataFrame, n: int = 1) -> np.ndarray:
    """Changes m_t - m_t-n of the margin rate (fraction points of notional) on windows holding the same book.

    n observations make one day (``observations(1, per_day)``); windows per :func:`comparable`. A signed
    difference of two rates (the margin call per unit notional), not the relative change of
    :func:`max_n_day_increase`. One observation on daily data; 24 on hourly data, so that a daily call is a day's
    change there too, not an hour's: every row's change over the 24 rows before it (overlapping windows, not
    only the calls at one hour of the day).
    """
    m = margin_rate(rows)
    if m.size <= n:
        return np.zeros(0)
    d = m[n:] - m[:-n]
    return d[comparable(rows, n) & np.isfinite(d)]


def _call_quantile(q: float) -> Callable[..., float]:
    def func(rows: pd.DataFrame, per_day: float = 1.0) -> float:
        d = _daily_calls(rows, observations(1, per_day))
        return float(np.quantile(d, q)) if d.size else float("nan")
    return func


def comparable_days(rows: pd.DataFrame, per_day: float = 1.0) -> float:
    """Days (observations / ``per_day``) whose one-day window holds an unchanged book: the sample of the daily calls.

    On daily data the count of dates whose previous date holds the same book; on hourly data the rows whose row
    24 rows earlier holds the same book, over 24 (24 rows are 24 hours except across the panel's missing hours).
    """
    return float(comparable(rows, observations(1, per_day)).sum()) / per_day


def _excess_collateral(rows: pd.DataFrame) -> float:
    r"""Average collateral left after the realised loss, :math:`\frac1T\sum_t \max(M_t - \max(L_t, 0), 0)`.

    The part of the margin :math:`M_t` that the loss over the MPOR :math:`L_t` did not consume: the margin on
    a gain or a flat day (a gain is not collateral, so the excess never exceeds the margin held), the margin
    minus the loss when the margin covers it, 0 on a breach (whose uncovered part, loss - margin, is the
    shortfall that CPMI-IOSCO PQD 6.5 discloses). Margin per date = excess + consumed part, so
    ``mean_margin - excess_collateral`` is the average collateral the losses used.
    """
    return float((rows["margin"] - rows["loss"].clip(lower=0)).clip(lower=0).mean())


def _shortfall(rows: pd.DataFrame) -> pd.Series:
    return (rows["loss"] - rows["margin"])[rows["breach"]]


#: Procyclicality measures of the efficiency table (and of :data:`PROCYCLICALITY`).
_PROCYCLICALITY_CORE: tuple[Metric, ...] = (
    Metric("peak_to_trough", "Peak-to-trough margin rate (max / min of margin / notional)",
           lambda r: peak_to_trough(r), "ratio", "procyclicality"),
    *(Metric(f"max_{n}d_increase", f"Largest {n}-day relative increase of margin / notional, "
                                          f"max m_t / m_t-{n} - 1 (same book)",
             lambda r, per_day=1.0, n=n: max_n_day_increase(r, observations(n, per_day)), "fraction",
             "procyclicality", in_days=True) for n in INCREASE_WINDOWS),
)

METRICS: tuple[Metric, ...] = (
    Metric("observations", "Observations", lambda r: float(len(r)), "days", "coverage"),
    Metric("breaches", "Breaches (loss > margin)", lambda r: float(r["breach"].sum()), "count", "coverage"),
    Metric("breach_rate", "Breach rate", lambda r: float(r["breach"].mean()), "fraction", "coverage"),
    Metric("mean_margin", "Average margin", lambda r: float(r["margin"].mean()), "quote ccy", "efficiency"),
    # the mean over every row of the loss floored at zero (a gain counts as 0), not the mean over loss days
    Metric("mean_positive_loss", "Average realised loss floored at zero, mean(max(loss, 0)) over all dates",
           lambda r: float(r["loss"].clip(lower=0).mean()), "quote ccy", "efficiency"),
    Metric("margin_to_loss", "Average margin / mean(max(loss, 0)) over all dates",
           lambda r: float(r["margin"].mean() / r["loss"].clip(lower=0).mean())
           if r["loss"].clip(lower=0).mean() > 0 else float("nan"), "ratio", "efficiency"),
    # the collateral the realised loss did not consume: margin - max(loss, 0), floored at 0, so between 0 and the
    # margin (a gain consumes none: it is not collateral); the complement of the shortfall on breaches
    Metric("excess_collateral", "Average excess collateral, mean(max(margin - max(loss, 0), 0)) over all dates "
                                "(at most the margin: a gain counts as a loss of 0)",
           _excess_collateral, "quote ccy", "efficiency"),
    Metric("shortfall_total", "Total shortfall on breaches", lambda r: float(_shortfall(r).sum()),
           "quote ccy", "efficiency"),
    Metric("shortfall_max", "Largest shortfall on a breach",
           lambda r: float(_shortfall(r).max()) if r["breach"].any() else 0.0, "quote ccy", "efficiency"),
    Metric("shortfall_mean", "Average shortfall on breaches",
           lambda r: float(_shortfall(r).mean()) if r["breach"].any() else 0.0, "quote ccy", "efficiency"),
    Metric("offset_benefit", "Offset benefit: margin / sum of standalone leg margins (mean over dates)",
           offset_benefit, "ratio", "efficiency"),
    Metric("mc_rel_se", "Monte Carlo error of the margin: median over dates of its standard error / the margin "
                        "(models on simulated scenarios; another seed moves a margin by about this)",
           monte_carlo_rel_se, "fraction", "precision"),
    *_PROCYCLICALITY_CORE,
)

#: The ESMA 2018 procyclicality measures of :meth:`BacktestResult.procyclicality`: the four of :data:`METRICS`,
#: the peak-to-trough ratio of the worst rolling year, the distribution of daily margin calls and the average
#: margin rate.
PROCYCLICALITY: tuple[Metric, ...] = (
    Metric("mean_margin_rate", "Average margin / notional", lambda r: float(np.nanmean(margin_rate(r))),
           "fraction", "procyclicality"),
    *_PROCYCLICALITY_CORE,
    Metric("peak_to_trough_1y", "Peak-to-trough margin rate, worst rolling 365 days",
           lambda r, per_day=1.0: peak_to_trough(r, observations(365, per_day)), "ratio", "procyclicality",
           in_days=True),
    Metric("comparable_days", "Days with an unchanged book (1-day windows)", comparable_days, "days",
           "procyclicality", in_days=True),
    # margin calls: absolute changes m_t - m_t-1 of the margin rate (fraction points), not relative changes; t - 1 is
    # one day earlier (24 observations on hourly data)
    Metric("daily_call_p50", "Daily margin call, m_t - m_t-1 of margin / notional in points (t - 1: one day "
                             "earlier), median (same book)", _call_quantile(0.50), "fraction points", "procyclicality",
           in_days=True),
    Metric("daily_call_p95", "Daily margin call, m_t - m_t-1 of margin / notional in points (t - 1: one day "
                             "earlier), 95th percentile (same book)", _call_quantile(0.95), "fraction points",
           "procyclicality", in_days=True),
    Metric("daily_call_p99", "Daily margin call, m_t - m_t-1 of margin / notional in points (t - 1: one day "
                             "earlier), 99th percentile (same book)", _call_quantile(0.99), "fraction points",
           "procyclicality", in_days=True),
    Metric("daily_call_max", "Largest daily margin call, max m_t - m_t-1 of margin / notional in points (t - 1: one "
                             "day earlier; same book)", _call_quantile(1.0), "fraction points", "procyclicality",
           in_days=True),
)


def compute_metrics(rows: pd.DataFrame, families: tuple[str, ...] | None = None,
                    per_day: float = 1.0) -> dict[str, float]:
    """Evaluate every registered metric (optionally of some families) on one pair's rows.

    ``per_day``: observations a day of the panel (24 on hourly data), for the windows in days.
    """
    return {m.key: m.value(rows, per_day) for m in METRICS if families is None or m.family in families}


def compute_procyclicality(rows: pd.DataFrame, per_day: float = 1.0) -> dict[str, float]:
    """Evaluate every measure of :data:`PROCYCLICALITY` on one pair's rows (in date order).

    ``per_day``: as :func:`compute_metrics`.
    """
    return {m.key: m.value(rows, per_day) for m in PROCYCLICALITY}


def apc_tradeoff(base: pd.DataFrame, overlaid: pd.DataFrame, per_day: float = 1.0) -> dict[str, float]:
    """Cost and benefit of an overlay: the overlaid model's rows against its inner model's, on the same dates.

    Cost: the average extra margin, ``extra_margin`` (quote currency) and ``extra_margin_rel`` (mean overlaid /
    mean base - 1). Benefit: for each n of :data:`INCREASE_WINDOWS`, the largest n-day increase of the margin
    rate without (``base_max_{n}d``) and with (``apc_max_{n}d``) the overlay, the reduction
    ``reduction_{n}d`` = base - apc (fraction points: 0.58 is 58 percentage points of the margin rate) and the
    relative reduction ``reduction_{n}d_rel`` = (base - apc) / base (NaN without a base increase); likewise
    the peak-to-trough ratios. Both frames hold one pair's rows indexed by date; only their common dates count.
    An n-day window is ``round(n x per_day)`` observations (``per_day`` = 24 on hourly data).
    """
    dates = base.index.intersection(overlaid.index)
    b, o = base.loc[dates], overlaid.loc[dates]
    out = {"dates": float(len(dates)), "extra_margin": float((o["margin"] - b["margin"]).mean()),
           "extra_margin_rel": float(o["margin"].mean() / b["margin"].mean() - 1.0)
           if b["margin"].mean() > 0 else float("nan")}
    for n in INCREASE_WINDOWS:
        before, after = max_n_day_increase(b, observations(n, per_day)), max_n_day_increase(o, observations(n, per_day))
        out.update({f"base_max_{n}d": before, f"apc_max_{n}d": after, f"reduction_{n}d": before - after,
                    # NaN without a base increase (below 1e-12: float noise of a constant rate, e.g. 4.4e-16)
                    f"reduction_{n}d_rel": (before - after) / before if before > 1e-12 else float("nan")})
    out.update({"base_peak_to_trough": peak_to_trough(b), "apc_peak_to_trough": peak_to_trough(o)})
    return out
