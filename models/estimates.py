"""Volatility-filter estimates of a run: one explicit, keyed estimation step shared by every model.

A filter fit is identified by **what it is fitted to**: the filter specification
(process, distribution), the asset and the window of market rows
``first_row .. row`` (contiguous; ``row`` is the date's row). Models that need the
same fit (FHS VaR and ES on the same asset and window, or two books holding the
same asset) get the same object from the run's :class:`FilterEstimates`, which
the run context owns — no module-level cache.

Daily fits are warm-started from the fit of the **predecessor window** on the
previous row, defined by content alone so that the chain of fits does not
depend on which books or models are run, in which order, or on which worker:

* a full window (``lookback`` rows) rolls: its predecessor is the full window one
  row earlier (``first_row - 1 .. row - 1``) when that row has a return, else the
  window grows;
* a growing window's predecessor is the same window without its last row;
* there is no predecessor (a cold fit) on the first row of a calendar year on daily
  panels, of a calendar month on intraday ones (UTC, by the row's observation time), or
  when the shorter window would have fewer than ``min_obs`` rows.

So a chain starts with a cold fit on the first row of each year (month) and a fit depends
on its window and that period's rows before it, never on where the run or the loaded
panel starts. Where the likelihood has two optima, a chain anchored at the run's first
date (as before 2026-12-01) could hold the other one: margins of 52,755 against 76,350
USD on long BTC spot on 2023-10-16 for runs started on 2023-09-01 and 2023-10-10 (review
volatility F1). A run started inside a period first fits the chain from that period's
first row (at most about 366 daily or 744 hourly fits per asset and specification).

A fit asked for on a row whose predecessor was never fitted (e.g. a book that
starts later than the others, or a worker given only some books) first fits the
missing predecessors, oldest first, so the result is the same whoever asks.
Every fit is recorded in the run's ``estimates`` table (parameters, log-likelihood,
status, one-step variance; ``long_run_var`` and ``long_run_obs``, the floor of
``vol_floor="long_run"`` on that date and the number of returns of the loaded panel it
uses, up to ten years) for the report's parameter-stability charts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData

from .volatility import FilterFit, FilterSpec, fit_filter

__all__ = ["FilterEstimates", "SCALE", "long_run_variance"]

SCALE = 100.0  # returns are filtered in percent


def _anchor_period(market: MarketData, row: int) -> int:
    """The calendar period (UTC) of row ``row``'s observation time: chains start with a cold fit on its first row.

    A calendar year on daily (or coarser) panels, a calendar month on intraday panels: a chain holds at most
    about 366 daily or 744 hourly fits, so a margin asked for on one date (a fresh run, a Dask task, a
    truncated market) costs at most that many warm fits before it.
    """
    unit = "datetime64[Y]" if market.step >= pd.Timedelta(days=1) else "datetime64[M]"
    return int(market.observation_ns[row].astype("datetime64[ns]").astype(unit).astype(np.int64))


def long_run_variance(market: MarketData, asset: str, row: int) -> tuple[float, int]:
    """The long-run variance (percent squared) of ``asset`` at ``row`` and the number of returns it uses.

    The mean squared return (zero mean, as the filter) of the finite returns of the loaded panel in the
    ten years of 365 days up to ``row`` (``vol_floor="long_run"``): fewer than ten years when the panel, or
    the asset's history, starts later.
    """
    span = int(round(10 * market.periods_per_year))  # ten years of 365 days, in observations
    r = market.log_return_array[max(1, row - span + 1):row + 1, market.asset_index[asset]]
    n = int(np.isfinite(r).sum())
    return (float(np.nanmean(r**2) * SCALE**2) if n else float("nan")), n


@dataclass
class FilterEstimates:
    """The fits of one filter specification over a run (see the module docstring).

    Parameters
    ----------
    spec : FilterSpec
        Volatility process and innovation distribution.
    lookback, min_obs : int
        Longest window (rows) and the fewest rows a window may have.
    refit_every : int
        Parameters are re-estimated on the dates whose observation time is a
        whole multiple of ``refit_every`` steps since 1970-01-01 00:00 UTC (a
        date, not a row position: the same dates whatever the loaded panel's
        first row); in between the previous parameters filter the new window.
    on_fit : callable, optional
        Called with one record (dict) per fit, e.g. ``partial(context.record, "estimates")``.
    key : str
        Identifies this chain in the records (``estimation_key`` column), e.g. the models' estimation key.
    """

    spec: FilterSpec
    lookback: int
    min_obs: int
    refit_every: int = 1
    on_fit: Callable[[dict], None] | None = field(default=None, repr=False)
    key: str = ""
    _fits: dict[tuple[str, int, int], FilterFit] = field(default_factory=dict, repr=False)
    _latest_row: int = field(default=-1, repr=False)
    counts: dict[str, int] = field(default_factory=lambda: {"fits": 0, "failed": 0, "boundary": 0, "reused": 0})

    @property
    def label(self) -> str:
        """Short name of the specification, e.g. ``garch-normal``."""
        return f"{self.spec.vol}-{self.spec.dist}"

    def predecessor(self, market: MarketData, asset: str, first_row: int, row: int) -> tuple[int, int] | None:
        """``(first_row, row)`` of the window the fit of ``(first_row, row)`` is warm-started from, or None."""
        if row < 1 or _anchor_period(market, row) != _anchor_period(market, row - 1):
            return None
        n = row - first_row + 1
        if n >= self.lookback and first_row - 1 >= 1 \
                and np.isfinite(market.log_return_array[first_row - 1, market.asset_index[asset]]):
            return first_row - 1, row - 1
        if n - 1 >= self.min_obs:
            return first_row, row - 1
        return None

    def fit(self, market: MarketData, asset: str, first_row: int, row: int) -> FilterFit:
        """The fit of ``asset``'s returns on rows ``first_row .. row`` (fitting missing predecessors first)."""
        key = (asset, first_row, row)
        if key in self._fits:
            return self._fits[key]
        chain = [(first_row, row)]
        while (prev := self.predecessor(market, asset, *chain[-1])) is not None \
                and (asset, *prev) not in self._fits:
            chain.append(prev)
        warm = None if prev is None else self._fits[(asset, *prev)]
        for r0, i in reversed(chain):
            warm = self._fit_window(market, asset, r0, i, warm)
            self._store((asset, r0, i), warm)
        return warm

    def _store(self, key: tuple[str, int, int], fit: FilterFit) -> None:
        # keep the fits of the latest row and the one before only: a window's predecessor is one row back
        row = key[2]
        if row > self._latest_row:
            self._fits = {k: f for k, f in self._fits.items() if k[2] >= row - 1}
            self._latest_row = row
        if row >= self._latest_row - 1:
            self._fits[key] = fit

    def _fit_window(self, market: MarketData, asset: str, first_row: int, row: int,
                    warm: FilterFit | None) -> FilterFit:
        returns = market.log_return_array[first_row:row + 1, market.asset_index[asset]]
        refit = (market.observation_ns[row] // market.step.value) % self.refit_every == 0 or warm is None
        fit = fit_filter(returns * SCALE, self.spec, warm_start=None if warm is None else warm.params,
                         refit=refit, warm_hessian=None if warm is None else warm.inv_hessian)
        self.counts["fits"] += 1
        if fit.status in ("failed", "boundary", "reused"):
            self.counts[fit.status] += 1
        if self.on_fit is not None:
            long_run, n_long_run = long_run_variance(market, asset, row)
            self.on_fit({"estimation_key": self.key, "date": market.index[row], "filter": self.label,
                         "lookback": self.lookback,
                         "asset": asset, "window_start": market.index[first_row], "window_rows": row - first_row + 1,
                         **fit.param_dict, "loglik": fit.loglik, "persistence": fit.persistence,
                         "sigma2_next": fit.sigma2_next, "status": fit.status, "iterations": fit.iterations,
                         "long_run_var": long_run, "long_run_obs": n_long_run})
        return fit
