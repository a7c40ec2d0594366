"""The `MarginModel` interface and the model registry.

A margin model is a frozen dataclass of parameters with two methods. Every
parameter is type-checked from its annotation (:mod:`marginlab.models.params`)
before the model's own ``__post_init__`` checks its range:

* ``fit(market, t, warm_start=None) -> state``: estimate whatever the model
  needs from data **up to and including t** (nothing after ``t`` may be read);
* ``margin(state, positions, market, t) -> float``: the margin (a positive
  amount in the quote currency) for the book ``positions`` held at ``t``.

``margins(portfolio, market, dates)`` is the vectorised path over many dates;
the default loops over ``fit`` and ``margin``, warm-starting each fit from the
previous state. Models declare which instrument families they cover
(``families``); the engine reports a model as not applicable to a book with
other instruments rather than inventing a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData

from .instruments import LINEAR, OPTION, Position
from .params import install_field_validation

__all__ = ["MarginModel", "MODELS", "register", "make_model", "model_parameters"]

MODELS: dict[str, type[MarginModel]] = {}


@dataclass(frozen=True)
class MarginModel:
    """Base class of every margin model (see module docstring for the contract)."""

    name: ClassVar[str] = "base"
    families: ClassVar[frozenset[str]] = frozenset({LINEAR, OPTION})
    #: periods of history the model needs before its first margin
    warmup: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        install_field_validation(cls)  # parameters type-checked from their annotations, before __post_init__

    def fit(self, market: MarketData, t: pd.Timestamp, warm_start: Any = None) -> Any:
        """Estimate the model's state from data up to ``t`` (default: no state)."""
        return None

    def margin(self, state: Any, positions: Sequence[Position], market: MarketData, t: pd.Timestamp) -> float:
        """Return the margin for ``positions`` at ``t``."""
        raise NotImplementedError

    def applies_to(self, positions: Sequence[Position]) -> bool:
        """True if every position's instrument family is covered by the model."""
        return all(p.instrument.family in self.families for p in positions)

    def margins(self, positions_by_date: Sequence[Sequence[Position]], market: MarketData,
                dates: Sequence[pd.Timestamp]) -> np.ndarray:
        """Margins for many dates (default: loop over ``fit`` and ``margin``)."""
        out = np.empty(len(dates))
        state = None
        for k, (t, positions) in enumerate(zip(dates, positions_by_date, strict=True)):
            state = self.fit(market, t, warm_start=state)
            out[k] = self.margin(state, positions, market, t)
        return out

    def describe(self) -> str:
        """One line: the registered name and the parameters."""
        params = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({params})"


def register(cls: type[MarginModel]) -> type[MarginModel]:
    """Class decorator: add a model to :data:`MODELS` under ``cls.name``."""
    if cls.name in MODELS and MODELS[cls.name] is not cls:
        raise ValueError(f"a model named {cls.name!r} is already registered")
    MODELS[cls.name] = cls
    return cls


def model_parameters(name: str) -> list[str]:
    """Parameter names of a registered model."""
    return [f.name for f in fields(MODELS[name])]


def make_model(name: str, **params: Any) -> MarginModel:
    """Build a registered model by name; unknown names or parameters raise ValueError listing the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown margin model {name!r}; registered models: {sorted(MODELS)}")
    valid = model_parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for model {name!r}; valid parameters: {valid}")
    return MODELS[name](**params)


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
