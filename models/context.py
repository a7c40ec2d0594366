"""The per-run context the engine hands to every margin model.

A :class:`RunContext` carries the settings of one backtest that every model must
agree on — the margin period of risk (MPOR, in observations) and the seed of
every random draw — and owns the run's state: caches, the estimation store
shared between models (e.g. FHS VaR and ES fitted on the same asset and
window) and the tables the engine reports (the per-date estimates). Nothing of
this lives in module globals, so two backtests in one process cannot influence
each other, and a context can be created afresh in another process (a Dask
worker) with the same settings to give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData

__all__ = ["RunContext", "date_key"]


def date_key(market: MarketData, i: int) -> int:
    """The key of the random draws at market row i: its observation time in whole seconds since 1970-01-01 UTC.

    A date, not the row's position in the loaded panel: a market loaded from a later start gives the same
    draws, hence the same Monte Carlo margins, on the same dates.
    """
    return int(market.observation_ns[i] // 1_000_000_000)


@dataclass
class RunContext:
    """Settings and state of one backtest run.

    Parameters
    ----------
    mpor : int
        Margin period of risk in observations (days on daily data, hours on
        hourly data), >= 1. Models forecast the loss over this horizon.
    seed : int
        Seed of every random draw of the run. Draws are keyed by the seed and
        the date (``rng(date_key(market, i))``, the observation time of row i),
        never by model, worker, call order or the row's position in the loaded
        panel, so models with the same seed share their draws, a run is
        bit-for-bit repeatable on any executor, and a market loaded from a
        later start gives the same draws on the same dates.
    """

    mpor: int = 1
    seed: int = 0
    _caches: dict[str, dict] = field(default_factory=dict, repr=False)
    _tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _market: MarketData | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("mpor", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise ValueError(f"RunContext: {name} must be an integer, got {value!r}")
        if self.mpor < 1:
            raise ValueError(f"RunContext: mpor must be >= 1 observation, got {self.mpor}")
        if self.seed < 0:
            raise ValueError(f"RunContext: seed must be >= 0, got {self.seed}")

    def for_market(self, market: MarketData) -> RunContext:
        """Bind the context to ``market`` on first use and return it; ValueError for another market.

        A context belongs to one run on one market: its caches and estimates are keyed by the market's rows,
        so another market (e.g. one loaded from another start) would silently read the first one's values at
        the same row number, another date. Create one context per run and market.
        """
        if self._market is None:
            self._market = market
        elif self._market is not market:
            raise ValueError("RunContext: this context was used with another market data object; a context "
                             "belongs to one run on one market (create a new RunContext)")
        return self

    def rng(self, *key: int) -> np.random.Generator:
        """A generator seeded by ``(seed, *key)`` (e.g. ``rng(date_key(market, i))`` for the date of row i)."""
        return np.random.default_rng([int(self.seed), *(int(k) for k in key)])

    def cache(self, name: str) -> dict:
        """A dict owned by this run (created empty on first use)."""
        return self._caches.setdefault(name, {})

    def row_cache(self, name: str, market: MarketData, i: int) -> dict:
        """A dict owned by this run holding entries of market row ``i`` only: emptied when another row is asked for.

        For memos of the current date (option marks, scenario sets, simulated moves), which a run asks for row
        after row: memory stays one row's worth.
        """
        store = self.cache(name)
        if store.get("_row") != i or store.get("_market") is not market:
            store.clear()
            store["_row"], store["_market"] = i, market
        return store

    def shared(self, name: str, key: Hashable, build: Callable[[], Any]) -> Any:
        """The object stored under ``key`` in cache ``name``, built once per run by ``build()``."""
        store = self.cache(name)
        if key not in store:
            store[key] = build()
        return store[key]

    def record(self, table: str, row: dict[str, Any]) -> None:
        """Append ``row`` to the run's table ``table`` (e.g. ``"estimates"``)."""
        self._tables.setdefault(table, []).append(row)

    def table(self, name: str) -> pd.DataFrame:
        """A recorded table as a frame (empty when nothing was recorded)."""
        return pd.DataFrame(self._tables.get(name, []))
