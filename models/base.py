"""The `MarginModel` interface (the engine–model contract) and the model registry.

A margin model is a frozen dataclass of parameters with two methods. Every
parameter is type-checked from its annotation (:mod:`marginlab.models.params`)
before the model's own ``__post_init__`` checks its range:

* ``fit(market, t, warm_start=None, context=None) -> state``: prepare whatever the
  model needs from data **known at t's observation time** (nothing after ``t``
  may be read). ``warm_start`` is the model's state of the previous margin date
  (or None); ``context`` is the run's :class:`~marginlab.models.context.RunContext`
  (MPOR in observations, seed, the run's caches and estimation store); a fresh
  default context (MPOR 1, seed 0) is used when it is None.
* ``margin(state, positions, market, t) -> float``: the margin (a positive amount
  in the quote currency; NaN while the model is warming up) for the book
  ``positions`` held at ``t``.

Models that forecast a loss distribution also implement
``forecast(state, positions, market, t) -> Forecast`` (the margin together with
the VaR and ES at the model's level and the scenario losses, from which the
engine computes the rank PIT of the realised loss, :meth:`Forecast.pit`); the default wraps ``margin``.

Every state answers ``diagnostics() -> dict[str, int]`` (counts the report shows,
e.g. failed or boundary fits; empty for stateless models). Each model states
the tail probability it promises (:attr:`MarginModel.tail_prob`: 0.01 for a 99%
VaR, 0.025 for a 97.5% ES, None for rule-based models, which are then tested at
the study's ``tail_prob``). Models declare which instrument families they cover
(``families``); the engine reports a model as not applicable to a book with
other instruments rather than inventing a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData

from .context import RunContext
from .instruments import LINEAR, OPTION, Position
from .methodology import Methodology, methodology_of
from .params import install_field_validation

__all__ = ["MarginModel", "ModelState", "Forecast", "HasDiagnostics", "MODELS", "register", "make_model",
           "model_parameters"]

MODELS: dict[str, type[MarginModel]] = {}


@runtime_checkable
class HasDiagnostics(Protocol):
    """The protocol of a model state: counts for the report (e.g. fits, failed, boundary)."""

    def diagnostics(self) -> dict[str, int]:
        """Counts accumulated over the run so far (empty when there is nothing to report)."""
        ...


@dataclass(frozen=True)
class ModelState:
    """The state of a model without estimated parameters: the date, its market row and the run context."""

    t: pd.Timestamp
    i: int
    context: RunContext

    def diagnostics(self) -> dict[str, int]:
        """Nothing to report."""
        return {}


@dataclass(frozen=True)
class Forecast:
    """A model's forecast for one book and date.

    Attributes
    ----------
    margin : float
        The margin (quote currency, >= 0; NaN during warm-up).
    var, es : float
        VaR and ES of the forecast loss distribution at the model's level
        (NaN when the model has no loss distribution).
    losses : ndarray of shape (n_scenarios,) or None
        Scenario losses (quote currency) of the forecast distribution, each
        with weight ``weights[k]`` (equal weights when ``weights`` is None).
    mc_error : callable or None
        Computes :attr:`mc_se` when asked (None: no error is stated); computed lazily,
        as most forecasts (e.g. of standalone legs) only need the margin.
    """

    margin: float
    var: float = float("nan")
    es: float = float("nan")
    losses: np.ndarray | None = None
    weights: np.ndarray | None = None
    mc_error: Callable[[], float] | None = field(default=None, repr=False, compare=False)

    @property
    def mc_se(self) -> float:
        """Monte Carlo standard error of one date's margin (quote currency); NaN when none is stated.

        For a margin that is the risk measure of i.i.d. simulated scenarios: what another seed would move it
        by (:func:`marginlab.models.simulation.monte_carlo_se`). NaN for rules, historical and one-step FHS
        scenarios, which have no simulation noise, and for simulated margins it is not estimated for: fewer
        than 10 tail scenarios, or the ``stressed_weight`` overlay's weighted mixture of simulated and
        historical scenarios.
        """
        return float("nan") if self.mc_error is None else float(self.mc_error())

    def pit(self, pnl: float) -> float:
        r"""Rank PIT of a realised P&L among the forecast's N scenarios: :math:`(k + 1/2)/(N + 1)`.

        ``k`` is the number of scenarios with a loss at or above the realised loss ``-pnl`` (forecast
        P&L at or below ``pnl``). Under a correct forecast the realisation and the N scenarios are
        exchangeable draws of one law, so ``k`` is uniform on 0..N and the PIT is the midpoint of one of
        N + 1 equal bins: the rank histogram (Anderson 1996, J. Climate 9; Hamill 2001, Mon. Wea. Rev.
        129) as a PIT, the non-randomised mid-PIT of a discrete forecast (Czado, Gneiting and Held 2009,
        Biometrics 65(4)). It lies in [1/(2(N+1)), 1 - 1/(2(N+1))], never 0 or 1, so a loss beyond every
        scenario gives :math:`1/(2(N+1))`, a finite normal quantile for the Berkowitz tail test, and it
        differs from the empirical forecast CDF k/N (the PIT before: 0 on such a loss) by at most
        :math:`|k - N/2|/(N(N+1)) \le 1/(2(N+1))`.

        Weighted scenarios (``weights``, total W, mean :math:`\bar w = W/N`): :math:`(W_{\ge} + \bar
        w/2)/(W + \bar w)`, :math:`W_{\ge}` the weight of scenarios with loss >= -pnl, the realisation
        counted as one more scenario of the mean weight; equal weights give the formula above exactly, and
        it differs from :math:`W_{\ge}/W` by at most 1/(2(N + 1)) as well.
        NaN without a forecast distribution (or with no scenario) or a non-finite P&L.
        """
        if self.losses is None or not self.losses.size or not np.isfinite(pnl):
            return float("nan")
        if self.weights is None:  # equal weights: counts (the sums of unit weights, exactly)
            k = np.float64(np.count_nonzero(self.losses >= -pnl))
            return float((k + 0.5) / (np.float64(self.losses.size) + 1.0))
        w = self.weights
        total = w.sum()
        mean = total / self.losses.size
        return float((w[self.losses >= -pnl].sum() + mean / 2.0) / (total + mean))


@dataclass(frozen=True)
class MarginModel:
    """Base class of every margin model (see module docstring for the contract)."""

    name: ClassVar[str] = "base"
    families: ClassVar[frozenset[str]] = frozenset({LINEAR, OPTION})
    #: Rough CPU cost of one margin call relative to a fixed-rate rule (1), from the default study's measured
    #: seconds per model. The engine hands the costliest tasks to the executor first so that no worker is
    #: left with a long task at the end; it never changes a result.
    relative_cost: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        install_field_validation(cls)  # parameters type-checked from their annotations, before __post_init__

    @property
    def tail_prob(self) -> float | None:
        """Tail probability the model promises (1 - its confidence level); None for rule-based models."""
        return None

    @property
    def estimation_key(self) -> object | None:
        """Key of the estimation the model shares with others (models with the same key run together), or None."""
        return None

    @property
    def margin_measure(self) -> str | None:
        """``"var"`` or ``"es"`` when the margin is that risk measure of a forecast distribution, else None."""
        return None

    def fit(self, market: MarketData, t: pd.Timestamp, warm_start: Any = None,
            context: RunContext | None = None) -> Any:
        """Prepare the state at ``t`` from data known at ``t`` (default: date, row and context only)."""
        return ModelState(t=pd.Timestamp(t), i=market.loc_of(t), context=(context or RunContext()).for_market(market))

    def margin(self, state: Any, positions: Sequence[Position], market: MarketData, t: pd.Timestamp) -> float:
        """Return the margin for ``positions`` at ``t``."""
        raise NotImplementedError

    def forecast(self, state: Any, positions: Sequence[Position], market: MarketData, t: pd.Timestamp,
                 book: str | None = None) -> Forecast:
        """The margin with whatever else the model forecasts (default: the margin only).

        ``book`` names the portfolio the positions belong to (the engine passes it), for models that keep
        something per book over the run (e.g. an anti-procyclicality buffer); most models ignore it.
        """
        return Forecast(margin=self.margin(state, positions, market, t))

    def applies_to(self, positions: Sequence[Position]) -> bool:
        """True if every position's instrument family is covered by the model."""
        return all(p.instrument.family in self.families for p in positions)

    def rule_switches(self) -> dict[str, str] | None:
        """The dated changes of the venue rule the model replicates: ``{date (UTC, ISO): what changes}``.

        None: the model replicates no venue's rule (its parameters are the study's); ``{}``: a venue rule with
        one vintage applied to every date. Read by the report's Limitations and procyclicality sections, so a
        step of the margin on a switch date is attributed to the venue's rule, not to the model.
        """
        return None

    @staticmethod
    def assets_by_date(starts) -> dict[str, list[str]]:
        """Group ``(date, asset)`` pairs of rule changes for :meth:`rule_switches`: date -> its assets.

        Dates in order, assets in the order given.
        """
        dates: dict[str, list[str]] = {}
        for day, asset in starts:
            dates.setdefault(day, []).append(asset)
        return dict(sorted(dates.items()))

    def describe(self) -> str:
        """One line: the registered name and the parameters."""
        params = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({params})"

    def parameters(self) -> dict[str, Any]:
        """The parameters as a dict (name -> value)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def methodology(self) -> Methodology:
        """Formula, parameters (value, default, type, description), sources and limitations, for reports.

        Built from the class docstring and the fields (:mod:`marginlab.models.methodology`), so a new
        model has one without writing anything more than its docstring; override to say more.
        """
        return methodology_of(self)


def add_to_registry(registry: dict[str, type], cls: type, kind: str = "model") -> type:
    """Add ``cls`` to ``registry`` under ``cls.name`` (ValueError if another class has the name); return it."""
    if cls.name in registry and registry[cls.name] is not cls:
        raise ValueError(f"a {kind} named {cls.name!r} is already registered")
    registry[cls.name] = cls
    return cls


def build_registered(registry: dict[str, type], name: str, params: dict[str, Any], kind: str = "model",
                     what: str = "margin model") -> Any:
    """Build ``registry[name](**params)``; unknown names or parameters raise ValueError listing the valid ones."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; registered {kind}s: {sorted(registry)}")
    valid = [f.name for f in fields(registry[name])]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {kind} {name!r}; valid parameters: {valid}")
    return registry[name](**params)


def register(cls: type[MarginModel]) -> type[MarginModel]:
    """Class decorator: add a model to :data:`MODELS` under ``cls.name``."""
    return add_to_registry(MODELS, cls)


def model_parameters(name: str) -> list[str]:
    """Parameter names of a registered model."""
    return [f.name for f in fields(MODELS[name])]


def make_model(name: str, **params: Any) -> MarginModel:
    """Build a registered model by name; unknown names or parameters raise ValueError listing the valid ones."""
    return build_registered(MODELS, name, params)


def check_range(model: str, field_name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError naming the model and field when ``value`` is outside the range."""
    ok = isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{model}: {field_name} must be in {lo}{low if low is not None else '-inf'}, "
                         f"{high if high is not None else 'inf'}{hi}, got {value!r}")


def check_ints(model: MarginModel, minimums: dict[str, int]) -> None:
    """Raise ValueError naming the model and field unless each field is an integer >= its minimum."""
    for name, low in minimums.items():
        value = getattr(model, name)
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise ValueError(f"{model.name}: {name} must be an integer >= {low}, got {value!r}")
