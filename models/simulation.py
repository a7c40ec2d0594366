r"""Risk-based margin models: filtered historical simulation (FHS) with GARCH, historical simulation, EWMA.

Every model here revalues the book in full on every scenario through
:func:`~marginlab.models.revaluation.revalue` and takes a risk measure of the
simulated losses L (sorted descending, :math:`L_{(1)} \ge L_{(2)} \ge \dots`):

* VaR at level α: :math:`L_{(k)}` with :math:`k = \lceil N(1-\alpha)\rceil`;
* ES at level α: :math:`\frac1k\sum_{i\le k} L_{(i)}` (so ES >= VaR on every date).

The margin is the risk measure floored at 0. Scenarios use data up to t only.
Random draws come from ``numpy.random.default_rng([seed, i])`` with i the
position of t in the market index (FHS row indices as 16-bit integers), so
models compared in one study with the same seed, lookback and path count share
the same draws, and a run is bit-for-bit repeatable. At a one-day MPOR a path
is one window row, so FHS revalues the book once per row and takes the risk
measure of the row losses weighted by how often each row is drawn (the same
numbers as revaluing every path, :func:`drawn_risk_measure`). A model returns NaN (no margin) until it has
``min_obs`` observations (returns, and implied-vol changes for option books);
the engine reports those dates as warm-up.

References: Barone-Adesi, Giannopoulos and Vosper (1999), "VaR without
correlations for portfolios of derivative securities", J. Futures Markets 19;
Hull and White (1998); RiskMetrics Technical Document (1996); BCBS (2019)
MAR33 (expected shortfall at 97.5%).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData

from .base import MarginModel, check_ints, check_range, register
from .garch import FilterFit, GarchSpec, fit_filter, simulate_paths
from .instruments import Position
from .pricing import NUMBA_ENABLED
from .revaluation import book_arrays, revalue_at

if NUMBA_ENABLED:
    from numba import njit

__all__ = ["FHSGarch", "HistoricalVaR", "HistoricalES", "EWMAVaR", "risk_measure", "drawn_risk_measure"]

SCALE = 100.0  # returns are filtered in percent


def risk_measure(losses: np.ndarray, measure: str, level: float) -> float:
    """VaR (k-th largest loss) or ES (mean of the k largest), k = ceil(N (1 - level))."""
    k = _risk_k(losses.size, level)
    top = -np.partition(-losses, k - 1)[:k]
    return float(top.mean()) if measure == "es" else float(top.min())


def _risk_k(n: int, level: float) -> int:
    return max(int(np.ceil(n * (1.0 - level) - 1e-9)), 1)


def drawn_risk_measure(row_losses: np.ndarray, draws: np.ndarray, measure: str, level: float) -> float:
    """``risk_measure(row_losses[draws], measure, level)`` without building the drawn sample.

    At a one-day MPOR the FHS paths are window rows drawn with replacement; the compiled kernel
    counts how often each row is drawn and walks the rows down from the largest loss until k
    draws are covered (VaR: the loss reached, the same number; ES: count-weighted sum / k).
    """
    k = _risk_k(draws.size, level)
    if not NUMBA_ENABLED or not np.isfinite(row_losses).all():
        return risk_measure(row_losses[draws], measure, level)
    var, top_sum = _drawn_top_nb(np.ascontiguousarray(row_losses, dtype=float), np.ascontiguousarray(draws), k)
    return float(top_sum / k) if measure == "es" else float(var)


if NUMBA_ENABLED:
    @njit(cache=True)
    def _drawn_top_nb(loss, draws, k):  # pragma: no cover - compiled
        """k-th largest of the multiset {loss[draws[j]]} and the sum of its k largest elements."""
        n = loss.size
        counts = np.zeros(n, np.int64)
        for j in range(draws.size):
            counts[draws[j]] += 1
        # candidate rows: the m largest losses (ties included), m doubled until they hold k draws
        m = min(n, 2 * k * n // draws.size + 16)
        while True:
            v = -np.inf if m >= n else -np.partition(-loss, m - 1)[m - 1]
            cand = np.nonzero(loss >= v)[0]
            total = 0
            for c in cand:
                total += counts[c]
            if total >= k or m >= n:
                break
            m = min(n, 2 * m)
        order = cand[np.argsort(-loss[cand], kind="mergesort")]
        acc = 0
        top_sum = 0.0
        for c in order:
            take = min(counts[c], k - acc)
            if take > 0:
                top_sum += take * loss[c]
                acc += take
                if acc == k:
                    return loss[c], top_sum
        return np.nan, np.nan


def _window(market: MarketData, assets: Sequence[str], i: int, lookback: int, with_vol: bool):
    """Rows (positions <= i) of the last ``lookback`` dates where every needed series is observed."""
    cols = [market.asset_index[a] for a in assets]
    lo = max(1, i - lookback + 1)
    r = market.log_return_array[lo:i + 1][:, cols]
    ok = np.isfinite(r).all(axis=1)
    dv = None
    if with_vol:
        dv = market.log_vol_change_array[lo:i + 1][:, cols]
        ok &= np.isfinite(dv).all(axis=1)
    if ok.all():
        return np.arange(lo, i + 1), r, dv
    return np.arange(lo, i + 1)[ok], r[ok], (None if dv is None else dv[ok])


def _draws(seed: int, i: int, n_window: int, n_paths: int, h: int) -> np.ndarray:
    """Bootstrap row indices, shape (n_paths, h), uniform on [0, n_window), from the generator (seed, i).

    Drawn as 16-bit integers when the window allows (numpy's exact bounded draws; a quarter of
    the generator output of 64-bit ones).
    """
    rng = np.random.default_rng([int(seed), int(i)])
    return rng.integers(0, n_window, size=(n_paths, h), dtype=np.uint16 if n_window <= 65536 else np.int64)


def _book_history(positions: Sequence[Position], market: MarketData, i: int, lookback: int, min_obs: int):
    """The book's arrays and its joint history window at row i, or None before ``min_obs`` rows.

    Returns ``(book, rows, returns, vol_changes)``; ``vol_changes`` is None unless the book holds options.
    """
    book = book_arrays(positions)
    rows, rets, dvol = _window(market, book.assets, i, lookback, bool(book.is_option.any()))
    if rows.size < min_obs:
        return None
    return book, rows, rets, dvol


def _scenario_pnl(positions: Sequence[Position], market: MarketData, i: int, assets: list[str],
                  spot_moves: np.ndarray, log_vol_moves: np.ndarray | None, horizon: int) -> np.ndarray:
    """Full-revaluation P&L of the book on scenarios (log spot moves, log implied-vol moves).

    ``horizon`` is the MPOR in observations (options are aged by horizon x the panel's step).
    """
    vol_shocks = None
    if log_vol_moves is not None:
        cols = [market.asset_index[a] for a in assets]
        vol_shocks = market.vol_array[i, cols] * (np.exp(log_vol_moves) - 1.0)
    return revalue_at(book_arrays(positions), market, i, spot_moves, vol_shocks, horizon=horizon)


def _scenario_measure(positions: Sequence[Position], market: MarketData, i: int, assets: list[str],
                      spot_moves: np.ndarray, log_vol_moves: np.ndarray | None, horizon: int,
                      measure: str, level: float) -> float:
    """Revalue the book on scenarios and take VaR/ES of the losses, floored at 0."""
    pnl = _scenario_pnl(positions, market, i, assets, spot_moves, log_vol_moves, horizon)
    return max(risk_measure(-pnl, measure, level), 0.0)


_FIT_CACHE: OrderedDict = OrderedDict()
_FIT_CACHE_SIZE = 256


@dataclass
class FHSState:
    """State of an FHS model at one date: lazily fitted filters per asset and cumulative diagnostics."""

    i: int
    prev_fits: dict[tuple, FilterFit]
    fits: dict[tuple, FilterFit] = field(default_factory=dict)
    diagnostics: dict[str, int] = field(default_factory=lambda: {"fits": 0, "failed": 0, "boundary": 0,
                                                                 "reused": 0})


@register
@dataclass(frozen=True)
class FHSGarch(MarginModel):
    r"""Filtered historical simulation with a GARCH-family volatility filter.

    For each asset a GARCH(1,1), GJR-GARCH(1,1,1) or EWMA filter is fitted to the
    last ``lookback`` daily log returns (percent, zero mean); the standardised
    residual **vectors** :math:`z_s = (\epsilon_{a,s}/\sigma_{a,s})_a` of the
    window are bootstrapped jointly across assets (keeping their
    cross-correlation), and h-day paths are built with each asset's variance
    propagated through its own recursion:
    :math:`\epsilon_{a,t+j} = \sigma_{a,t+j} z_{a,u_j}`,
    :math:`\sigma^2_{a,t+j+1} = \omega + (\alpha + \gamma 1[\epsilon<0])\epsilon^2 + \beta\sigma^2_{a,t+j}`.
    For option books the log changes of implied vol on the same sampled dates
    are summed over the path and applied to today's vol, jointly with the
    returns. The book is revalued in full on every path; the margin is VaR
    (``measure="var"``, level 0.99 by default) or ES (``"es"``, 0.975).

    ``vol_floor="long_run"`` floors each asset's one-step variance at the
    sample variance of all its returns up to t (at most ten years);
    ``refit_every=k`` re-estimates parameters every k-th date (filtering the
    new data with the previous parameters in between). A failed optimisation
    keeps the previous parameters and is counted in the diagnostics, as are
    fits on the stationarity boundary.

    Reference: Barone-Adesi, Giannopoulos and Vosper (1999); Pritsker (2006).
    """

    name: ClassVar[str] = "fhs_garch"
    measure: str = "var"
    level: float | None = None
    vol: str = "garch"
    dist: str = "normal"
    lookback: int = 1000
    n_paths: int = 10_000
    mpor_days: int = 1
    refit_every: int = 1
    vol_floor: str | None = None
    min_obs: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        if self.measure not in ("var", "es"):
            raise ValueError(f"{self.name}: measure must be 'var' or 'es', got {self.measure!r}")
        if self.level is not None:
            check_range(self.name, "level", self.level, 0.5, 1.0, high_open=True)
        GarchSpec(self.vol, self.dist)
        check_ints(self, {"lookback": 20, "n_paths": 100, "mpor_days": 1, "refit_every": 1, "min_obs": 20, "seed": 0})
        if self.min_obs > self.lookback:
            raise ValueError(f"{self.name}: min_obs ({self.min_obs}) must not exceed lookback ({self.lookback})")
        if self.vol_floor not in (None, "long_run"):
            raise ValueError(f"{self.name}: vol_floor must be None or 'long_run', got {self.vol_floor!r}")

    @property
    def confidence(self) -> float:
        """Risk-measure level (0.99 for VaR, 0.975 for ES unless ``level`` is set)."""
        return self.level if self.level is not None else (0.99 if self.measure == "var" else 0.975)

    @property
    def spec(self) -> GarchSpec:
        """The volatility filter specification."""
        return GarchSpec(self.vol, self.dist)

    def fit(self, market: MarketData, t, warm_start=None) -> FHSState:
        """Prepare the state at ``t``; filters are fitted lazily per asset from data up to ``t``."""
        i = market.loc_of(t)
        # warm starts: the previous date's fit of the same asset whose window started one row earlier
        # (rolling window) or at the same row (growing window)
        prev = {} if warm_start is None else {(a, r0 + (n == self.lookback), n + (n < self.lookback)): f
                                              for (a, r0, n), f in warm_start.fits.items()}
        state = FHSState(i=i, prev_fits=prev)
        if warm_start is not None:
            state.diagnostics = dict(warm_start.diagnostics)
        return state

    def _asset_fit(self, state: FHSState, market: MarketData, asset: str, returns: np.ndarray,
                   rows: np.ndarray) -> FilterFit:
        # a fit is identified by the asset and the exact window of rows (option books use a
        # shorter window: the dates with implied-vol data)
        window = (asset, int(rows[0]), int(rows.size))
        if window in state.fits:
            return state.fits[window]
        prev = state.prev_fits.get(window)
        refit = state.i % self.refit_every == 0 or prev is None
        key = (market.token, window, state.i, self.vol, self.dist, refit,
               None if prev is None else prev.params.tobytes(),
               None if prev is None or prev.inv_hessian is None else prev.inv_hessian.tobytes())
        fit = _FIT_CACHE.get(key)
        if fit is None:
            fit = fit_filter(returns * SCALE, self.spec, warm_start=None if prev is None else prev.params,
                             refit=refit, warm_hessian=None if prev is None else prev.inv_hessian)
            _FIT_CACHE[key] = fit
            if len(_FIT_CACHE) > _FIT_CACHE_SIZE:
                _FIT_CACHE.popitem(last=False)
        state.fits[window] = fit
        state.diagnostics["fits"] += 1
        if fit.status in ("failed", "boundary", "reused"):
            state.diagnostics[fit.status] += 1
        return fit

    def margin(self, state: FHSState, positions: Sequence[Position], market: MarketData, t) -> float:
        """FHS VaR or ES of the book (NaN before ``min_obs`` observations)."""
        history = _book_history(positions, market, state.i, self.lookback, self.min_obs)
        if history is None:
            return float("nan")
        book, rows, rets, dvol = history
        fits = [self._asset_fit(state, market, a, rets[:, k], rows) for k, a in enumerate(book.assets)]
        if self.vol_floor == "long_run":
            all_r = market.log_return_array[max(1, state.i - 3650 + 1):state.i + 1][:, [market.asset_index[a]
                                                                                      for a in book.assets]]
            for k, f in enumerate(fits):
                floor = np.nanvar(all_r[:, k]) * SCALE**2
                if f.sigma2_next < floor:
                    fits[k] = FilterFit(spec=f.spec, params=f.params, loglik=f.loglik, sigma2=f.sigma2,
                                        std_resids=f.std_resids, sigma2_next=floor, backcast=f.backcast,
                                        status=f.status)
        z = fits[0].std_resids[:, None] if len(fits) == 1 else np.column_stack([f.std_resids for f in fits])
        draws = _draws(self.seed, state.i, rows.size, self.n_paths, self.mpor_days)
        if self.mpor_days == 1:
            # a one-day path is one window row scaled by sigma_{t+1}: revalue the book once per row and
            # give each path its row's P&L (the same numbers as revaluing all n_paths scenarios)
            spot_rows = np.sqrt(np.array([f.sigma2_next for f in fits])) * z / SCALE
            row_pnl = _scenario_pnl(positions, market, state.i, book.assets, spot_rows, dvol, 1)
            return max(drawn_risk_measure(-row_pnl, draws[:, 0], self.measure, self.confidence), 0.0)
        spot = simulate_paths(fits, z, draws) / SCALE
        log_vol = None if dvol is None else dvol[draws].sum(axis=1)
        pnl = _scenario_pnl(positions, market, state.i, book.assets, spot, log_vol, self.mpor_days)
        return max(risk_measure(-pnl, self.measure, self.confidence), 0.0)


@dataclass(frozen=True)
class _Historical(MarginModel):
    """Plain historical simulation on the lookback window (shared by historical_var / historical_es)."""

    measure: ClassVar[str] = "var"
    level: float | None = None
    lookback: int = 1000
    mpor_days: int = 1
    scaling: str = "overlapping"
    stress_start: str | None = None
    stress_end: str | None = None
    min_obs: int = 250

    def __post_init__(self) -> None:
        if self.level is not None:
            check_range(self.name, "level", self.level, 0.5, 1.0, high_open=True)
        check_ints(self, {"lookback": 20, "mpor_days": 1, "min_obs": 20})
        if self.scaling not in ("overlapping", "sqrt_time"):
            raise ValueError(f"{self.name}: scaling must be 'overlapping' or 'sqrt_time', got {self.scaling!r}")
        if (self.stress_start is None) != (self.stress_end is None):
            raise ValueError(f"{self.name}: give both stress_start and stress_end, or neither")
        if self.stress_start is not None and pd.Timestamp(self.stress_start) > pd.Timestamp(self.stress_end):
            raise ValueError(f"{self.name}: stress_start is after stress_end")

    @property
    def confidence(self) -> float:
        """Risk-measure level (0.99 for VaR, 0.975 for ES unless ``level`` is set)."""
        return self.level if self.level is not None else (0.99 if self.measure == "var" else 0.975)

    def fit(self, market: MarketData, t, warm_start=None) -> int:
        """The state is the position of ``t``."""
        return market.loc_of(t)

    def _scenarios(self, rets: np.ndarray, dvol: np.ndarray | None):
        h = self.mpor_days
        if self.scaling == "sqrt_time" or h == 1:
            s = rets * np.sqrt(h)
            return s, (None if dvol is None else dvol * np.sqrt(h))
        kernel = np.ones(h)

        def overlap(x):
            return np.column_stack([np.convolve(x[:, k], kernel, mode="valid") for k in range(x.shape[1])])

        return overlap(rets), (None if dvol is None else overlap(dvol))

    def margin(self, state: int, positions: Sequence[Position], market: MarketData, t) -> float:
        """Historical VaR/ES of the book's full-revaluation losses (NaN before ``min_obs``)."""
        i = state
        history = _book_history(positions, market, i, self.lookback, self.min_obs)
        if history is None:
            return float("nan")
        book, rows, rets, dvol = history
        with_vol = dvol is not None
        spot, vol = self._scenarios(rets, dvol)
        if self.stress_start is not None:
            s0 = pd.Timestamp(self.stress_start, tz="UTC")
            s1 = pd.Timestamp(self.stress_end, tz="UTC")
            if s1 <= market.index[i]:
                lo, hi = market.index.searchsorted(s0), market.index.searchsorted(s1, side="right") - 1
                srows, srets, sdvol = _window(market, book.assets, hi, hi - lo + 1, with_vol)
                if srows.size >= self.mpor_days:
                    sspot, svol = self._scenarios(srets, sdvol)
                    spot = np.vstack([spot, sspot])
                    vol = None if vol is None else np.vstack([vol, svol])
        return _scenario_measure(positions, market, i, book.assets, spot, vol, self.mpor_days, self.measure,
                                 self.confidence)


@register
@dataclass(frozen=True)
class HistoricalVaR(_Historical):
    r"""Historical-simulation VaR: the book revalued on each of the last ``lookback`` joint moves.

    h-day scenarios are overlapping sums of daily log returns (and implied-vol
    log changes) in the window (``scaling="overlapping"``), or daily moves x
    :math:`\sqrt h` (``"sqrt_time"``, an approximation that ignores volatility
    clustering and fat-tail aggregation). ``stress_start``/``stress_end`` add
    the scenarios of a stressed period once it lies before t (EMIR RTS Art. 28
    anti-procyclicality option (b)). Level 0.99 by default.
    """

    name: ClassVar[str] = "historical_var"
    measure: ClassVar[str] = "var"


@register
@dataclass(frozen=True)
class HistoricalES(_Historical):
    """Historical-simulation expected shortfall (level 0.975 by default); see :class:`HistoricalVaR`."""

    name: ClassVar[str] = "historical_es"
    measure: ClassVar[str] = "es"


@register
@dataclass(frozen=True)
class EWMAVaR(MarginModel):
    r"""EWMA (RiskMetrics) VaR by full revaluation under simulated joint moves.

    :math:`\Sigma_t = \lambda\Sigma_{t-1} + (1-\lambda) r_{t-1} r_{t-1}'` over the
    book's daily log returns (and implied-vol log changes for option books),
    started from the sample covariance of the first 30 window observations. Daily
    moves are drawn as :math:`L z` (:math:`LL' = \Sigma_{t+1}`) with z standard
    normal or multivariate Student-t scaled to unit variance (``dist="t"``,
    ``nu`` degrees of freedom) and summed over h = ``mpor_days`` days with Σ held
    constant (the RiskMetrics/IGARCH forecast, under which the h-day variance is
    exactly h Σ). VaR at level 0.99 by default.
    """

    name: ClassVar[str] = "ewma_var"
    lam: float = 0.94
    dist: str = "normal"
    nu: float = 5.0
    level: float = 0.99
    lookback: int = 1000
    n_paths: int = 10_000
    mpor_days: int = 1
    min_obs: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        check_range(self.name, "lam", self.lam, 0.0, 1.0, low_open=True, high_open=True)
        if self.dist not in ("normal", "t"):
            raise ValueError(f"{self.name}: dist must be 'normal' or 't', got {self.dist!r}")
        check_range(self.name, "nu", self.nu, 2.0, None, low_open=True)
        check_range(self.name, "level", self.level, 0.5, 1.0, high_open=True)
        check_ints(self, {"lookback": 40, "n_paths": 100, "mpor_days": 1, "min_obs": 40, "seed": 0})

    def fit(self, market: MarketData, t, warm_start=None) -> int:
        """The state is the position of ``t``."""
        return market.loc_of(t)

    def covariance(self, x: np.ndarray) -> np.ndarray:
        """EWMA covariance forecast for the next day from the rows of ``x`` (oldest first)."""
        cov0 = np.cov(x[:30].T, ddof=0).reshape(x.shape[1], x.shape[1])
        rest = x[30:]
        m = rest.shape[0]
        # unrolled recursion: lam^m cov0 + (1 - lam) sum_j lam^(m-1-j) r_j r_j'
        w = (1 - self.lam) * self.lam ** np.arange(m - 1, -1, -1)
        return self.lam**m * cov0 + (rest * w[:, None]).T @ rest

    def margin(self, state: int, positions: Sequence[Position], market: MarketData, t) -> float:
        """EWMA VaR of the book (NaN before ``min_obs`` observations)."""
        i = state
        history = _book_history(positions, market, i, self.lookback, self.min_obs)
        if history is None:
            return float("nan")
        book, rows, rets, dvol = history
        x = rets if dvol is None else np.hstack([rets, dvol])
        cov = self.covariance(x)
        chol = np.linalg.cholesky(cov + 1e-14 * np.eye(cov.shape[0]))
        rng = np.random.default_rng([int(self.seed), int(i)])
        z = rng.standard_normal((self.mpor_days, self.n_paths, x.shape[1]))
        if self.dist == "t":
            w = rng.chisquare(self.nu, size=(self.mpor_days, self.n_paths, 1))
            z = z * np.sqrt((self.nu - 2.0) / w)
        moves = (z @ chol.T).sum(axis=0)
        n = len(book.assets)
        log_vol = None if dvol is None else moves[:, n:]
        return _scenario_measure(positions, market, i, book.assets, moves[:, :n], log_vol, self.mpor_days, "var",
                                 self.level)
