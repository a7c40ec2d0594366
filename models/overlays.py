r"""Overlays: anti-procyclicality (APC) and liquidity tools that wrap any margin model.

An overlay turns a model into another model. ``make_overlay("apc_buffer",
buffer=0.25)(model)`` returns an :class:`OverlaidModel`, itself a
:class:`~marginlab.models.MarginModel` wrapping the inner model and a tuple of
overlays, so the engine, the no-look-ahead test, coverage and the reports treat
it like any model. Overlays compose in order: ``(lookback_floor, apc_buffer)``
applied to ``fhs`` is ``apc_buffer(lookback_floor(fhs))`` (the first overlay is
innermost). :data:`OVERLAYS` maps the registered names to their classes;
:func:`make_overlay` builds one (unknown names or parameters raise
``ValueError`` listing the valid ones); parameters are type-checked from their
annotations like model parameters.

==================  ===========================================================  ==============================
overlay             what it does                                                 source
==================  ===========================================================  ==============================
``stressed_weight``  the inner scenario model's VaR/ES taken on its scenarios     EMIR RTS 153/2013 Art. 28(1)(b)
                    plus the de-duplicated stressed observations, which carry
                    at least ``weight`` (25%) of the probability mass
``lookback_floor``  margin floored at the same model's margin with a ten-year    Art. 28(1)(c)
                    lookback
``apc_buffer``      a buffer of ``buffer`` (>= 25%) on the margin, drawn down     Art. 28(1)(a)
                    when margins rise and rebuilt when they fall
``liquidity_addon``  add-on growing with the position's size relative to the     Art. 26 (liquidation period);
                    average daily traded volume (days to liquidate beyond the    CME SPAN 2 concentration
                    MPOR scale the margin by the square root of time)           charge, Eurex Prisma liquidity
                                                                                 add-on
==================  ===========================================================  ==============================

Kinds. ``stressed_weight`` changes the inner model's forecast distribution (its
VaR, ES and scenario weights are the overlaid model's); it must come first and
applies to scenario models (historical simulation, FHS, EWMA). The other three
post-process the margin: the overlaid model then forecasts a margin only (its
``var``/``es`` are NaN and coverage tests the margin itself at the inner model's
tail probability, so a buffer shows up as "too few breaches").

Memory and look-ahead. ``apc_buffer`` is path-dependent, as a CCP's margin is:
its margin at t depends on the margin it called for the same book on the
previous date. That memory lives in the run context
(``context.cache("apc_buffer")``), keyed by the overlaid model, the overlay's
position and the ``book`` name the engine passes to ``forecast`` — never in a
module global — and holds only what was computed at earlier rows. A fresh
context (the first margin date of a run) starts with the full buffer. The
no-look-ahead test therefore replays the dates before t in one context on the
full market and on the market rebuilt from the inputs known at t, and compares
the margins (bit for bit); recomputing the book's past margins inside one call
instead would cost a model evaluation per past date. Without a ``book`` name
(a direct call) the buffer has no memory and is applied in full. The other
overlays read data up to t only and keep no memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property, partial
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.conventions import date_format, utc

from .base import Forecast, HasDiagnostics, MarginModel, add_to_registry, build_registered, check_ints, check_range
from .context import RunContext
from .instruments import Position
from .params import install_field_validation
from .revaluation import book_arrays, revalue_at
from .shocks import lookback_rows
from .simulation import _ScenarioModel, _vol_assets, _window, row_moves, weighted_var_es

__all__ = ["OVERLAYS", "Overlay", "OverlaidModel", "OverlaidState", "OverlayCall", "make_overlay",
           "overlay_parameters", "register_overlay", "StressedWeight", "LookbackFloor", "APCBuffer",
           "LiquidityAddOn", "gross_notional"]

OVERLAYS: dict[str, type[Overlay]] = {}

_DAY = pd.Timedelta(days=1)


def register_overlay(cls: type[Overlay]) -> type[Overlay]:
    """Class decorator: add an overlay to :data:`OVERLAYS` under ``cls.name``."""
    return add_to_registry(OVERLAYS, cls, "overlay")


def overlay_parameters(name: str) -> list[str]:
    """Parameter names of a registered overlay."""
    return [f.name for f in fields(OVERLAYS[name])]


def make_overlay(name: str, **params: Any) -> Overlay:
    """Build a registered overlay by name; unknown names or parameters raise ValueError listing the valid ones."""
    return build_registered(OVERLAYS, name, params, "overlay", "overlay")


def gross_notional(positions: Sequence[Position], market: MarketData, i: int) -> float:
    r"""Gross notional of a book at row ``i``: :math:`\sum |q| S` (quote currency), as the engine's rows.

    Over the positions held at the row's observation time: options and futures expired by then are left out.
    """
    book = book_arrays(positions)
    if not len(book.quantity):
        return 0.0
    spots = market.price_array[i, [market.asset_index[a] for a in book.assets]]
    held = book.held_at(market.observation_ns[i])
    return float(np.abs(book.quantity[held]) @ spots[book.asset_idx[held]])


@dataclass(frozen=True)
class Overlay:
    """Base class of overlays: a frozen dataclass of parameters (see the module docstring).

    ``kind`` is ``"distribution"`` for an overlay that replaces the inner model's
    forecast distribution (:meth:`distribution`) and ``"margin"`` for one that
    post-processes the margin (:meth:`adjust`).
    """

    name: ClassVar[str] = "overlay"
    kind: ClassVar[str] = "margin"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        install_field_validation(cls)  # parameters type-checked from their annotations, before __post_init__

    def __call__(self, model: MarginModel) -> OverlaidModel:
        """``model`` with this overlay applied on top (an :class:`OverlaidModel`)."""
        if isinstance(model, OverlaidModel):
            return OverlaidModel(model.inner, (*model.overlays, self))
        return OverlaidModel(model, (self,))

    def check_inner(self, model: MarginModel) -> None:
        """Raise ValueError when the overlay cannot wrap ``model`` (default: any model)."""

    def fit(self, inner: MarginModel, market: MarketData, t: pd.Timestamp, warm_start: Any,
            context: RunContext) -> Any:
        """The overlay's own state at ``t`` (default: none)."""
        return None

    def adjust(self, margin: float, call: OverlayCall) -> float:
        """The margin after the overlay (``"margin"`` overlays)."""
        raise NotImplementedError

    def distribution(self, model: _ScenarioModel, state: Any, positions: Sequence[Position], market: MarketData,
                     t: pd.Timestamp, book: str | None = None) -> Forecast:
        """The forecast replacing ``model``'s (``"distribution"`` overlays); ``book`` names the portfolio."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: the registered name and the parameters."""
        params = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({params})"

    def parameters(self) -> dict[str, Any]:
        """The parameters as a dict (name -> value)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class OverlaidState:
    """State of an overlaid model at one date: the inner model's state and each overlay's."""

    i: int
    context: RunContext
    inner: Any
    overlays: tuple[Any, ...]

    def diagnostics(self) -> dict[str, int]:
        """The inner model's diagnostics."""
        return self.inner.diagnostics() if isinstance(self.inner, HasDiagnostics) else {}


@dataclass(frozen=True)
class OverlayCall:
    """What an overlay sees when it adjusts a margin: the overlaid model, its state and the book at ``t``."""

    model: OverlaidModel
    index: int
    state: OverlaidState
    positions: Sequence[Position]
    market: MarketData
    t: pd.Timestamp
    book: str | None

    @property
    def i(self) -> int:
        """The market row of ``t``."""
        return self.state.i

    @property
    def context(self) -> RunContext:
        """The run context."""
        return self.state.context

    @property
    def overlay_state(self) -> Any:
        """The overlay's own state (from :meth:`Overlay.fit`)."""
        return self.state.overlays[self.index]

    def base_margin(self, model: MarginModel, state: Any) -> float:
        """The margin of ``model`` (an inner model or its variant) under the distribution overlay, if any."""
        return self.model.base_forecast(model, state, self.positions, self.market, self.t, self.book).margin


@dataclass(frozen=True)
class OverlaidModel(MarginModel):
    """A margin model wrapped by overlays (see the module docstring); itself a :class:`MarginModel`.

    Parameters
    ----------
    inner : MarginModel
        The model whose margin the overlays act on (not itself overlaid: wrapping an overlaid model appends
        the overlays to its tuple).
    overlays : tuple of Overlay
        Applied in order, the first innermost; a ``"distribution"`` overlay (``stressed_weight``) may only
        come first.
    """

    inner: MarginModel
    overlays: tuple[Overlay, ...]

    def __post_init__(self) -> None:
        if isinstance(self.inner, OverlaidModel):
            raise ValueError("OverlaidModel: inner is already overlaid; apply the overlay to it instead "
                             "(overlay(model) appends to its overlays)")
        if not self.overlays:
            raise ValueError("OverlaidModel: give at least one overlay")
        for k, o in enumerate(self.overlays):
            if o.kind == "distribution" and k > 0:
                raise ValueError(f"{o.name} changes the inner model's forecast distribution and must be the first "
                                 f"overlay (innermost); got it at position {k} of "
                                 f"{[x.name for x in self.overlays]}")
            o.check_inner(self.inner)
        names = [o.name for o in self.overlays]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"OverlaidModel: overlay(s) {dup} given twice")

    @property
    def name(self) -> str:
        """The composition in call notation, e.g. ``apc_buffer(lookback_floor(fhs_garch))``."""
        text = self.inner.name
        for o in self.overlays:
            text = f"{o.name}({text})"
        return text

    @property
    def families(self) -> frozenset[str]:
        """The inner model's instrument families."""
        return self.inner.families

    @property
    def tail_prob(self) -> float | None:
        """The inner model's tail probability (the level coverage tests the margin at)."""
        return self.inner.tail_prob

    @property
    def margin_measure(self) -> str | None:
        """The inner model's measure when only the distribution changes; None once the margin is post-processed."""
        return self.inner.margin_measure if all(o.kind == "distribution" for o in self.overlays) else None

    @property
    def estimation_key(self) -> object | None:
        """The inner model's: an overlaid model runs with (and shares the estimates of) the model it wraps."""
        return self.inner.estimation_key

    @property
    def relative_cost(self) -> float:
        """The inner model's (beside it in a task it reuses its scenarios: the engine counts a tenth)."""
        return self.inner.relative_cost

    def rule_switches(self) -> dict[str, str] | None:
        """The inner model's (:meth:`MarginModel.rule_switches`): the overlays add no dated rule."""
        return self.inner.rule_switches()

    def applies_to(self, positions: Sequence[Position]) -> bool:
        """Where the inner model applies."""
        return self.inner.applies_to(positions)

    def describe(self) -> str:
        """The overlays (outermost first) and the inner model with their parameters."""
        return " ∘ ".join([o.describe() for o in reversed(self.overlays)] + [self.inner.describe()])

    @cached_property
    def memory_key(self) -> str:
        """What identifies the model in the run context's per-book memories (its description, computed once)."""
        return self.describe()

    def fit(self, market: MarketData, t, warm_start: OverlaidState | None = None,
            context: RunContext | None = None) -> OverlaidState:
        """Fit the inner model and each overlay's state at ``t``."""
        context = (context or RunContext()).for_market(market)
        prev = warm_start if isinstance(warm_start, OverlaidState) else None
        inner = self.inner.fit(market, t, warm_start=None if prev is None else prev.inner, context=context)
        states = tuple(o.fit(self.inner, market, t, None if prev is None else prev.overlays[k], context)
                       for k, o in enumerate(self.overlays))
        return OverlaidState(i=market.loc_of(t), context=context, inner=inner, overlays=states)

    def margin(self, state: OverlaidState, positions: Sequence[Position], market: MarketData, t) -> float:
        """The margin of :meth:`forecast`."""
        return self.forecast(state, positions, market, t).margin

    def base_forecast(self, model: MarginModel, state: Any, positions: Sequence[Position], market: MarketData, t,
                      book: str | None = None) -> Forecast:
        """``model``'s forecast under the distribution overlay (if the first overlay is one)."""
        first = self.overlays[0]
        if first.kind == "distribution":
            return first.distribution(model, state, positions, market, t, book)
        return model.forecast(state, positions, market, t, book=book)

    def forecast(self, state: OverlaidState, positions: Sequence[Position], market: MarketData, t,
                 book: str | None = None) -> Forecast:
        """The inner forecast, then each margin overlay in order (NaN during the inner model's warm-up).

        A margin overlay's forecast is its margin and, when the inner margin carries Monte Carlo error
        (:attr:`Forecast.mc_se`), that error at the same relative size, ``mc_se x margin / inner margin``:
        exact for a buffer that scales the margin, first order for the floors and the buffer's held rate (whose
        margins are estimated from the same kind of draws).
        """
        fc = self.base_forecast(self.inner, state.inner, positions, market, t, book)
        post = [k for k, o in enumerate(self.overlays) if o.kind == "margin"]
        if not post:
            return fc
        margin = fc.margin
        if np.isfinite(margin):
            ts = utc(t)
            for k in post:
                margin = float(self.overlays[k].adjust(margin, OverlayCall(self, k, state, positions, market, ts,
                                                                           book)))
        if fc.mc_error is None or not fc.margin > 0:
            return Forecast(margin=margin)
        return Forecast(margin=margin, mc_error=partial(_scaled_error, fc, margin))


# ----------------------------------------------------------------------------------------------------------------
# Art. 28(1)(b): stressed observations with at least 25% weight


@register_overlay
@dataclass(frozen=True)
class StressedWeight(Overlay):
    r"""Stressed observations with at least ``weight`` of the probability mass (EMIR RTS 153/2013 Art. 28(1)(b)).

    The inner scenario model's own scenarios (historical moves of the lookback
    window, FHS's filtered scenarios or paths, EWMA's simulated moves) are
    joined by the **stressed observations**: the book revalued at t on the
    historical h-observation joint moves (returns and implied-vol changes, as
    they happened) ending at each row of a stressed period known at t
    (:meth:`~marginlab.models.simulation._ScenarioModel.historical_scenarios`).
    The set is **de-duplicated**: a window scenario drawn from a stressed row is
    dropped (that row is one stressed scenario, counted once). With :math:`n_w` the
    window scenarios kept and :math:`n_s` the stressed ones, the probability
    weights are

    .. math:: p_i = \frac{1-\omega}{n_w}\ \ (\text{kept window scenario}),\qquad
              p_i = \frac{\omega}{n_s}\ \ (\text{stressed scenario}),\qquad \omega = \max(w, s)

    with w = ``weight`` and s the share of the window's scenarios that came from
    stressed rows (so the overlay never gives stressed rows less weight than the
    plain window; ω = 1 when no window scenario is left). With the joined losses
    sorted descending, :math:`L_{(1)} \ge L_{(2)} \ge \dots`, their weights
    :math:`p_{(i)}`, :math:`W_j = \sum_{i \le j} p_{(i)}` and α the inner model's level,
    the margin is the inner model's measure of this weighted distribution
    (:func:`~marginlab.models.simulation.weighted_risk_measure`), floored at 0:

    .. math:: \mathrm{VaR}_\alpha = L_{(j^*)},\quad j^* = \min\{j: W_j \geq 1-\alpha\},\qquad
              \mathrm{ES}_\alpha = \frac{\sum_{i<j^*} p_{(i)}L_{(i)} + (1-\alpha-W_{j^*-1})L_{(j^*)}}{1-\alpha},
              \qquad M_t = \max(\mathrm{VaR}_\alpha\ \text{or}\ \mathrm{ES}_\alpha,\ 0)

    Stressed moves need the implied-vol changes of the assets the book holds
    options on only (as the models' windows: a BTC option book with XRP spot
    keeps its stressed rows although XRP has no implied vol).

    Before a fixed stressed period starts (no row of it known at t) the model
    gives **no margin** (NaN, reported as warm-up), not the inner model's
    margin: a margin labelled as stressed-weighted that holds no stressed
    observation would be counted in this model's coverage and cost. A period
    whose rows known at t include none the book can be revalued on (e.g. an
    option book and a period before its implied-vol history) is refused with
    a DataError naming the book, the period and the data coverage; rows of a
    period missing a needed value are dropped.

    The stressed period is ``stress_start`` .. ``stress_end`` (row labels,
    inclusive; only rows up to t are used) when given. Otherwise it is chosen at
    every date from the data known then: among the book's historical moves over
    the last ``history_years`` years (the rows of one unbroken run back from t on
    which the needed series are observed), the ``stress_days`` consecutive days
    (n rows) whose P&L has the largest mean square (the period in which this
    book's P&L was most volatile),

    .. math:: \hat\tau = \arg\max_\tau \sum_{s=\tau}^{\tau+n-1} \tilde P_s^2,\qquad
              \tilde P_s = \sum_a (D_a \Delta r_{a,s} + \frac{1}{2} G_a \Delta r_{a,s}^2
              + V_a \Delta\ln\sigma_{a,s})

    the first such run on ties, the P&L of the whole history approximated to second
    order (:meth:`proxy_pnl`: delta, gamma and vega in log price and log implied vol
    by full-revaluation central differences) and the chosen period's scenarios
    revalued in full.

    This replaces marginlab's former ``historical_var(stress_start=...,
    stress_end=...)``, which appended the stressed days to the window with
    their natural weight (3% for a 31-day period in a 1,000-day window) and
    counted days inside the window twice.

    Parameters
    ----------
    weight : float
        Least probability mass of the stressed scenarios, in (0, 1); Art. 28(1)(b) asks for at least 0.25.
    stress_start, stress_end : date, optional
        A fixed stressed period, first and last row labels, inclusive (both or neither);
        None (default): the period is chosen automatically on every date.
    stress_days : int
        Length of the automatically chosen stressed period, days (>= 5; default 30), in
        observations of the panel (e.g. 720 rows on hourly panels).
    history_years : float
        How far back to look for it, years of 365 days (> 0; default 10).

    References
    ----------
    * EMIR RTS: Commission Delegated Regulation (EU) No 153/2013, Art. 28(1)(b) (margins
      with "at least 25% weight to stressed observations in the lookback period").
    * Acerbi, C. and Tasche, D. (2002), "On the coherence of expected shortfall", Journal
      of Banking & Finance 26 (the weighted ES).
    """

    name: ClassVar[str] = "stressed_weight"
    kind: ClassVar[str] = "distribution"
    weight: float = 0.25
    stress_start: dt.date | None = None
    stress_end: dt.date | None = None
    stress_days: int = 30
    history_years: float = 10.0

    def __post_init__(self) -> None:
        check_range(self.name, "weight", self.weight, 0.0, 1.0, low_open=True, high_open=True)
        if (self.stress_start is None) != (self.stress_end is None):
            raise ValueError(f"{self.name}: give both stress_start and stress_end, or neither")
        if self.stress_start is not None and utc(self.stress_start) > utc(self.stress_end):
            raise ValueError(f"{self.name}: stress_start {self.stress_start} is after stress_end {self.stress_end}")
        check_ints(self, {"stress_days": 5})
        check_range(self.name, "history_years", self.history_years, 0.0, 100.0, low_open=True)

    def check_inner(self, model: MarginModel) -> None:
        """Scenario models only (historical simulation, FHS, EWMA)."""
        if not isinstance(model, _ScenarioModel):
            raise ValueError(f"{self.name} applies to scenario models (historical simulation, FHS, EWMA), not to "
                             f"{model.name!r}")

    def stressed_rows(self, model: _ScenarioModel, state: Any, positions: Sequence[Position], market: MarketData,
                      t, book: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The stressed rows known at ``t`` and the book's losses on their moves: ``(rows, losses)``.

        Empty before a fixed stressed period starts; DataError (naming ``book``, the period and the data
        coverage) when rows of the period are known at t but none can be revalued for the book.
        """
        i = state.i
        name = book
        book = book_arrays(positions)
        if self.stress_start is not None:
            lo = int(market.index.searchsorted(utc(self.stress_start)))
            hi = min(int(market.index.searchsorted(utc(self.stress_end), side="right")) - 1, i)
            if hi < lo:
                return np.arange(0), np.zeros(0)
            rows = np.arange(lo, hi + 1)
            losses = model.historical_scenarios(state, positions, market, t, rows)
            ok = np.isfinite(losses)
            if not ok.any():
                raise DataError(self.no_usable_row(market, book, name, i))
            return rows[ok], losses[ok]
        per_day = _DAY / market.step
        span = max(int(round(self.history_years * 365 * per_day)), 1)
        rows, _, _ = _window(market, book.assets, i, span, _vol_assets(book))
        h = state.context.mpor
        spot, log_vol = row_moves(market, book.assets, rows, h, _vol_assets(book), getattr(model, "scaling",
                                                                                            "overlapping"))
        proxy = self.proxy_pnl(positions, market, i, spot, log_vol)
        ok = np.isfinite(proxy)
        rows, proxy = rows[ok], proxy[ok]
        n = min(max(int(round(self.stress_days * per_day)), 1), rows.size)
        if n == 0:
            raise DataError(self.no_usable_row(market, book, name, i))
        # rows are one contiguous run (from _window): the stressed period is the run of n rows with the largest
        # mean squared P&L, the first such run on ties; its scenarios are then revalued in full
        csum = np.concatenate([[0.0], np.cumsum(proxy * proxy)])
        start = int(np.argmax(csum[n:] - csum[:-n]))
        rows = rows[start:start + n]
        losses = model.historical_scenarios(state, positions, market, t, rows)
        ok = np.isfinite(losses)
        if not ok.any():
            raise DataError(self.no_usable_row(market, book, name, i))
        return rows[ok], losses[ok]

    def no_usable_row(self, market: MarketData, book: Any, name: str | None, i: int) -> str:
        """One line: the stressed period has no row revaluable for the book at row i, and the series' coverage."""
        period = (f"the stress period {utc(self.stress_start).date()}..{utc(self.stress_end).date()}"
                  if self.stress_start is not None else f"the last {self.history_years:g} years")
        series = [(f"{a} returns", market.log_return_array[:, market.asset_index[a]]) for a in book.assets] + \
            [(f"{a} implied-vol changes", market.log_vol_change_array[:, market.asset_index[a]])
             for a in _vol_assets(book)]
        when = date_format(market.freq)
        known = []
        for label, x in series:
            rows = np.flatnonzero(np.isfinite(x[:i + 1]))
            known.append(f"{label} from {market.index[rows[0]]:{when}}" if rows.size else f"no {label}")
        who = repr(name) if name is not None else "of " + ", ".join(book.assets)
        return (f"{self.name}: {period} has no usable row for book {who} at {market.index[i]:{when}} "
                f"(data known then: {'; '.join(known)})")

    @staticmethod
    def proxy_pnl(positions: Sequence[Position], market: MarketData, i: int, spot: np.ndarray,
                  log_vol: np.ndarray | None) -> np.ndarray:
        r"""Delta-gamma-vega approximation of the book's P&L at row i on moves (for choosing the stressed period).

        :math:`\sum_a D_a r_a + \tfrac12 G_a r_a^2 + V_a \Delta\ln\sigma_a`, with the first and second
        derivatives in log price and the derivative in log implied vol taken by central differences on full
        revaluation (cross terms ignored): second order in the log moves, so a linear book misses only the
        third-order term of :math:`e^r - 1`.
        """
        book = book_arrays(positions)
        n = len(book.assets)
        eps = 1e-3
        bumps = np.vstack([np.eye(n) * eps, -np.eye(n) * eps])
        pnl = revalue_at(book, market, i, bumps, None, horizon=0)
        delta = (pnl[:n] - pnl[n:]) / (2 * eps)
        gamma = (pnl[:n] + pnl[n:]) / eps**2
        out = spot @ delta + 0.5 * (spot * spot) @ gamma
        if log_vol is not None and book.has_options:
            cols = [market.asset_index[a] for a in book.assets]
            zero = np.zeros((2 * n, n))
            up = market.vol_array[i, cols] * np.expm1(np.vstack([np.eye(n) * eps, -np.eye(n) * eps]))
            vpnl = revalue_at(book, market, i, zero, up, horizon=0)
            out = out + log_vol @ ((vpnl[:n] - vpnl[n:]) / (2 * eps))
        return out

    def weights(self, window_rows: np.ndarray, stressed_rows: np.ndarray) -> tuple[np.ndarray, float]:
        """``(keep, omega)``: the window scenarios kept (not drawn from a stressed row) and the stressed mass."""
        from_stress = np.zeros(window_rows.size, dtype=bool)
        if stressed_rows.size:
            inside = (window_rows >= stressed_rows.min()) & (window_rows <= stressed_rows.max())
            from_stress[inside] = np.isin(window_rows[inside], stressed_rows)
        keep = ~from_stress
        omega = max(self.weight, float(from_stress.mean()) if window_rows.size else 0.0)
        if not keep.any():
            omega = 1.0
        return keep, omega

    def distribution(self, model: _ScenarioModel, state: Any, positions: Sequence[Position], market: MarketData,
                     t, book: str | None = None) -> Forecast:
        """The weighted forecast (see the class docstring); no margin (NaN) before a fixed stressed period."""
        scenarios = model.scenarios(state, positions, market, t)
        if scenarios is None:
            return Forecast(margin=float("nan"))
        rows, stressed = self.stressed_rows(model, state, positions, market, t, book)
        if not rows.size:
            return Forecast(margin=float("nan"))
        keep, omega = self.weights(scenarios.rows, rows)
        kept = scenarios.losses[keep]
        losses = np.concatenate([kept, stressed])
        weights = np.concatenate([np.full(kept.size, (1.0 - omega) / max(kept.size, 1)),
                                  np.full(stressed.size, omega / stressed.size)])
        var, es = (max(x, 0.0) for x in weighted_var_es(losses, weights, model.level))
        return Forecast(margin=es if model.measure == "es" else var, var=var, es=es, losses=losses, weights=weights)


# ----------------------------------------------------------------------------------------------------------------
# Art. 28(1)(c): ten-year lookback floor


@register_overlay
@dataclass(frozen=True)
class LookbackFloor(Overlay):
    r"""Margin floored at the same model's margin with a ``years``-year lookback (EMIR RTS Art. 28(1)(c)).

    .. math:: M_t = \max(M_t^{inner},\ M_t^{(Y)})

    where :math:`M^{inner}_t` is the margin the overlay is applied to (the inner
    model's, after any overlay before this one) and :math:`M^{(Y)}` the inner model with
    ``lookback`` set to
    :math:`n = \max(\operatorname{round}(Y \cdot P),\ n_{inner})` observations, Y =
    ``years`` and P the panel's observations per year (3,650 daily rows for ten
    years; all the history there is when shorter), under the ``stressed_weight``
    overlay when the model has one. When the long lookback is not longer than the
    inner model's the floor is the model itself, and on a date where the floor model
    has no margin (its warm-up) the inner margin is kept. Applies to models with a
    ``lookback`` parameter; for historical simulation the floor is the 10-year
    equal-weighted VaR/ES.

    For FHS the filter is re-estimated on ten years but its scenarios keep today's
    conditional volatility; the text of Art. 28(1)(c) ("volatility estimated
    over a 10 year historical lookback period") is closer to FHS's
    ``vol_floor="long_run"``, which floors the one-step variance at the ten-year
    mean squared return (zero mean, the filter's convention; not the demeaned
    sample variance) — an approximation of this floor at the level of the
    filter. For EWMA the lookback only sets where the recursion starts, so the
    floor is nearly the model itself.

    Parameters
    ----------
    years : float
        Length of the floor's lookback, years of 365 days (> 0, at most 100; default 10);
        Art. 28(1)(c) says ten.

    References
    ----------
    * EMIR RTS: Commission Delegated Regulation (EU) No 153/2013, Art. 28(1)(c) (margins "not
      lower than those that would be calculated using volatility estimated over a 10 year
      historical lookback period").
    """

    name: ClassVar[str] = "lookback_floor"
    years: float = 10.0

    def __post_init__(self) -> None:
        check_range(self.name, "years", self.years, 0.0, 100.0, low_open=True)

    def check_inner(self, model: MarginModel) -> None:
        """Models with a ``lookback`` parameter."""
        if "lookback" not in {f.name for f in fields(model)}:
            raise ValueError(f"{self.name} applies to models with a lookback parameter (historical simulation, FHS, "
                             f"EWMA), not to {model.name!r}")

    def floor_model(self, inner: MarginModel, market: MarketData) -> MarginModel:
        """The inner model with the long lookback (in observations of ``market``)."""
        current = lookback_rows(market, inner.lookback)  # a None lookback: the model's calendar default (span)
        n = max(int(round(self.years * market.periods_per_year)), current)
        return inner if n == current else replace(inner, lookback=n)

    def fit(self, inner: MarginModel, market: MarketData, t, warm_start: Any, context: RunContext) -> Any:
        """The floor model and its state at ``t``: ``(model, state)``."""
        model = self.floor_model(inner, market)
        prev = warm_start[1] if isinstance(warm_start, tuple) else None
        return model, model.fit(market, t, warm_start=prev, context=context)

    def adjust(self, margin: float, call: OverlayCall) -> float:
        """``max(margin, floor margin)`` (the margin when the floor has none)."""
        model, state = call.overlay_state
        if model is call.model.inner:
            return margin
        floor = call.base_margin(model, state)
        return max(margin, floor) if np.isfinite(floor) else margin


def _scaled_error(inner: Forecast, margin: float) -> float:
    """The Monte Carlo error of ``margin``, an overlay's adjustment of ``inner``'s margin: the same relative size."""
    return inner.mc_se * margin / inner.margin


# ----------------------------------------------------------------------------------------------------------------
# Art. 28(1)(a): margin buffer


@register_overlay
@dataclass(frozen=True)
class APCBuffer(Overlay):
    r"""A margin buffer of ``buffer`` (>= 25%) drawn down when margins rise (EMIR RTS 153/2013 Art. 28(1)(a)).

    Art. 28(1)(a): "applying a margin buffer at least equal to 25% of the
    calculated margins which it allows to be temporarily exhausted in periods
    where calculated margin requirements are rising significantly". With B_t the
    calculated margin (the inner model's, after any overlay applied before this
    one), b = ``buffer`` and N_t the book's gross notional (:math:`\sum|q|S` over
    the positions held at t), the margin called is, with
    ``release="absorb"`` (default),

    .. math:: M_t = \min(\max(m_{t^-} N_t,\ B_t),\ (1 + b) B_t),\qquad m_{t^-} = M_{t^-}/N_{t^-}

    where :math:`m_{t^-}` is the margin per unit notional called on the book's previous
    margin date :math:`t^-` (the last earlier date on which this overlay called a margin
    for the book in the run), and :math:`M_t = (1 + b)B_t` on the first date (also when
    the previous rate is not finite, the notional is 0, or the call names no book).
    The margin stays where it was as long as it lies between the calculated margin
    and the fully buffered one: a rise of B is absorbed by the buffer until it is
    exhausted (M = B), and a fall of B rebuilds it before the margin falls. The
    previous margin is carried per unit notional so that re-sizing a book
    (constant-notional books are re-sized daily) does not move it. With
    ``release="none"``:

    .. math:: M_t = (1 + b) B_t

    (the buffer is never released: a flat 1 + b scaling).

    Per-book memory: see the module docstring (path-dependent from the run's
    first margin date; kept in the run context, keyed by the ``book`` name).

    Parameters
    ----------
    buffer : float
        The buffer b as a fraction of the calculated margin, in [0, 10]; Art. 28(1)(a) asks for at least 0.25.
    release : {"absorb", "none"}
        How the buffer is released: drawn down on rises and rebuilt on falls (``"absorb"``,
        default), or never (``"none"``).

    References
    ----------
    * EMIR RTS: Commission Delegated Regulation (EU) No 153/2013, Art. 28(1)(a) (a margin
      buffer of at least 25% of the calculated margins, temporarily exhausted when
      calculated margin requirements rise significantly).
    """

    name: ClassVar[str] = "apc_buffer"
    buffer: float = 0.25
    release: str = "absorb"

    def __post_init__(self) -> None:
        check_range(self.name, "buffer", self.buffer, 0.0, 10.0)
        if self.release not in ("absorb", "none"):
            raise ValueError(f"{self.name}: release must be 'absorb' or 'none', got {self.release!r}")

    def adjust(self, margin: float, call: OverlayCall) -> float:
        """The buffered margin (see the class docstring)."""
        full = (1.0 + self.buffer) * margin
        if self.release == "none" or call.book is None:
            return full
        memory = call.context.cache("apc_buffer")
        key = (call.model.memory_key, call.index, call.book)
        notional = gross_notional(call.positions, call.market, call.i)
        # memory: (row, rate called there, the previous row and rate); asked again for the same row (the same
        # model under two labels), the answer is the same
        entry = memory.get(key)
        previous = None if entry is None else (entry[:2] if entry[0] < call.i else entry[2:] if entry[0] == call.i
                                               else None)
        out = full
        if previous is not None and previous[0] is not None and np.isfinite(previous[1]) and notional > 0:
            out = min(max(previous[1] * notional, margin), full)
        rate = out / notional if notional > 0 else float("nan")
        memory[key] = (call.i, rate, *(previous if previous is not None else (None, float("nan"))))
        return out


# ----------------------------------------------------------------------------------------------------------------
# Art. 26: liquidity / concentration add-on


@register_overlay
@dataclass(frozen=True)
class LiquidityAddOn(Overlay):
    r"""Liquidity (concentration) add-on: large positions take longer to close out than the MPOR.

    EMIR RTS 153/2013 Art. 26 makes the liquidation period reflect the time to
    close out positions. For each asset a of the book, with :math:`D_a` the
    net delta-equivalent notional (quote currency; :math:`\partial P/\partial\ln S_a`
    by central differences on full revaluation, so options count by their delta),
    :math:`V_a` the average daily traded volume (quote currency) over the last
    ``adv_days`` days known at t (the bundled OHLCV ``volume_quote``) and
    p = ``participation`` the share of that volume a close-out can take per day,
    the close-out takes :math:`\tau_a = |D_a| / (p V_a)` days. Beyond the MPOR
    of h days (the run's MPOR in observations x the panel's step) the
    liquidation period is :math:`\tau_a` and risk grows with the square root of
    time (the liquidity-horizon scaling of BCBS MAR33.12); with B the margin the
    overlay is applied to (the inner model's, after any overlay before this one;
    B = 0 or a book without delta is left as it is):

    .. math:: M = B(1 + \sum_a s_a(\sqrt{\max(\tau_a / h, 1)} - 1)),
              \quad s_a = |D_a| / \sum_b |D_b|

    So there is no add-on while every position can be closed within the MPOR
    at p of the daily volume (a threshold set by recent ADV, as CME SPAN 2's
    concentration charge: "an add on if the size of the holding is higher than
    a certain level of threshold, which is calibrated from recent days of
    Average Daily Volume", CME Group, SPAN 2 methodology page), and the add-on
    is proportional to the current market risk B and grows with relative size,
    as Eurex Prisma's liquidity add-on ("depends on the relative size of
    positions as compared to observed tradable volumes" and "on the current
    level of market risk", Eurex Clearing circulars 039/21 and 097/21). The
    venues' calibrated parameters (market capacities, liquidity factors) are
    not public; p = 10% of ADV per day is a common close-out assumption.
    Options are judged against the underlying's spot volume (the bundled data
    has no option volumes). At the reference books' $1m notional the add-on is
    zero; it matters from hundreds of millions.

    Parameters
    ----------
    participation : float
        Share p of the average daily volume that can be traded per day, in (0, 1]; default 0.10.
    adv_days : int
        Days of volume in the average (>= 1; default 30), in observations of the panel up to
        and including t (e.g. 720 rows on hourly panels).

    References
    ----------
    * EMIR RTS: Commission Delegated Regulation (EU) No 153/2013, Art. 26 (the liquidation
      period reflects the time to close out positions).
    * BCBS (2019), Minimum capital requirements for market risk, MAR33.12 (liquidity horizons,
      square-root-of-time scaling).
    * CME Group, SPAN 2 methodology page (concentration charge: an add-on above a threshold
      calibrated from recent average daily volume).
    * Eurex Clearing circulars 039/21 and 097/21 (Prisma liquidity add-on: relative size of
      positions against tradable volumes, scaled by the current level of market risk).
    """

    name: ClassVar[str] = "liquidity_addon"
    participation: float = 0.10
    adv_days: int = 30

    def __post_init__(self) -> None:
        check_range(self.name, "participation", self.participation, 0.0, 1.0, low_open=True)
        check_ints(self, {"adv_days": 1})

    def average_daily_volume(self, market: MarketData, assets: Sequence[str], i: int) -> np.ndarray:
        """Average traded volume per day (quote currency) of each asset over the last ``adv_days`` days to row i."""
        if market.volume_array is None:
            raise DataError(f"{self.name}: the market has no traded volume (load it with load_market, whose "
                            "bundled OHLCV data has volume)")
        per_day = _DAY / market.step
        n = max(int(round(self.adv_days * per_day)), 1)
        cols = [market.asset_index[a] for a in assets]
        window = market.volume_array[max(0, i - n + 1):i + 1, cols]
        ok = np.isfinite(window)
        if not ok.any(axis=0).all():
            missing = [a for a, has in zip(assets, ok.any(axis=0), strict=True) if not has]
            raise DataError(f"{self.name}: no traded volume for {missing} in the {self.adv_days} days to "
                            f"{market.index[i]}")
        return np.nanmean(window, axis=0) * per_day

    def delta_notional(self, positions: Sequence[Position], market: MarketData, i: int) -> np.ndarray:
        r"""Net delta-equivalent notional per asset of the book, :math:`\partial P/\partial \ln S_a` (quote ccy)."""
        book = book_arrays(positions)
        n = len(book.assets)
        eps = 1e-4
        shocks = np.vstack([np.eye(n) * eps, -np.eye(n) * eps])
        pnl = revalue_at(book, market, i, shocks, None, horizon=0)
        return (pnl[:n] - pnl[n:]) / (2.0 * eps)

    def adjust(self, margin: float, call: OverlayCall) -> float:
        """The margin with the add-on (see the class docstring)."""
        book = book_arrays(call.positions)
        if not len(book.assets) or margin == 0.0:
            return margin
        delta = np.abs(self.delta_notional(call.positions, call.market, call.i))
        total = delta.sum()
        if total == 0.0:
            return margin
        adv = self.average_daily_volume(call.market, book.assets, call.i)
        h_days = call.context.mpor * (call.market.step / _DAY)
        if ((adv <= 0) & (delta > 0)).any():
            zero = [a for a, v, d in zip(book.assets, adv, delta, strict=True) if v <= 0 < d]
            raise DataError(f"{self.name}: no volume traded in {zero} in the {self.adv_days} days to "
                            f"{call.market.index[call.i]}: the position cannot be closed out")
        tau = delta / (self.participation * np.where(adv > 0, adv, 1.0))
        factor = np.sqrt(np.maximum(tau / h_days, 1.0)) - 1.0
        return float(margin * (1.0 + np.dot(delta / total, factor)))
