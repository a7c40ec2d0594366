r"""Risk-based margin models: filtered historical simulation (FHS) with GARCH, historical simulation, EWMA.

Every model here revalues the book in full on every scenario through
:func:`~marginlab.models.revaluation.revalue` and takes a risk measure of the
simulated losses: VaR (the upper empirical quantile) or ES (the Acerbi-Tasche
tail mean), floored at 0; the formulas are in each model's class docstring
(:class:`HistoricalVaR`, :class:`HistoricalES`, :class:`FHSGarch`,
:class:`EWMAVaR`), which the report's Methodology section publishes. Scenarios
use data up to t only.
At a one-observation MPOR, historical simulation and FHS take the risk measure
of the window's scenarios exactly (every row once: the window's empirical
distribution, no Monte Carlo noise). Over h > 1 observations FHS bootstraps
h-step paths; EWMA simulates joint normal (or t) moves at every MPOR, h = 1
included; their random draws
come from the run context's generator ``default_rng([seed, d])`` with d the
observation time of t in whole seconds since 1970-01-01 UTC
(:func:`~marginlab.models.context.date_key`; FHS row indices as 16-bit
integers), so models compared in one study with the same seed, lookback and
path count share the same draws, a run is bit-for-bit repeatable, and a market
loaded from a later start gives the same margins on the same dates. A model gives no margin
(NaN) until it has ``min_obs`` observations (returns, and implied-vol changes
for option books); the engine reports those dates as warm-up.

References: Barone-Adesi, Giannopoulos and Vosper (1999), "VaR without
correlations for portfolios of derivative securities", J. Futures Markets 19;
Hull and White (1998); RiskMetrics Technical Document (1996); BCBS (2019)
MAR33 (expected shortfall at 97.5%).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property, partial
from typing import ClassVar

import numpy as np
from marginlab.datasets import MarketData

from .base import Forecast, MarginModel, check_ints, check_range, register
from .context import RunContext, date_key
from .estimates import SCALE, FilterEstimates, long_run_variance
from .instruments import Position
from .revaluation import book_arrays, revalue_at
from .volatility import FilterFit, FilterSpec, simulate_paths

__all__ = ["FHSGarch", "HistoricalVaR", "HistoricalES", "EWMAVaR", "ScenarioSet", "risk_measure",
           "weighted_risk_measure", "weighted_var_es", "loss_forecast", "monte_carlo_se", "row_moves"]


def risk_measure(losses: np.ndarray, measure: str, level: float) -> float:
    """VaR (k-th largest loss, k = ceil(N (1 - level))) or ES (Acerbi-Tasche tail mean) of equally weighted losses.

    The measures of :func:`weighted_risk_measure` with equal weights, from one partition (no sort).
    """
    var, es = _var_es(losses, level)
    return es if measure == "es" else var


def _var_es(losses: np.ndarray, level: float) -> tuple[float, float]:
    """``(VaR, ES)`` of equally weighted losses from the k largest (one partition, unordered) and :func:`_tail_es`.

    Masses in counts: each loss 1, the tail N (1 - level) (k when within 1e-9 of it, as :func:`_risk_k`).
    """
    _, var, es = _tail(losses, level)
    return var, es


def _tail(losses: np.ndarray, level: float) -> tuple[np.ndarray, float, float]:
    """The k largest losses (unordered; one partition), the VaR and the ES of :func:`_var_es`."""
    n = losses.size
    k = _risk_k(n, level)
    top = -np.partition(-losses, k - 1)[:k]
    var, tail = float(top.min()), n * (1.0 - level)
    return top, var, _tail_es(var, float(top.sum()), k, k if abs(tail - k) < 1e-9 else tail)


def _tail_es(var: float, top_sum: float, top_mass: float, tail: float) -> float:
    r"""Acerbi-Tasche ES: the mean of the upper tail of mass τ, :math:`(S - (W - \tau)\,VaR)/\tau`.

    S = ``top_sum``, the weighted sum of the losses from the largest down to VaR's scenario (included), of
    total mass W = ``top_mass`` >= τ = ``tail``: the excess mass W - τ of VaR's scenario is taken off (Acerbi
    and Tasche 2002). The one formula of equal weights (:func:`_var_es`, masses in counts) and of
    :func:`weighted_var_es` (masses as probabilities).
    """
    return float((top_sum - (top_mass - tail) * var) / tail)


def _risk_k(n: int, level: float) -> int:
    return max(int(np.ceil(n * (1.0 - level) - 1e-9)), 1)


def weighted_risk_measure(losses: np.ndarray, weights: np.ndarray, measure: str, level: float) -> float:
    r"""VaR or ES at ``level`` of a discrete loss distribution with probability weights.

    Losses sorted descending, :math:`L_{(1)} \ge L_{(2)} \ge \dots`, with weights
    :math:`w_{(i)}` normalised to sum to 1 and cumulative weights :math:`W_j = \sum_{i\le j} w_{(i)}`:

    * VaR: :math:`L_{(j^*)}`, :math:`j^* = \min\{j: W_j \ge 1 - \alpha\}`, the largest loss whose
      scenarios at or above it carry at least 1 - α of the mass (the upper empirical quantile); with equal
      weights the k-th largest loss, k = ⌈N(1 - α)⌉, as :func:`risk_measure`. When N(1 - α) is an integer
      this is one scenario above the lower quantile (the smallest loss whose exceedance probability is at
      most 1 - α, ``np.quantile(..., method="inverted_cdf")``): for N = 1000 at 99% the 10th largest loss,
      where the 11th already has exceedance probability 1%. A conservative convention;
    * ES: the mean of the upper tail of mass 1 - α,
      :math:`\big(\sum_{i<j^*} w_{(i)}L_{(i)} + (1 - \alpha - W_{j^*-1})L_{(j^*)}\big)/(1-\alpha)`
      (Acerbi and Tasche 2002, "On the coherence of expected shortfall", J. Banking & Finance 26); with
      equal weights this is :func:`risk_measure`'s ES (the mean of the k largest losses when N(1 - α) is an
      integer).

    Parameters
    ----------
    losses, weights : ndarray of shape (n,)
        Scenario losses (quote currency) and their non-negative weights (any positive total).
    """
    var, es = weighted_var_es(losses, weights, level)
    return var if measure == "var" else es


def weighted_var_es(losses: np.ndarray, weights: np.ndarray, level: float) -> tuple[float, float]:
    """``(VaR, ES)`` of :func:`weighted_risk_measure` from one sort."""
    order = np.argsort(-losses, kind="stable")
    ordered = losses[order]
    w = weights[order] / weights.sum()
    cum = np.cumsum(w)
    tail = 1.0 - level
    j = min(int(np.searchsorted(cum, tail - 1e-12, side="left")), ordered.size - 1)
    return float(ordered[j]), _tail_es(float(ordered[j]), float(np.dot(w[:j + 1], ordered[:j + 1])), cum[j], tail)


def _resolve_level(model: MarginModel, default: float) -> None:
    """Set a risk model's ``level`` (confidence, 1 - tail probability) to ``default`` when None, and check it."""
    if model.level is None:
        object.__setattr__(model, "level", default)
    check_range(model.name, "level", model.level, 0.5, 1.0, high_open=True)


def _window(market: MarketData, assets: Sequence[str], i: int, lookback: int, with_vol: bool | Sequence[str]):
    """The last ``lookback`` rows up to i on which every needed series is observed, contiguous back from i.

    A row missing a needed value (before an asset's listing, or before its implied-vol history) ends
    the window, so a window is always one unbroken run of rows ``rows[0] .. i``. ``with_vol``: implied-vol
    log changes of every asset (True), of none (False), or of the listed assets (those the book holds
    options on) only: the other columns of the vol changes are then 0 (no option on them moves with
    their vol; an asset without implied-vol data, e.g. XRP beside BTC options, does not end the window).
    """
    cols = [market.asset_index[a] for a in assets]
    lo = max(1, i - lookback + 1)
    r = market.log_return_array[lo:i + 1][:, cols]
    ok = np.isfinite(r).all(axis=1)
    dv = None
    if with_vol is not False and (with_vol is True or len(with_vol)):
        dv = market.log_vol_change_array[lo:i + 1][:, cols]
        need = slice(None) if with_vol is True or set(with_vol) >= set(assets) else \
            [k for k, a in enumerate(assets) if a in set(with_vol)]
        ok &= np.isfinite(dv[:, need]).all(axis=1)
        if not isinstance(need, slice):
            unused = [k for k in range(len(assets)) if k not in need]
            dv = dv.copy()
            dv[:, unused] = 0.0
    if ok.all():
        return np.arange(lo, i + 1), r, dv
    ok[:np.flatnonzero(~ok)[-1]] = False  # (a boolean mask copies: the arrays keep their alignment)
    return np.arange(lo, i + 1)[ok], r[ok], (None if dv is None else dv[ok])


def _check_min_obs(model) -> None:
    """A window of ``lookback`` rows can never hold ``min_obs`` > lookback observations: the model would give none."""
    if model.min_obs > model.lookback:
        raise ValueError(f"{model.name}: min_obs ({model.min_obs}) must not exceed lookback ({model.lookback})")


def _vol_assets(book) -> list[str]:
    """The book's assets it holds options on (whose implied-vol changes its scenarios need)."""
    return [book.assets[k] for k in book.option_assets]


def _draws(seed: int, key: int, n_window: int, n_paths: int, h: int) -> np.ndarray:
    """Bootstrap row indices, shape (n_paths, h), uniform on [0, n_window), from the generator (seed, key).

    ``key`` is the date's :func:`~marginlab.models.context.date_key`.

    Drawn as 16-bit integers when the window allows (numpy's exact bounded draws; a quarter of
    the generator output of 64-bit ones).
    """
    rng = np.random.default_rng([int(seed), int(key)])
    return rng.integers(0, n_window, size=(n_paths, h), dtype=np.uint16 if n_window <= 65536 else np.int64)


def _book_history(positions: Sequence[Position], market: MarketData, i: int, lookback: int, min_obs: int):
    """The book's arrays and its joint history window at row i, or None before ``min_obs`` rows.

    Returns ``(book, rows, returns, vol_changes)``; ``vol_changes`` is None unless the book holds options.
    """
    book = book_arrays(positions)
    rows, rets, dvol = _window(market, book.assets, i, lookback, _vol_assets(book))
    if rows.size < min_obs:
        return None
    return book, rows, rets, dvol


def row_moves(market: MarketData, assets: Sequence[str], rows: np.ndarray, horizon: int,
              with_vol: bool | Sequence[str], scaling: str = "overlapping"):
    """Historical joint moves of ``assets`` over ``horizon`` observations ending at each of ``rows``.

    ``scaling="overlapping"``: the sums of the log returns (and implied-vol log changes) of rows
    ``r - horizon + 1 .. r``; ``"sqrt_time"``: the moves of row r times sqrt(horizon). ``with_vol``: the
    implied-vol changes of every asset (True), of none (False), or of the listed assets (those the book
    holds options on, as :func:`_window`): the other vol columns are then 0. Returns ``(spot, log_vol)``,
    arrays of shape (n_rows, n_assets) (``log_vol`` None without vol); NaN where a needed value is missing
    (before the data starts).
    """
    cols = [market.asset_index[a] for a in assets]
    rows = np.asarray(rows, dtype=np.int64)
    unused = [] if isinstance(with_vol, bool) else [k for k, a in enumerate(assets) if a not in set(with_vol)]
    with_vol = bool(with_vol) and len(unused) < len(assets)
    sources = [market.log_return_array] + ([market.log_vol_change_array] if with_vol else [])
    out = []
    for n, src in enumerate(sources):
        x = src[:, cols]
        if n == 1 and unused:
            x[:, unused] = 0.0  # (a copy: column selection copies)
        if scaling == "sqrt_time" or horizon == 1:
            moves = x[rows] * np.sqrt(horizon)
        else:
            moves = np.full((rows.size, len(cols)), np.nan)
            ok = rows - horizon + 1 >= 0
            if ok.any():
                lo = int(rows[ok].min()) - horizon + 1
                seg = x[lo:int(rows[ok].max()) + 1]
                kernel = np.ones(horizon)
                sums = np.column_stack([np.convolve(seg[:, k], kernel, mode="valid") for k in range(len(cols))])
                moves[ok] = sums[rows[ok] - horizon + 1 - lo]
        out.append(moves)
    return out[0], (out[1] if with_vol else None)


def _scenario_pnl(positions: Sequence[Position], market: MarketData, i: int, assets: list[str],
                  spot_moves: np.ndarray, log_vol_moves: np.ndarray | None, horizon: int,
                  option_legs: bool = False):
    """Full-revaluation P&L of the book on scenarios (log spot moves, log implied-vol moves).

    ``horizon`` is the MPOR in observations (options are aged by horizon x the panel's step).
    ``option_legs``: also each live option's P&L alone (:func:`revalue_at`, returns ``(pnl, legs)``).
    """
    vol_shocks = None
    if log_vol_moves is not None:
        cols = [market.asset_index[a] for a in assets]
        vol_shocks = market.vol_array[i, cols] * (np.exp(log_vol_moves) - 1.0)
    return revalue_at(book_arrays(positions), market, i, spot_moves, vol_shocks, horizon=horizon,
                      option_legs=option_legs)


def _scenario_losses(positions: Sequence[Position], market: MarketData, i: int, assets: list[str],
                     spot_moves: np.ndarray, log_vol_moves: np.ndarray | None, horizon: int,
                     rows: np.ndarray | None = None) -> ScenarioSet:
    """The book's :class:`ScenarioSet` on scenarios (:func:`_scenario_pnl`); ``rows`` None: not rows' moves (-1).

    For a book of several positions on one asset, ``leg_losses`` holds each live option's losses alone on
    the same scenarios: such a leg has the book's assets and vol assets, hence the book's scenarios
    (see :class:`_ScenarioModel`).
    """
    book = book_arrays(positions)
    if len(positions) > 1 and len(book.assets) == 1 and book.has_options:
        pnl, legs = _scenario_pnl(positions, market, i, assets, spot_moves, log_vol_moves, horizon, option_legs=True)
    else:
        pnl, legs = _scenario_pnl(positions, market, i, assets, spot_moves, log_vol_moves, horizon), {}
    return ScenarioSet(losses=-pnl, rows=np.full(pnl.size, -1, dtype=np.int64) if rows is None else rows,
                       leg_losses={positions[j]: -leg for j, leg in legs.items()})


def loss_forecast(losses: np.ndarray, measure: str, level: float, simulated: bool = False) -> Forecast:
    """The forecast of equally weighted scenario losses: margin = VaR or ES at ``level``, each floored at 0.

    ``simulated``: the losses are i.i.d. Monte Carlo draws (EWMA moves, FHS paths over h > 1 observations), so
    the margin carries its Monte Carlo standard error (:func:`monte_carlo_se`); otherwise ``mc_se`` is NaN.
    """
    var, es = (max(x, 0.0) for x in _var_es(losses, level))  # one partition for both (risk_measure's numbers)
    error = partial(monte_carlo_se, losses, measure, level) if simulated else None  # computed when asked
    return Forecast(margin=es if measure == "es" else var, var=var, es=es, losses=losses, mc_error=error)


#: The fewest tail scenarios (k = ⌈N (1 - level)⌉) a Monte Carlo standard error is stated for (:func:`monte_carlo_se`).
MC_MIN_TAIL = 10


def monte_carlo_se(losses: np.ndarray, measure: str, level: float) -> float:
    r"""Monte Carlo standard error of the VaR or ES at ``level`` estimated from N i.i.d. simulated ``losses``.

    The sampling error of :func:`risk_measure` over the draws, the model itself taken as given (what another
    seed would move). With tail probability :math:`p = 1 - \alpha` and the losses sorted descending,
    :math:`L_{(1)} \ge L_{(2)} \ge \dots`:

    * VaR, the k-th largest loss: the asymptotic standard error of a sample quantile,
      :math:`\sqrt{p(1-p)/N}\,/f(\mathrm{VaR})`, with the density estimated from the order statistics
      around it (Siddiqui 1960; Bloch and Gastwirth 1968),
      :math:`1/\hat f = N\,(L_{(k-m)} - L_{(k+m)})/(2m)`, :math:`m = \lceil\sqrt{N p (1-p)}\rceil` (one
      binomial standard deviation of the count of draws above VaR; clipped to 1..N, the span divided by the
      indices actually used). Equivalently half the spread of the order statistics one standard deviation
      either side of k: the distribution-free confidence interval of a quantile (David and Nagaraja 2003,
      *Order Statistics*, §7.1).
    * ES, the mean of the upper tail of mass p: :math:`\sqrt{(s^2_{tail} + \alpha(\mathrm{ES} -
      \mathrm{VaR})^2)/(N p)}`, :math:`s^2_{tail}` the variance of the k largest losses (Chen 2008,
      "Nonparametric estimation of expected shortfall", J. Financial Econometrics 6(1), Theorem 1; the
      error of VaR itself does not enter at first order).

    Both are asymptotic: checked against the normal closed forms and the spread over seeds at N = 10,000 (within
    4% and 10%) and on FHS paths of BTC (1.01x the spread over 40 seeds); for very heavy tails at moderate N they
    understate the ES error (Student-t with 3 degrees of freedom, N = 1,000: about 0.75x the spread over seeds).
    Estimates before the floor at 0. NaN when fewer than :data:`MC_MIN_TAIL` (10) losses lie in the tail
    (k = ⌈N p⌉ < 10, e.g. 100 paths at 99%): the error of a measure of so few scenarios is not estimable this
    way (an ES of one scenario would get 0).
    """
    n = losses.size
    p = 1.0 - level
    k = _risk_k(n, level)
    if k < MC_MIN_TAIL:
        return float("nan")
    if measure == "es":
        top, var, es = _tail(losses, level)
        return float(np.sqrt((top.var() + level * (es - var) ** 2) / (n * p)))
    m = max(int(np.ceil(np.sqrt(n * p * (1.0 - p)))), 1)
    hi, lo = max(k - m, 1), min(k + m, n)  # ranks from the largest (1-based)
    desc = np.sort(np.partition(-losses, lo - 1)[:lo])  # the lo largest, negated, ascending (one kth: faster)
    return float(np.sqrt(p * (1.0 - p) / n) * n * (desc[lo - 1] - desc[hi - 1]) / (lo - hi))


@dataclass(frozen=True)
class ScenarioSet:
    """A book's scenario losses at one date, each with the market row it was drawn from.

    Attributes
    ----------
    losses : ndarray of shape (n_scenarios,)
        Scenario losses (quote currency; loss = -P&L of the full revaluation).
    rows : ndarray of int64, shape (n_scenarios,)
        The market row each scenario is (the last row of an h-observation historical move), or -1 when a
        scenario is not one row's move (bootstrapped paths, simulated moves).
    """

    losses: np.ndarray
    rows: np.ndarray
    #: scenario losses of some of the book's positions each held alone, on the same scenarios (the option
    #: legs of a one-asset book: :func:`_scenario_losses`); empty when none is known
    leg_losses: dict[Position, np.ndarray] = field(default_factory=dict)

    @cached_property
    def simulated(self) -> bool:
        """Whether every scenario is a simulated draw (row -1), not a row's move: its measures have Monte Carlo error.

        Computed once per set: the models sharing it (VaR and ES, overlays) each ask on every date.
        """
        return bool((self.rows < 0).all())


@dataclass(frozen=True)
class _ScenarioModel(MarginModel):
    """A model whose margin is a risk measure of scenario losses (see :meth:`scenarios`).

    Subclasses implement ``_scenario_set(state, positions, market, t) -> ScenarioSet | None`` (None during
    warm-up); :meth:`scenarios` memoises it in the run context for the current date, so that models with
    the same scenarios (FHS VaR and ES on one filter, a model and the overlays wrapping it) revalue the book
    once per date. ``measure`` and ``level`` do not change the scenarios.

    The scenarios of a book depend on its assets and the assets it holds options on only (their window
    rows, filters and simulated moves), never on the positions: an option leg of a one-asset book has the
    book's scenarios, and its standalone losses (``ScenarioSet.leg_losses``) are taken from the book's
    revaluation, bit for bit what revaluing the leg alone gives.
    """

    #: names the construction of the scenarios (with the parameters other than ``measure`` and ``level``)
    scenario_family: ClassVar[str] = "scenarios"

    @property
    def tail_prob(self) -> float:
        """1 - level (rounded to 12 decimals): 0.01 for a 99% VaR, 0.025 for a 97.5% ES, whose VaR is tested there."""
        return round(1.0 - self.level, 12)

    @property
    def margin_measure(self) -> str:
        """The risk measure the margin is: ``"var"`` or ``"es"``."""
        return self.measure

    @cached_property
    def scenario_key(self) -> Hashable:
        """What identifies the scenarios: the family and every parameter except ``measure`` and ``level``.

        Computed once per model (the parameters are frozen; asked for on every book and date).
        """
        return (self.scenario_family, *((f.name, getattr(self, f.name)) for f in fields(self)
                                        if f.name not in ("measure", "level")))

    def margin(self, state, positions: Sequence[Position], market: MarketData, t) -> float:
        """The margin of :meth:`forecast` (NaN during warm-up)."""
        return self.forecast(state, positions, market, t).margin

    def forecast(self, state, positions: Sequence[Position], market: MarketData, t,
                 book: str | None = None) -> Forecast:
        """Margin, VaR and ES at the model's level and the scenario losses (no margin during warm-up)."""
        scenarios = self.scenarios(state, positions, market, t)
        if scenarios is None:
            return _WARMING_UP
        return loss_forecast(scenarios.losses, self.measure, self.level, simulated=scenarios.simulated)

    def scenarios(self, state, positions: Sequence[Position], market: MarketData, t) -> ScenarioSet | None:
        """The book's scenario losses at ``t`` and their rows (None during warm-up), memoised for the date.

        The memo lives in the run context (``state.context.cache("scenario_sets")``) and holds the current
        market row only: it is cleared when a later row is asked for.
        """
        memo = state.context.row_cache("scenario_sets", market, state.i)
        key = (self.scenario_key, tuple(positions))
        found = memo.get(key, _NOT_YET)
        if found is _NOT_YET:
            found = memo[key] = self._scenario_set(state, positions, market, t)
            for pos, losses in (found.leg_losses.items() if found is not None else ()):
                memo.setdefault((self.scenario_key, (pos,)), ScenarioSet(losses=losses, rows=found.rows))
        return found

    def _scenario_set(self, state, positions: Sequence[Position], market: MarketData, t) -> ScenarioSet | None:
        raise NotImplementedError

    def historical_scenarios(self, state, positions: Sequence[Position], market: MarketData, t,
                             rows: np.ndarray) -> np.ndarray:
        """Losses of the book at ``t`` on the historical h-observation joint moves ending at ``rows``.

        h is the run's MPOR; moves are overlapping sums of log returns (and implied-vol log changes for
        option books) over rows ``r - h + 1 .. r`` (:func:`row_moves`), as they happened (not filtered):
        the "stressed observations" of EMIR RTS Art. 28(1)(b). Returns an array of shape (n_rows,), NaN
        where a move is missing a value. Historical simulation with ``scaling="sqrt_time"`` scales one-row
        moves by sqrt(h) instead, as its own scenarios do.
        """
        book = book_arrays(positions)
        h = state.context.mpor
        spot, log_vol = row_moves(market, book.assets, rows, h, _vol_assets(book),
                                  getattr(self, "scaling", "overlapping"))
        ok = np.isfinite(spot).all(axis=1)
        if log_vol is not None:
            ok &= np.isfinite(log_vol).all(axis=1)
        out = np.full(ok.size, np.nan)
        if ok.any():
            out[ok] = -_scenario_pnl(positions, market, state.i, book.assets, spot[ok],
                                     None if log_vol is None else log_vol[ok], h)
        return out


_WARMING_UP = Forecast(margin=float("nan"))
_NOT_YET = object()  # a memo miss (None is a memoised warm-up)


@dataclass(frozen=True)
class FHSState:
    """State of an FHS model at one date: its market row, the run context and the run's filter estimates."""

    i: int
    context: RunContext
    estimates: FilterEstimates

    def diagnostics(self) -> dict[str, int]:
        """Filter fits of the run so far: total, failed (previous parameters kept), on the boundary, reused."""
        return dict(self.estimates.counts)


@register
@dataclass(frozen=True)
class FHSGarch(_ScenarioModel):
    r"""Filtered historical simulation with a GARCH-family volatility filter.

    For each asset a of the book a volatility filter (``vol``) is fitted by maximum
    likelihood (innovation distribution ``dist``) to the returns of the window — the
    last ``lookback`` observations up to t on which every asset of the book (and the
    implied vol of the assets it holds options on) is observed — as
    :math:`\epsilon_{a,s} = 100\,r_{a,s}` (log returns in percent, zero mean), the
    recursions started from ``arch``'s backcast:

    .. math:: \text{garch:}\quad \sigma^2_{s} = \omega + \alpha\epsilon^2_{s-1} + \beta\sigma^2_{s-1}

    .. math:: \text{gjr:}\quad \sigma^2_{s} = \omega + (\alpha + \gamma 1[\epsilon_{s-1}<0])\epsilon^2_{s-1}
              + \beta\sigma^2_{s-1}

    .. math:: \text{ewma:}\quad \sigma^2_{s} = \lambda\sigma^2_{s-1} + (1-\lambda)\epsilon^2_{s-1}

    .. math:: \text{egarch:}\quad \ln\sigma^2_{s} = \omega + \alpha(|e_{s-1}| - \sqrt{2/\pi})
              + \gamma e_{s-1} + \beta\ln\sigma^2_{s-1},\qquad e_s = \epsilon_s/\sigma_s

    giving the standardised residual **vectors** :math:`z_s = (\epsilon_{a,s}/\sigma_{a,s})_a`
    of the window (joint across assets, keeping their cross-correlation) and the
    one-step variance :math:`\sigma^2_{a,t+1}`. ``dist`` only shapes the likelihood (the
    estimated parameters): the scenarios use the window's empirical residuals, not
    draws from the distribution. At an MPOR of one observation the scenarios are the
    window's rows, each used once (the risk measure of the filtered empirical
    distribution, exactly; ``n_paths`` is not used); over h > 1 observations
    ``n_paths`` paths bootstrap h rows :math:`u_1 \dots u_h` jointly (uniformly, with
    replacement) and each asset's variance is propagated through its own recursion
    (EGARCH: through :math:`\ln\sigma^2`):

    .. math:: R_a = \frac{1}{100}\sum_{j=1}^{h}\epsilon_{a,t+j},\qquad
              \epsilon_{a,t+j} = \sigma_{a,t+j}\,z_{a,u_j},\qquad
              \sigma^2_{a,t+j+1} = f_a(\sigma^2_{a,t+j}, \epsilon_{a,t+j})

    (h = 1: :math:`R_a = \sigma_{a,t+1} z_{a,s}/100` for every window row s). For
    option books the implied-vol log changes of the same sampled rows, as they
    happened (not filtered), are summed over the path (h = 1: the row's change) and applied to
    today's vol, jointly with the returns. The book is revalued in full on each
    scenario (spot :math:`S_a e^{R_a}`, options aged h observations), the loss
    :math:`L = -\Delta P`, and with the N losses sorted descending,
    :math:`L_{(1)} \ge L_{(2)} \ge \dots`, :math:`k = \lceil N(1-\alpha)\rceil`:

    .. math:: M_t = \max(\mathrm{VaR}_\alpha, 0)\ (\text{measure}=\text{"var"})\quad\text{or}\quad
              \max(\mathrm{ES}_\alpha, 0)\ (\text{"es"}),\qquad \mathrm{VaR}_\alpha = L_{(k)},\qquad
              \mathrm{ES}_\alpha = \frac{\sum_{i<k} L_{(i)} + (N(1-\alpha) - (k-1))L_{(k)}}{N(1-\alpha)}

    VaR is the upper empirical quantile; ES the mean of the upper tail of mass 1 - α
    (Acerbi and Tasche 2002; the mean of the k largest losses when N(1 - α) is an
    integer, so ES >= VaR).

    ``vol_floor="long_run"`` floors each asset's one-step variance (and so the start
    of its paths),
    :math:`\sigma^2_{a,t+1} \leftarrow \max(\sigma^2_{a,t+1}, \overline{\epsilon^2_a})`,
    at the mean squared return (zero mean, the filter's convention: not the
    demeaned sample variance) of its finite returns in the loaded panel up to t (at most ten years
    of 365 days, in observations of the panel: 87,600 on hourly data): an
    approximation of EMIR RTS 153/2013 Art. 28(1)(c) (margins "not lower than
    those that would be calculated using volatility estimated over a 10 year
    historical lookback period") applied to the filter's variance only; the ``lookback_floor``
    overlay (:mod:`marginlab.models.overlays`) floors the margin itself at the
    same model's margin with a ten-year lookback.

    ``lam`` is the decay of ``vol="ewma"`` (0.94, RiskMetrics' daily value; e.g. 0.94^(1/24) on
    hourly panels); arch's backcast keeps its own 0.94 weights over the first 75 observations.

    ``refit_every=k`` re-estimates parameters on the dates whose observation time is a
    whole multiple of k panel steps since 1970-01-01 UTC (days on daily panels,
    hours on hourly ones), filtering the new window with the previous parameters in
    between; a window with no previous fit (the first of a chain: the first row of
    each calendar year on daily panels, of each month on intraday ones, or a window
    whose predecessor would have fewer than ``min_obs`` rows) is always fitted. A
    failed optimisation keeps the previous parameters and is counted in the
    diagnostics, as are fits on the stationarity boundary.

    Parameters
    ----------
    measure : {"var", "es"}
        The risk measure the margin is: VaR (default) or expected shortfall.
    level : float or None
        Confidence level α in [0.5, 1) (the tail probability is 1 - α); None (default):
        0.99 for VaR, 0.975 for ES.
    vol : {"garch", "gjr", "ewma", "egarch"}
        The volatility filter: GARCH(1,1) (default), GJR-GARCH(1,1,1), EWMA with fixed
        decay ``lam`` (no process parameter estimated) or EGARCH(1,1,1) (as ``arch``'s
        ``EGARCH(p=1, o=1, q=1)``).
    dist : {"normal", "t", "skewt"}
        Innovation distribution of the likelihood: normal (default), standardised
        Student-t (ν estimated) or Hansen's skewed Student-t (η and λ estimated).
    lookback : int
        Longest window, in observations of the panel (days on daily panels, hours on
        hourly ones), >= 20; default 1000. The window is the last ``lookback`` rows up to
        t, cut at the first row (going back) missing a needed return or implied-vol change.
    n_paths : int
        Number of bootstrapped paths at an MPOR of h > 1 observations (>= 100; default
        10,000); unused at h = 1. The margin then carries a Monte Carlo standard error.
    refit_every : int
        Re-estimate the parameters every k panel steps (see above; >= 1, default 1: on
        every date).
    vol_floor : {None, "long_run"}
        None (default): no floor; ``"long_run"``: floor the one-step variance at the
        ten-year mean squared return (see above).
    min_obs : int
        Fewest window rows for a margin (>= 20, at most ``lookback``; default 250):
        before, no margin (NaN, reported as warm-up).
    lam : float
        EWMA decay λ in (0, 1), used only with ``vol="ewma"`` (with any other filter it
        must keep its default 0.94).

    References
    ----------
    * Barone-Adesi, G., Giannopoulos, K. and Vosper, L. (1999), "VaR without correlations
      for portfolios of derivative securities", Journal of Futures Markets 19 (filtered
      historical simulation).
    * Pritsker, M. (2006), "The hidden dangers of historical simulation", Journal of
      Banking & Finance 30.
    * Bollerslev, T. (1986), "Generalized autoregressive conditional heteroskedasticity",
      Journal of Econometrics 31 (GARCH).
    * Glosten, L., Jagannathan, R. and Runkle, D. (1993), "On the relation between the
      expected value and the volatility of the nominal excess return on stocks", Journal
      of Finance 48 (GJR-GARCH).
    * Nelson, D. (1991), "Conditional heteroskedasticity in asset returns: a new
      approach", Econometrica 59 (EGARCH).
    * J.P. Morgan/Reuters (1996), RiskMetrics — Technical Document, 4th edition (EWMA).
    * Bollerslev, T. (1987), "A conditionally heteroskedastic time series model for
      speculative prices and rates of return", Review of Economics and Statistics 69
      (standardised Student-t); Hansen, B. (1994), "Autoregressive conditional density
      estimation", International Economic Review 35 (skewed Student-t).
    * Acerbi, C. and Tasche, D. (2002), "On the coherence of expected shortfall", Journal
      of Banking & Finance 26 (the ES estimator).
    * EMIR RTS: Commission Delegated Regulation (EU) No 153/2013, Art. 28(1)(c) (the
      ten-year volatility floor that ``vol_floor="long_run"`` approximates).
    """

    name: ClassVar[str] = "fhs_garch"
    relative_cost: ClassVar[float] = 12.0  # MarginModel.relative_cost (default study: 12.5 x static at a 1-day MPOR)
    scenario_family: ClassVar[str] = "fhs_garch"
    measure: str = "var"
    level: float | None = None
    vol: str = "garch"
    dist: str = "normal"
    lookback: int = 1000
    n_paths: int = 10_000
    refit_every: int = 1
    vol_floor: str | None = None
    min_obs: int = 250
    lam: float = 0.94

    def __post_init__(self) -> None:
        if self.measure not in ("var", "es"):
            raise ValueError(f"{self.name}: measure must be 'var' or 'es', got {self.measure!r}")
        _resolve_level(self, 0.99 if self.measure == "var" else 0.975)
        if not 0.0 < self.lam < 1.0:
            raise ValueError(f"{self.name}: lam must lie in (0, 1), got {self.lam!r}")
        if self.vol != "ewma" and self.lam != 0.94:
            raise ValueError(f"{self.name}: lam is EWMA's decay, used only with vol='ewma' (got vol={self.vol!r})")
        FilterSpec.from_names(self.vol, self.dist, self.lam)
        check_ints(self, {"lookback": 20, "n_paths": 100, "refit_every": 1, "min_obs": 20})
        _check_min_obs(self)
        if self.vol_floor not in (None, "long_run"):
            raise ValueError(f"{self.name}: vol_floor must be None or 'long_run', got {self.vol_floor!r}")

    @property
    def estimation_key(self) -> tuple:
        """Models fitting the same filter on the same windows share their fits (FHS VaR and ES)."""
        return ("filter", self.spec, self.lookback, self.min_obs, self.refit_every)

    @property
    def spec(self) -> FilterSpec:
        """The volatility filter specification."""
        return FilterSpec.from_names(self.vol, self.dist, self.lam)

    def fit(self, market: MarketData, t, warm_start=None, context: RunContext | None = None) -> FHSState:
        """The state at ``t``: the run's filter estimates of this specification (fitted when a book asks)."""
        i = market.loc_of(t)
        context = (context or RunContext()).for_market(market)
        estimates = context.shared("filter_estimates", self.estimation_key, lambda: FilterEstimates(
            self.spec, self.lookback, self.min_obs, self.refit_every,
            on_fit=partial(context.record, "estimates"), key=repr(self.estimation_key)))
        return FHSState(i=i, context=context, estimates=estimates)

    def _scenario_set(self, state: FHSState, positions: Sequence[Position], market: MarketData,
                      t) -> ScenarioSet | None:
        """FHS scenario losses of the book (None before ``min_obs`` observations)."""
        history = _book_history(positions, market, state.i, self.lookback, self.min_obs)
        if history is None:
            return None
        book, rows, rets, dvol = history
        fits = [state.estimates.fit(market, a, int(rows[0]), state.i) for a in book.assets]
        if self.vol_floor == "long_run":
            for k, f in enumerate(fits):
                floor = long_run_variance(market, book.assets[k], state.i)[0]
                if f.sigma2_next < floor:
                    fits[k] = FilterFit(spec=f.spec, params=f.params, loglik=f.loglik, sigma2=f.sigma2,
                                        std_resids=f.std_resids, sigma2_next=floor, backcast=f.backcast,
                                        status=f.status)
        z = fits[0].std_resids[:, None] if len(fits) == 1 else np.column_stack([f.std_resids for f in fits])
        h = state.context.mpor
        if h == 1:
            # a one-step scenario is one window row scaled by sigma_{t+1}: the window's empirical distribution
            # is used exactly (every row once), with no Monte Carlo noise
            spot_rows = np.sqrt(np.array([f.sigma2_next for f in fits])) * z / SCALE
            return _scenario_losses(positions, market, state.i, book.assets, spot_rows, dvol, 1, rows)
        draws = _draws(state.context.seed, date_key(market, state.i), rows.size, self.n_paths, h)
        spot = simulate_paths(fits, z, draws) / SCALE
        log_vol = None if dvol is None else dvol[draws].sum(axis=1)
        return _scenario_losses(positions, market, state.i, book.assets, spot, log_vol, h)


@dataclass(frozen=True)
class _Historical(_ScenarioModel):
    """Plain historical simulation on the lookback window (shared by historical_var / historical_es)."""

    measure: ClassVar[str] = "var"
    scenario_family: ClassVar[str] = "historical"
    relative_cost: ClassVar[float] = 6.0  # MarginModel.relative_cost (default study: 5.7 x static)
    level: float | None = None
    lookback: int = 1000
    scaling: str = "overlapping"
    min_obs: int = 250

    def __post_init__(self) -> None:
        _resolve_level(self, 0.99 if self.measure == "var" else 0.975)
        check_ints(self, {"lookback": 20, "min_obs": 20})
        _check_min_obs(self)
        if self.scaling not in ("overlapping", "sqrt_time"):
            raise ValueError(f"{self.name}: scaling must be 'overlapping' or 'sqrt_time', got {self.scaling!r}")

    @property
    def estimation_key(self) -> tuple:
        """Historical VaR and ES on the same window (and overlays of them) run together and share scenarios."""
        return ("scenarios", self.scenario_key)

    def _scenario_set(self, state, positions: Sequence[Position], market: MarketData, t) -> ScenarioSet | None:
        """Historical scenario losses of the book (None before ``min_obs`` observations)."""
        i, h = state.i, state.context.mpor
        history = _book_history(positions, market, i, self.lookback, self.min_obs)
        if history is None:
            return None
        book, rows, _, _ = history
        # overlapping h-observation moves inside the window: the move ending at rows[k] uses rows[k-h+1 .. k]
        ends = rows if (self.scaling == "sqrt_time" or h == 1) else rows[h - 1:]
        spot, vol = row_moves(market, book.assets, ends, h, _vol_assets(book), self.scaling)
        return _scenario_losses(positions, market, i, book.assets, spot, vol, h, ends)


@register
@dataclass(frozen=True)
class HistoricalVaR(_Historical):
    r"""Historical-simulation VaR: the book revalued on each of the last ``lookback`` joint moves.

    The window is the last ``lookback`` observations up to t on which every asset
    of the book (and the implied vol of the assets it holds options on) is
    observed. With x_s the joint move of window row s (log returns, and implied-vol
    log changes for option books) and h the MPOR in observations, the h-observation
    scenarios are

    .. math:: \Delta x_s = \sum_{j=0}^{h-1} x_{s-j}\ \ (\text{scaling}=\text{"overlapping"}),
              \qquad \Delta x_s = \sqrt{h}\,x_s\ \ (\text{"sqrt\_time"})

    overlapping sums of the window's rows (the N = n - h + 1 moves ending at its rows
    h .. n; ``"overlapping"``, default), or each of the n rows scaled by
    :math:`\sqrt h` (``"sqrt_time"``); at h = 1 both are the n rows.

    ``"sqrt_time"`` is an approximation that ignores volatility clustering and
    fat-tail aggregation.

    The book is revalued in full on each scenario (spot :math:`S_a e^{\Delta r_{a,s}}`, implied
    vol :math:`\sigma_a e^{\Delta v_{a,s}}`, options aged h observations), each
    scenario weighted equally, the loss :math:`L_s = -\Delta P_s`; with the N losses
    sorted descending, :math:`L_{(1)} \ge L_{(2)} \ge \dots`, and
    :math:`k = \lceil N(1-\alpha)\rceil`:

    .. math:: M_t = \max(\mathrm{VaR}_\alpha, 0),\qquad \mathrm{VaR}_\alpha = L_{(k)}

    the upper empirical quantile (when N(1 - α) is an integer, one scenario above
    ``np.quantile(losses, α, method="inverted_cdf")``: the 10th, not the 11th, largest
    of 1,000 at 99%, a conservative convention). Level 0.99 by default. Stressed
    observations (EMIR RTS 153/2013 Art. 28(1)(b)) are added by the
    ``stressed_weight`` overlay (:mod:`marginlab.models.overlays`), which gives
    them at least 25% of the probability mass.

    Parameters
    ----------
    level : float or None
        Confidence level α in [0.5, 1) (the tail probability is 1 - α); None (default): 0.99.
    lookback : int
        Longest window, in observations of the panel (days on daily panels, hours on
        hourly ones), >= 20; default 1000. The window is cut at the first row (going back)
        missing a needed return or implied-vol change.
    scaling : {"overlapping", "sqrt_time"}
        How h-observation moves are built from the window: overlapping sums of h rows
        (default) or one row times sqrt(h) (see above).
    min_obs : int
        Fewest window rows for a margin (>= 20, at most ``lookback``; default 250):
        before, no margin (NaN, reported as warm-up).

    References
    ----------
    * EMIR RTS: Commission Delegated Regulation (EU) No 153/2013, Art. 24 (initial margin at
      a confidence of at least 99% for financial instruments other than OTC derivatives) and
      Art. 25 (historical volatility from data covering at least the latest 12 months).
    * BCBS (2019), Minimum capital requirements for market risk, MAR33 (internal models).
    """

    name: ClassVar[str] = "historical_var"
    measure: ClassVar[str] = "var"


@register
@dataclass(frozen=True)
class HistoricalES(_Historical):
    r"""Historical-simulation expected shortfall (level 0.975 by default) on the last ``lookback`` joint moves.

    The window is the last ``lookback`` observations up to t on which every asset
    of the book (and the implied vol of the assets it holds options on) is
    observed. With x_s the joint move of window row s (log returns, and implied-vol
    log changes for option books) and h the MPOR in observations, the h-observation
    scenarios are

    .. math:: \Delta x_s = \sum_{j=0}^{h-1} x_{s-j}\ \ (\text{scaling}=\text{"overlapping"}),
              \qquad \Delta x_s = \sqrt{h}\,x_s\ \ (\text{"sqrt\_time"})

    overlapping sums of the window's rows (the N = n - h + 1 moves ending at its rows
    h .. n; ``"overlapping"``, default), or each of the n rows scaled by
    :math:`\sqrt h` (``"sqrt_time"``); at h = 1 both are the n rows.

    ``"sqrt_time"`` is an approximation that ignores volatility clustering and
    fat-tail aggregation.

    The book is revalued in full on each scenario (spot :math:`S_a e^{\Delta r_{a,s}}`, implied
    vol :math:`\sigma_a e^{\Delta v_{a,s}}`, options aged h observations), each
    scenario weighted equally, the loss :math:`L_s = -\Delta P_s`; with the N losses
    sorted descending, :math:`L_{(1)} \ge L_{(2)} \ge \dots`, and
    :math:`k = \lceil N(1-\alpha)\rceil`:

    .. math:: M_t = \max(\mathrm{ES}_\alpha, 0),\qquad
              \mathrm{ES}_\alpha = \frac{\sum_{i<k} L_{(i)} + (N(1-\alpha) - (k-1))L_{(k)}}{N(1-\alpha)}

    the mean of the upper tail of mass 1 - α (Acerbi and Tasche 2002): the mean of the
    k largest losses when N(1 - α) is an integer, so ES >= VaR on every date. Level
    0.975 by default (BCBS MAR33's expected shortfall). Stressed observations (EMIR
    RTS 153/2013 Art. 28(1)(b)) are added by the ``stressed_weight`` overlay.

    Parameters
    ----------
    level : float or None
        Confidence level α in [0.5, 1) (the tail probability is 1 - α); None (default): 0.975.
    lookback : int
        Longest window, in observations of the panel (days on daily panels, hours on
        hourly ones), >= 20; default 1000. The window is cut at the first row (going back)
        missing a needed return or implied-vol change.
    scaling : {"overlapping", "sqrt_time"}
        How h-observation moves are built from the window: overlapping sums of h rows
        (default) or one row times sqrt(h) (see above).
    min_obs : int
        Fewest window rows for a margin (>= 20, at most ``lookback``; default 250):
        before, no margin (NaN, reported as warm-up).

    References
    ----------
    * Acerbi, C. and Tasche, D. (2002), "On the coherence of expected shortfall", Journal
      of Banking & Finance 26.
    * BCBS (2019), Minimum capital requirements for market risk, MAR33 (expected shortfall
      at 97.5%).
    """

    name: ClassVar[str] = "historical_es"
    measure: ClassVar[str] = "es"


@register
@dataclass(frozen=True)
class EWMAVaR(_ScenarioModel):
    r"""EWMA (RiskMetrics) VaR by full revaluation under simulated joint moves.

    The factors x are the book's log returns per observation (and the implied-vol
    log changes of the assets it holds options on), over the window: the last n <=
    ``lookback`` observations up to t on which all of them are observed, oldest
    first, :math:`x_1 \dots x_n`. The covariance is seeded with the population
    covariance (demeaned, divided by 30) of the first 30 window rows, then updated
    by the uncentred EWMA recursion over the remaining rows, the last giving the
    forecast for the next observation:

    .. math:: \Sigma_{(30)} = \frac{1}{30}\sum_{s=1}^{30}(x_s - \bar x)(x_s - \bar x)',\qquad
              \bar x = \frac{1}{30}\sum_{s=1}^{30}x_s

    .. math:: \Sigma_{(s)} = \lambda\Sigma_{(s-1)} + (1-\lambda)\,x_s x_s'\quad (s = 31 \dots n),
              \qquad \Sigma_{t+1} = \Sigma_{(n)}

    Moves over the MPOR of h observations are drawn ``n_paths`` times as sums of h
    independent one-observation draws with Σ held constant (the RiskMetrics/IGARCH
    forecast, under which the h-observation variance is exactly :math:`h\Sigma_{t+1}`):

    .. math:: \Delta X = \sum_{j=1}^{h} C z_j,\qquad CC' = \Sigma_{t+1} + 10^{-14} I

    with :math:`z_j` standard normal (``dist="normal"``) or multivariate Student-t scaled
    to unit variance (``dist="t"``: :math:`z = g\sqrt{(\nu-2)/w}`, g standard normal,
    :math:`w \sim \chi^2_\nu` shared by the factors of a draw, ``nu`` = ν). The book is
    revalued in full on each draw (spot :math:`S_a e^{\Delta r_a}`, implied vol
    :math:`\sigma_a e^{\Delta v_a}`, options aged h observations), the loss
    :math:`L = -\Delta P`; with the N = ``n_paths`` losses sorted descending,
    :math:`L_{(1)} \ge L_{(2)} \ge \dots`:

    .. math:: M_t = \max(L_{(k)}, 0),\qquad k = \lceil N(1-\alpha)\rceil

    the upper empirical quantile of the simulated losses (VaR at level α, 0.99 by
    default), with its Monte Carlo standard error. "Days" in RiskMetrics are
    observations here: on hourly panels Σ is an hourly covariance, λ a decay per
    hour and h counts hours. The lookback only sets where the recursion starts
    (the seed's weight is :math:`\lambda^{n-30}`).

    Parameters
    ----------
    lam : float
        Decay λ in (0, 1) per observation; default 0.94 (RiskMetrics' daily value).
    dist : {"normal", "t"}
        Distribution of the draws: standard normal (default) or multivariate Student-t
        with ``nu`` degrees of freedom, scaled to unit variance.
    nu : float
        Degrees of freedom ν of ``dist="t"`` (> 2; default 5); unused with the normal.
    level : float
        Confidence level α of the VaR, in [0.5, 1) (the tail probability is 1 - α);
        default 0.99.
    lookback : int
        Longest window, in observations of the panel (days on daily panels, hours on
        hourly ones), >= 40; default 1000. The window is cut at the first row (going back)
        missing a needed return or implied-vol change.
    n_paths : int
        Number of simulated moves N (>= 100; default 10,000).
    min_obs : int
        Fewest window rows for a margin (>= 40, at most ``lookback``; default 250):
        before, no margin (NaN, reported as warm-up).

    References
    ----------
    * J.P. Morgan/Reuters (1996), RiskMetrics — Technical Document, 4th edition (the EWMA
      covariance, λ = 0.94 for daily data).
    """

    name: ClassVar[str] = "ewma_var"
    measure: ClassVar[str] = "var"
    scenario_family: ClassVar[str] = "ewma_var"
    lam: float = 0.94
    dist: str = "normal"
    nu: float = 5.0
    level: float = 0.99
    lookback: int = 1000
    n_paths: int = 10_000
    min_obs: int = 250

    def __post_init__(self) -> None:
        check_range(self.name, "lam", self.lam, 0.0, 1.0, low_open=True, high_open=True)
        if self.dist not in ("normal", "t"):
            raise ValueError(f"{self.name}: dist must be 'normal' or 't', got {self.dist!r}")
        check_range(self.name, "nu", self.nu, 2.0, None, low_open=True)
        check_range(self.name, "level", self.level, 0.5, 1.0, high_open=True)
        check_ints(self, {"lookback": 40, "n_paths": 100, "min_obs": 40})
        _check_min_obs(self)

    @property
    def relative_cost(self) -> float:
        """:attr:`MarginModel.relative_cost`: 2.4 per 1,000 simulated paths (default study: 23.7 x static at 10,000)."""
        return 2.4 * self.n_paths / 1000

    @property
    def estimation_key(self) -> tuple:
        """An EWMA model and the overlays wrapping it run together and share scenarios."""
        return ("scenarios", self.scenario_key)

    def covariance(self, x: np.ndarray) -> np.ndarray:
        """EWMA covariance forecast for the next day from the rows of ``x`` (oldest first)."""
        cov0 = np.cov(x[:30].T, ddof=0).reshape(x.shape[1], x.shape[1])
        rest = x[30:]
        m = rest.shape[0]
        # unrolled recursion: lam^m cov0 + (1 - lam) sum_j lam^(m-1-j) r_j r_j'
        w = (1 - self.lam) * self.lam ** np.arange(m - 1, -1, -1)
        return self.lam**m * cov0 + (rest * w[:, None]).T @ rest

    def _draws(self, rng: np.random.Generator, h: int, n_factors: int) -> np.ndarray:
        """Unit-variance draws z of shape (h, n_paths, n_factors): standard normal, or Student-t scaled (read-only)."""
        z = rng.standard_normal((h, self.n_paths, n_factors))
        if self.dist == "t":
            w = rng.chisquare(self.nu, size=(h, self.n_paths, 1))
            z = z * np.sqrt((self.nu - 2.0) / w)
        z.setflags(write=False)
        return z

    def _moves(self, rets: np.ndarray, dvol: np.ndarray | None, z: np.ndarray) -> np.ndarray:
        """Simulated h-day moves, shape (n_paths, n_factors): returns, then implied-vol log changes.

        ``z`` are the draws of :meth:`_draws` for the factors (returns, then vol changes).
        """
        x = rets if dvol is None else np.hstack([rets, dvol])
        cov = self.covariance(x)
        chol = np.linalg.cholesky(cov + 1e-14 * np.eye(cov.shape[0]))
        moves = (z @ chol.T).sum(axis=0)
        moves.setflags(write=False)
        return moves

    def _scenario_set(self, state, positions: Sequence[Position], market: MarketData, t) -> ScenarioSet | None:
        """EWMA scenario losses of the book (None before ``min_obs`` observations)."""
        i, h = state.i, state.context.mpor
        book = book_arrays(positions)
        vol_assets = _vol_assets(book)
        # the history window and the simulated moves depend on the date, the book's assets and the assets it holds
        # options on only: books sharing them share both (computed once per date; the store keeps the current
        # row only), each entry (rows in the window, moves or None while no model asking had min_obs rows)
        store = state.context.row_cache("ewma_moves", market, i)
        key = (self.lam, self.dist, self.nu, self.lookback, self.n_paths, h, tuple(book.assets), tuple(vol_assets))
        n_rows, moves = store.get(key, (None, None))
        if n_rows is None or (moves is None and n_rows >= self.min_obs):
            rows, rets, dvol = _window(market, book.assets, i, self.lookback, vol_assets)
            n_rows, moves = rows.size, None
            if n_rows >= self.min_obs:
                # the draws come from a fresh generator (seed, date key) whatever the key: keys with as many factors
                # draw the same numbers, so they are drawn once per date and shape (only the Cholesky factor
                # differs)
                n_factors = rets.shape[1] + (0 if dvol is None else dvol.shape[1])
                draws = (self.dist, self.nu, self.n_paths, h, n_factors)
                z = store.get(draws)
                if z is None:
                    z = store[draws] = self._draws(state.context.rng(date_key(market, i)), h, n_factors)
                moves = self._moves(rets, dvol, z)
            store[key] = n_rows, moves
        if n_rows < self.min_obs:
            return None
        n = len(book.assets)
        log_vol = moves[:, n:] if vol_assets else None
        return _scenario_losses(positions, market, i, book.assets, moves[:, :n], log_vol, h)
