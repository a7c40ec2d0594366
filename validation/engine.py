"""The replay engine: margins at t, realised MPOR losses after t, breaches.

For every portfolio and every date t of its range the engine freezes the book
``positions_at(t)``, asks each model for its margin using data up to t, and
revalues the frozen book over the margin period of risk: ``pnl`` is the
full-revaluation P&L from t to t + ``mpor_days`` observations, ``loss = -pnl``
and ``breach = loss > margin`` (strict). A portfolio's range is the set of
dates inside ``[start, end]`` where its assets (and, for option books, implied
vols) have data at t and t + mpor_days; a member account's, the dates it holds a
book and the market has that book's data (``Portfolio.margin_rows``, which ``AccountBook`` overrides).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.conventions import utc
from marginlab.datasets.validate import frequency_delta
from marginlab.models.accounts import AccountBook
from marginlab.models.base import HasDiagnostics, MarginModel
from marginlab.models.context import RunContext
from marginlab.models.instruments import Position
from marginlab.models.portfolios import Portfolio
from marginlab.models.revaluation import Book, realised_pnl
from threadpoolctl import threadpool_limits

from . import coverage as cv
from .executors import SerialExecutor
from .metrics import METRICS, apc_tradeoff, compute_metrics, compute_procyclicality

__all__ = ["Backtest", "BacktestResult", "Task", "TaskResult", "Executor", "COLUMNS"]

#: Columns of the result frame: the margin date, portfolio and model labels, the margin, the realised P&L over
#: the MPOR and loss = -pnl, breach = loss > margin (strict), VaR and ES at the model's level and the rank PIT
#: of the realised P&L among the forecast's N scenarios, (k + 1/2)/(N + 1) with k the scenarios with a loss at or
#: above the realised one (:meth:`Forecast.pit`; never 0 or 1; NaN for rule-based models), the book's gross notional
#: (sum |q| S over the positions held at t, quote currency: options and futures expired by t are left out)
#: and whether its instruments changed since its previous date (a roll), then ``mc_se``: the Monte Carlo standard
#: error of the margin's risk measure for models on simulated i.i.d. scenarios (EWMA; FHS over an MPOR of h > 1
#: observations; :attr:`Forecast.mc_se`), NaN for the others.
#: ``Backtest(..., standalone_legs=True)`` adds ``standalone_margin``: the sum of the margins of the book's
#: positions, each margined alone by the same model at the same date (the offset benefit's denominator).
COLUMNS = ["date", "portfolio", "model", "margin", "pnl", "loss", "breach", "var", "es", "pit", "notional",
           "book_changed", "mc_se"]
#: Columns of :meth:`BacktestResult.coverage` after ``sample`` (the headline of a coverage report and two ES tests).
COVERAGE_COLUMNS = ["p", "mpor_days", "observations", "breaches", "expected_breaches", "breach_rate", "kupiec_pvalue",
                    "kupiec_direction", "too_many_pvalue", "christoffersen_cc_pvalue", "christoffersen_ind_pvalue",
                    "christoffersen_ind_direction", "traffic_light_zone", "worst_window_breaches",
                    "worst_window_pvalue", "acerbi_szekely_z2_pvalue", "mcneil_frey_pvalue"]

#: Columns of :meth:`Backtest.untested_account_days` (held account dates without the data of the book held).
UNTESTED_COLUMNS = ["account", "reason", "account_days", "first", "last", "held_days"]


def _tested_var(rows: pd.DataFrame) -> pd.Series:
    """The series the coverage of each (portfolio, model) pair of ``rows`` is tested on.

    The model's VaR at its own level (the ``var`` column) where the pair has one on every one of its rows,
    else the margin (rule-based models and overlays carry no VaR).
    """
    keys = [rows["portfolio"].to_numpy(), rows["model"].to_numpy()]
    whole = rows["var"].notna().groupby(keys, sort=False).transform("all")
    return rows["var"].where(whole, rows["margin"])


def _model_labels(models) -> dict[str, MarginModel]:
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = []
        names = [m.name for m in models]
        for m in models:
            label = m.name if names.count(m.name) == 1 else m.describe()
            items.append((label, m))
    out: dict[str, MarginModel] = {}
    for label, m in items:
        if not isinstance(m, MarginModel):
            raise ValueError(f"model {label!r} is not a MarginModel (got {type(m).__name__}); "
                             "use marginlab.models.make_model(name, ...)")
        if label in out:
            raise ValueError(f"two models share the label {label!r}; pass a dict label -> model")
        out[label] = m
    if not out:
        raise ValueError("Backtest: no margin models given")
    return out


def _portfolio_map(portfolios) -> dict[str, Portfolio]:
    if isinstance(portfolios, Portfolio):
        portfolios = [portfolios]
    items = list(portfolios.items()) if isinstance(portfolios, Mapping) else [(p.name, p) for p in portfolios]
    out: dict[str, Portfolio] = {}
    for name, p in items:
        if not isinstance(p, Portfolio):
            raise ValueError(f"portfolio {name!r} is not a Portfolio (got {type(p).__name__})")
        if name in out:
            raise ValueError(f"two portfolios are named {name!r}")
        out[name] = p
    if not out:
        raise ValueError("Backtest: no portfolios given")
    return out


@dataclass
class Backtest:
    """Replay ``portfolios`` through ``models`` on ``market``.

    Parameters
    ----------
    market : MarketData
    portfolios : mapping name -> Portfolio, or a sequence of portfolios
    models : mapping label -> MarginModel, or a sequence of models
    mpor_days : int
        Margin period of risk in observations (days for daily data), >= 1. The
        engine passes it to every model through the run context.
    start, end : optional
        Range of margin dates; must lie inside the market data.
    include_funding : bool
        Charge perpetual funding over the MPOR; a perpetual whose MPOR window lacks funding data
        (the bundled series covers BTC from 2019-09-10) is a DataError naming the book, the asset, the
        first date affected and the coverage.
    seed : int
        Seed of every random draw of the run (passed to the models through the
        run context): the same seed gives the same margins bit for bit.
    standalone_legs : bool
        Also margin every position of a book alone, with the same model, state and
        date, and add their sum as the column ``standalone_margin`` (for the offset
        benefit, :data:`~marginlab.validation.metrics.METRICS`). Off by default: it
        multiplies the models' work by the number of legs.
    """

    market: MarketData
    portfolios: Mapping[str, Portfolio] | Sequence[Portfolio] | Portfolio
    models: Mapping[str, MarginModel] | Sequence[MarginModel]
    mpor_days: int = 1
    start: pd.Timestamp | str | None = None
    end: pd.Timestamp | str | None = None
    include_funding: bool = False
    seed: int = 0
    standalone_legs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.market, MarketData):
            raise ValueError("Backtest: market must be a MarketData (see marginlab.datasets.load_market)")
        if not isinstance(self.mpor_days, int | np.integer) or isinstance(self.mpor_days, bool) or self.mpor_days < 1:
            raise ValueError(f"Backtest: mpor_days must be an integer >= 1, got {self.mpor_days!r}")
        if not isinstance(self.seed, int | np.integer) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"Backtest: seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.standalone_legs, bool | np.bool_):
            raise ValueError(f"Backtest: standalone_legs must be true or false, got {self.standalone_legs!r}")
        self._portfolios = _portfolio_map(self.portfolios)
        self._models = _model_labels(self.models)
        idx = self.market.index
        parsed = {}
        for label in ("start", "end"):
            try:
                parsed[label] = utc(getattr(self, label))
            except ValueError as exc:
                raise ValueError(f"Backtest: {label} {exc}") from None
        self._start, self._end = parsed["start"], parsed["end"]
        for label, ts in (("start", self._start), ("end", self._end)):
            if ts is not None and not (idx[0] <= ts <= idx[-1]):
                raise DataError(f"Backtest: {label} {ts:%Y-%m-%d} is outside the market data "
                                f"({idx[0]:%Y-%m-%d} .. {idx[-1]:%Y-%m-%d})")
        if self._start is not None and self._end is not None and self._start > self._end:
            raise DataError(f"Backtest: start {self._start:%Y-%m-%d} is after end {self._end:%Y-%m-%d}")
        for name, p in self._portfolios.items():
            unknown = [a for a in p.assets if a not in self.market.assets]
            if unknown:
                raise DataError(f"portfolio {name!r}: unknown asset(s) {unknown}; the market data has "
                                f"{self.market.assets}")
        self._paths: dict[str, _BookPath] = {}
        self._dates: dict[str, pd.DatetimeIndex] = {}

    def __getstate__(self) -> dict:
        # shipped to workers without the book paths computed here: each process builds its own, once
        return {k: v for k, v in self.__dict__.items() if k not in ("_paths", "_dates")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._paths, self._dates = {}, {}

    def portfolio_dates(self, name: str) -> pd.DatetimeIndex:
        """Margin dates of one portfolio (see module docstring; computed once per process)."""
        dates = self._dates.get(name)
        if dates is None:
            dates = self._dates[name] = self._portfolio_dates(name)
        return dates

    def _portfolio_dates(self, name: str) -> pd.DatetimeIndex:
        p = self._portfolios[name]
        m, h = self.market, self.mpor_days
        dates = m.index[p.margin_rows(m, h)]  # held, with its data at t and t + h
        if self._start is not None:
            dates = dates[dates >= self._start]
        if self._end is not None:
            dates = dates[dates <= self._end]
        if len(dates) == 0 and not isinstance(p, AccountBook):  # an account without a book in the range is idle
            raise DataError(f"portfolio {name!r}: no date in the backtest range has the data it needs "
                            f"(assets {p.assets}{', implied vol' if p.needs_implied_vol else ''}, "
                            f"and {h} observation(s) after)")
        return dates

    def replayed(self) -> list[str]:
        """The portfolios with margin dates, in order: all but member accounts holding no book in the range.

        A reference portfolio without a margin date is an error (:meth:`portfolio_dates`); an account that
        holds no book on any date of the range is idle (``BacktestResult.idle_accounts``).
        """
        names = [name for name in self._portfolios if len(self.portfolio_dates(name))]
        if not names:
            start = "the start" if self._start is None else f"{self._start:%Y-%m-%d}"
            end = "the end of the data" if self._end is None else f"{self._end:%Y-%m-%d}"
            untested = self.untested_account_days()
            held = "" if untested.empty else (
                f" ({untested['account'].nunique():,} account(s) hold a book there but the market lacks its data: "
                f"{'; '.join(dict.fromkeys(untested['reason']))})")
            raise DataError(f"no member account holds a book on a margin date between {start} and {end}{held}")
        return names

    def untested_account_days(self) -> pd.DataFrame:
        """The dates in the range a member account holds a book on but is not tested on, and why.

        One row per (account, reason) (:meth:`AccountBook.untested_rows
        <marginlab.models.AccountBook.untested_rows>`: the market lacks the data of the book held then, e.g.
        ``"no BTC implied vol"``): ``account_days`` (rows), ``first`` and ``last`` date, and the account's
        ``held_days`` (all rows in the range it holds a book on, tested or not, but the market's last
        ``mpor_days`` rows). Accounts in the order given; empty when every held date is tested.
        """
        m, h = self.market, self.mpor_days
        n = len(m.index)
        in_range = np.ones(n, dtype=bool)
        if self._start is not None:
            in_range &= m.index >= self._start
        if self._end is not None:
            in_range &= m.index <= self._end
        in_range[max(n - h, 0):] = False  # no row t + h: nothing can be tested there
        records = []
        for name, book in self._portfolios.items():
            if not isinstance(book, AccountBook):
                continue
            why = book.untested_rows(m, h)
            why = why[in_range[why.index.to_numpy()]]
            if why.empty:
                continue
            held = int((book.held(m) & in_range).sum())
            for reason, rows in why.groupby(why, sort=False):
                records.append({"account": name, "reason": reason, "account_days": len(rows),
                                "first": m.index[rows.index[0]], "last": m.index[rows.index[-1]], "held_days": held})
        return pd.DataFrame(records, columns=UNTESTED_COLUMNS)

    def applies(self, label: str, name: str) -> bool:
        """True when model ``label`` applies to (``applies_to``) every book portfolio ``name`` holds on its dates.

        The engine margins a portfolio with a model only where this holds (else the pair is
        ``BacktestResult.not_applicable``).
        """
        model = self._models[label]
        return all(model.applies_to(b) for b in self.book_path(name).positions)

    def context(self) -> RunContext:
        """A fresh run context with this backtest's settings (every task gets its own, with the same numbers)."""
        return RunContext(mpor=int(self.mpor_days), seed=int(self.seed))

    def tasks(self, books_per_task: int | None = None, split_models: bool = True) -> list[Task]:
        """The run split into independent tasks: models sharing an estimation x groups of portfolios.

        Models with the same :attr:`~marginlab.models.MarginModel.estimation_key` (e.g. FHS VaR and ES on
        the same filter) run in one task so their fits are computed once; ``books_per_task`` splits the
        portfolios into groups of that size (all in one group by default). ``split_models=False`` runs every
        model in each group's task instead (for many books: each book's positions and realised P&L are then
        built by one task only). Results do not depend on the split: estimates are keyed by content and
        random draws by seed and date.
        """
        groups: dict[object, list[str]] = {}
        for label, model in self._models.items():
            key = model.estimation_key
            groups.setdefault(("own", label) if key is None or not split_models else key, []).append(label)
        if not split_models:
            groups = {"all": list(self._models)}
        names = self.replayed()
        size = len(names) if books_per_task is None else int(books_per_task)
        if size < 1:
            raise ValueError(f"books_per_task must be >= 1, got {books_per_task!r}")
        chunks = [tuple(names[k:k + size]) for k in range(0, len(names), size)]
        return [Task(models=tuple(labels), books=chunk) for labels in groups.values() for chunk in chunks]

    def book_path(self, name: str) -> _BookPath:
        """The portfolio over its margin dates (positions, realised MPOR P&L, notional, rolls), built once per process.

        Every task holding the portfolio uses the same path: the positions and the realised P&L do not depend
        on the model, so they are computed on the first request in this process (on a Dask worker: once per
        worker) and kept for the run.
        """
        path = self._paths.get(name)
        if path is None:
            path = self._paths[name] = self._book(name, self.portfolio_dates(name))
        return path

    def _book(self, name: str, dates: pd.DatetimeIndex) -> _BookPath:
        p = self._portfolios[name]
        positions, pnl, notional = [], np.empty(len(dates)), np.empty(len(dates))
        changed = np.zeros(len(dates), dtype=bool)
        previous: frozenset | None = None
        where = f"{'account' if isinstance(p, AccountBook) else 'portfolio'} {name!r}"
        for k, t in enumerate(dates):
            book = p.positions_at(t, self.market)
            for item, pos in enumerate(book):
                if not isinstance(pos, Position):
                    raise ValueError(f"{where}: item {item} at {t:%Y-%m-%d} is not a Position")
                if pos.instrument.asset not in self.market.assets:
                    raise DataError(f"{where}: item {item} ({pos.instrument.label}) has unknown asset "
                                    f"{pos.instrument.asset!r}; the market data has {self.market.assets}")
            instruments = frozenset(pos.instrument for pos in book)
            changed[k] = previous is not None and instruments != previous
            previous = instruments
            # one Book per distinct list of positions (a fixed book is the same object every date): its arrays
            # are built once and shared by every model
            book = positions[-1] if positions and positions[-1] == tuple(book) else Book(book)
            positions.append(book)
            i = self.market.loc_of(t)
            seen = int(self.market.observation_ns[i])  # options and futures expired by t are not held (settled)
            notional[k] = sum(abs(pos.quantity) * self.market.price_array[i, self.market.asset_index[
                pos.instrument.asset]] for pos in book if pos.held_at(seen))
            pnl[k] = realised_pnl(book, self.market, t, self.mpor_days, self.include_funding, where=where)
        return _BookPath(dates, positions, pnl, notional, changed)

    def run_task(self, task: Task) -> TaskResult:
        """Run one task (its models on its portfolios) with a fresh run context: a pure function of the task.

        The task runs with one BLAS thread: a multi-threaded BLAS splits long dot products between threads,
        so its sums (e.g. in the filter fits' optimiser) would depend on the thread count of the process
        (Dask workers run with one), and results would differ between executors in the last bits.
        """
        with threadpool_limits(limits=1, user_api="blas"):
            return self._run_task(task)

    def _run_task(self, task: Task) -> TaskResult:
        context = self.context()
        books = {name: self.book_path(name) for name in task.books}
        models = {label: self._models[label] for label in task.models}
        out = TaskResult(task=task)
        active: dict[str, dict[str, dict[pd.Timestamp, int]]] = {}
        forecasts: dict[tuple[str, str], np.ndarray] = {}  # (label, book) -> rows of margin, var, es, pit, mc_se
        standalone: dict[tuple[str, str], np.ndarray] = {}  # (label, book) -> sum of the legs' own margins
        for label in models:
            active[label] = {}
            for name, path in books.items():
                if self.applies(label, name):
                    active[label][name] = {t: k for k, t in enumerate(path.dates)}
                    forecasts[(label, name)] = np.full((len(path.dates), 5), np.nan)
                    standalone[(label, name)] = np.full(len(path.dates), np.nan)
                else:
                    out.not_applicable.append((name, label))
            out.seconds[label] = 0.0
        # dates outer, models inner: each model's state is warm-started from its previous date,
        # and models sharing an estimation (e.g. FHS VaR and ES) reuse it within the date.
        states: dict[str, object] = {label: None for label in models}
        for t in sorted(set().union(*(set(path.dates) for path in books.values()))):
            legs: dict[str, dict[Position, float]] = {}  # per model, this date's standalone leg margins
            for label, model in models.items():
                holders = [name for name, pos in active[label].items() if t in pos]
                if not holders:
                    continue
                tm = time.perf_counter()
                states[label] = model.fit(self.market, t, warm_start=states[label], context=context)
                for name in holders:
                    k = active[label][name][t]
                    path = books[name]
                    fc = model.forecast(states[label], path.positions[k], self.market, t, book=name)
                    forecasts[(label, name)][k] = fc.margin, fc.var, fc.es, fc.pit(path.pnl[k]), fc.mc_se
                    if self.standalone_legs:
                        standalone[(label, name)][k] = self._standalone_margin(
                            model, states[label], path.positions[k], t, name, fc.margin, legs.setdefault(label, {}))
                out.seconds[label] += time.perf_counter() - tm
        for label in models:
            if isinstance(states[label], HasDiagnostics) and states[label].diagnostics():
                out.diagnostics[label] = states[label].diagnostics()
            for name in active[label]:
                path, x = books[name], forecasts[(label, name)]
                m = x[:, 0]
                if (m < 0).any() or np.isinf(m).any():
                    bad = path.dates[(m < 0) | np.isinf(m)]
                    raise ValueError(f"model {label!r} returned an invalid margin for portfolio {name!r} at "
                                     f"{bad[:3].tolist()}")
                ok = np.isfinite(m)
                if (~ok).any():
                    out.warmup[(name, label)] = int((~ok).sum())
                if not ok.any():
                    continue
                pnl = path.pnl[ok]
                out.frames[(label, name)] = pd.DataFrame({
                    "date": path.dates[ok], "portfolio": name, "model": label, "margin": m[ok], "pnl": pnl,
                    "loss": 0.0 - pnl, "breach": cv.exceptions(pnl, m[ok]), "var": x[ok, 1], "es": x[ok, 2],
                    "pit": x[ok, 3], "notional": path.notional[ok], "book_changed": path.changed[ok],
                    "mc_se": x[ok, 4]})
                if self.standalone_legs:
                    out.frames[(label, name)]["standalone_margin"] = standalone[(label, name)][ok]
        out.estimates = context.table("estimates")
        return out

    def _standalone_margin(self, model: MarginModel, state: object, book: Book, t: pd.Timestamp, name: str,
                           margin: float, done: dict[Position, float]) -> float:
        """Sum of the margins of the book's positions, each margined alone (NaN if one has none yet).

        Each leg is passed as its own book, named ``"<portfolio> :: <instrument>"`` for models that
        keep something per book. A position held by several books on a date (the same instrument and
        quantity) is margined once per model and date (``done``); a one-position book is its own leg.
        """
        if len(book) == 1:
            return float(margin)
        legs = self.book_path(name).legs
        total = 0.0
        for pos in book:
            if pos not in done:
                leg = legs.get(pos)
                if leg is None:  # one Book per position over the run: its arrays are built once
                    leg = legs[pos] = (Book((pos,)), f"{name} :: {pos.instrument.label}")
                done[pos] = model.forecast(state, leg[0], self.market, t, book=leg[1]).margin
            total += done[pos]
        return float(total)

    def run(self, executor: Executor | None = None, books_per_task: int | None = None,
            split_models: bool = True) -> BacktestResult:
        """Replay every portfolio through every model and return the result.

        Parameters
        ----------
        executor : object with ``map(function, items) -> list``, optional
            Runs the tasks (:meth:`tasks`); serially in this process by default
            (:mod:`marginlab.validation.executors`: serial, local or remote Dask). The result is the same
            whichever executor runs them.
        books_per_task : int, optional
            Portfolios per task (all in one task by default).
        split_models : bool
            One task per estimation group and portfolio group (default), or one per portfolio group with
            every model (see :meth:`tasks`).
        """
        t0 = time.perf_counter()
        # the costliest tasks first (books x models' relative_cost), so that workers do not wait on one last long task
        tasks = sorted(self.tasks(books_per_task, split_models), key=self._task_weight, reverse=True)
        results = (executor if executor is not None else SerialExecutor()).map(self.run_task, tasks)
        if len(results) != len(tasks):
            raise RuntimeError(f"the executor returned {len(results)} results for {len(tasks)} tasks")
        return self._merge(results, time.perf_counter() - t0)

    def _task_weight(self, task: Task) -> float:
        """A rough cost of a task: books x the sum of its models' :attr:`~marginlab.models.MarginModel.relative_cost`.

        A model sharing the estimation of one before it in the task (FHS ES beside FHS VaR, an overlay beside
        the model it wraps) counts a tenth: it reuses the fits and scenarios.
        """
        seen: set = set()
        cost = 0.0
        for label in task.models:
            model = self._models[label]
            key = model.estimation_key
            cost += model.relative_cost * (0.1 if key is not None and key in seen else 1.0)
            if key is not None:
                seen.add(key)
        return len(task.books) * cost

    def _merge(self, results: Sequence[TaskResult], elapsed: float) -> BacktestResult:
        """One result from the tasks' results, in the order models and portfolios were given."""
        replayed = self.replayed()
        live = set(replayed)
        untested = self.untested_account_days()
        untestable = set(untested["account"]) - live  # held in the range, never with the data of the book
        frames, not_applicable, warmup, diagnostics, seconds, estimates = {}, set(), {}, {}, {}, []
        for r in results:
            frames.update(r.frames)
            not_applicable.update(r.not_applicable)
            warmup.update(r.warmup)
            for label, diag in r.diagnostics.items():
                diagnostics.setdefault(label, {})
                for k, v in diag.items():
                    diagnostics[label][k] = diagnostics[label].get(k, 0) + v
            for label, sec in r.seconds.items():
                seconds[label] = seconds.get(label, 0.0) + sec
            estimates.append(r.estimates)
        order = [(label, name) for label in self._models for name in self._portfolios]
        pieces = [frames[key] for key in order if key in frames]
        frame = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=COLUMNS)
        est = pd.concat([e for e in estimates if len(e)], ignore_index=True) if any(len(e) for e in estimates) \
            else pd.DataFrame()
        if len(est):
            # a fit needed by portfolios of several tasks is computed by each (identically): keep one
            est = est.drop_duplicates(["estimation_key", "date", "asset", "window_start"]).sort_values(
                ["estimation_key", "asset", "date", "window_start"], kind="stable").reset_index(drop=True)
            for label, model in self._models.items():
                # estimated models: counts from the (de-duplicated) estimates, whichever tasks fitted them
                rows = est[est["estimation_key"] == repr(model.estimation_key)]
                if len(rows):
                    status = rows["status"].value_counts()
                    diagnostics[label] = {"fits": len(rows), **{k: int(status.get(k, 0))
                                                                for k in ("failed", "boundary", "reused")}}
        columns = COLUMNS + (["standalone_margin"] if self.standalone_legs else [])
        if self.standalone_legs and "standalone_margin" not in frame:
            frame["standalone_margin"] = np.nan
        return BacktestResult(
            frame=frame[columns], mpor_days=self.mpor_days, models=dict(self._models),
            not_applicable=[(name, label) for label, name in order if (name, label) in not_applicable],
            warmup={(name, label): warmup[(name, label)] for label, name in order if (name, label) in warmup},
            diagnostics={label: diagnostics[label] for label in self._models if label in diagnostics},
            elapsed_s=elapsed, model_seconds={label: seconds.get(label, 0.0) for label in self._models},
            estimates=est, portfolios=dict(self._portfolios), freq=self.market.freq,
            accounts=[n for n in replayed if isinstance(self._portfolios[n], AccountBook)],
            idle_accounts=[n for n, p in self._portfolios.items()
                           if isinstance(p, AccountBook) and n not in live and n not in untestable],
            untestable_accounts=[n for n in self._portfolios if n in untestable],
            untested_account_days=untested)


@dataclass(frozen=True)
class Task:
    """One independent piece of a backtest: the models (labels) to run on the portfolios (names)."""

    models: tuple[str, ...]
    books: tuple[str, ...]


@dataclass
class TaskResult:
    """What a task returns: frame pieces per (model, portfolio) and the run metadata of its part."""

    task: Task
    frames: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    warmup: dict[tuple[str, str], int] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    estimates: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class _BookPath:
    """A portfolio over its margin dates: positions held, realised MPOR P&L, gross notional, roll flags."""

    dates: pd.DatetimeIndex
    positions: list[Book]
    pnl: np.ndarray
    notional: np.ndarray
    changed: np.ndarray
    #: position -> (the position alone as a Book, its name "<portfolio> :: <instrument>"), built on first use
    legs: dict[Position, tuple[Book, str]] = field(default_factory=dict)


def _coverage_of_book(inputs: list[dict[str, Any]]) -> list[cv.CoverageReport]:
    """The coverage tests of one book's pairs, in order (a task of :meth:`BacktestResult.coverage_reports`).

    A book's pairs share their sample length, so the simulated nulls that depend on it alone (kept per
    process, see :mod:`~marginlab.validation.coverage`) are drawn once per task rather than once per pair
    and worker.
    """
    return [cv.backtest(**x) for x in inputs]


class Executor(Protocol):
    """Runs tasks: ``map(function, items)`` returns ``[function(item) for item in items]`` in order."""

    def map(self, function: Callable, items: Sequence) -> list:
        """Apply ``function`` to every item; results in the order of ``items``."""
        ...


@dataclass
class BacktestResult:
    """Long-format backtest rows (``date, portfolio, model, margin, pnl, loss, breach``) and their analysis."""

    frame: pd.DataFrame
    mpor_days: int
    models: dict[str, MarginModel] = field(default_factory=dict)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    warmup: dict[tuple[str, str], int] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, int]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    model_seconds: dict[str, float] = field(default_factory=dict)
    #: one row per volatility-filter fit: date, filter, lookback, asset, window, parameters, loglik, status
    estimates: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: the portfolios that are member accounts (:class:`~marginlab.models.AccountBook`), in run order
    accounts: list[str] = field(default_factory=list)
    #: member accounts holding no book on any date of the run: not replayed (not in ``accounts``)
    idle_accounts: list[str] = field(default_factory=list)
    #: member accounts holding a book in the run but never with the data it needs: not replayed, not idle
    untestable_accounts: list[str] = field(default_factory=list)
    #: held account dates not tested, per (account, reason): :meth:`Backtest.untested_account_days`
    untested_account_days: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNTESTED_COLUMNS))
    #: the portfolios replayed (name -> Portfolio), e.g. for stress tests of the same books
    portfolios: dict[str, Portfolio] = field(default_factory=dict)
    #: the market panel's sampling frequency ("1d" or "1h"): how dates are written and n-day windows counted
    freq: str = "1d"

    @property
    def per_day(self) -> float:
        """Observations a day of the panel (1 on daily data, 24 on hourly): the n-day windows of the metrics."""
        return float(pd.Timedelta(days=1) / frequency_delta(self.freq))

    def to_frame(self) -> pd.DataFrame:
        """The long-format rows (a copy)."""
        return self.frame.copy()

    def pairs(self):
        """Iterate ``((portfolio, model), rows indexed by date)`` in first-seen order."""
        for key, rows in self.frame.groupby(["portfolio", "model"], sort=False):
            yield key, rows.set_index("date")

    def breaches(self) -> pd.DataFrame:
        """Breach counts and rates per portfolio (rows) x model (columns), each pair on its own dates."""
        g = self.frame.groupby(["portfolio", "model"], sort=False)["breach"]
        out = pd.DataFrame({"observations": g.size(), "breaches": g.sum(), "breach_rate": g.mean()})
        return out

    def common_dates(self, portfolio: str) -> pd.DatetimeIndex:
        """Dates on which every model with margins for ``portfolio`` has one (the comparison sample)."""
        rows = self.frame[self.frame["portfolio"] == portfolio]
        if rows.empty:
            raise ValueError(f"no rows for portfolio {portfolio!r}; portfolios: {sorted(set(self.frame['portfolio']))}")
        counts = rows.groupby("date").size()
        return pd.DatetimeIndex(counts.index[counts.to_numpy() == rows["model"].nunique()], name="date")

    def _rows(self, portfolio: str, model: str, sample: str) -> pd.DataFrame:
        if sample not in ("common", "own"):
            raise ValueError(f"sample must be 'common' (dates shared by the book's models) or 'own', got {sample!r}")
        rows = self.frame[(self.frame["portfolio"] == portfolio) & (self.frame["model"] == model)]
        if rows.empty:
            raise ValueError(f"no rows for portfolio {portfolio!r} and model {model!r}")
        rows = rows.set_index("date")
        return rows.loc[rows.index.intersection(self.common_dates(portfolio))] if sample == "common" else rows

    def tail_prob(self, model: str, default: float = 0.01) -> float:
        """The tail probability ``model`` is tested at: its own (``MarginModel.tail_prob``) or ``default``."""
        own = self.models[model].tail_prob if model in self.models else None
        return float(default if own is None else own)

    def coverage_report(self, portfolio: str, model: str, p: float | None = None, default_p: float = 0.01,
                        sample: str = "common") -> cv.CoverageReport:
        """Every coverage test of one pair (:func:`marginlab.validation.coverage.backtest`).

        The series tested is the model's VaR at its own level (``p`` = its tail probability, or
        ``default_p`` for rule-based models, unless ``p`` is given): for a VaR model that is the margin;
        for an ES model the VaR at the ES level, with the ES backtests run on the margin (the ES). The PIT
        tests run where the model forecasts a distribution. ``sample="common"`` restricts the pair to the
        dates every model of the book has a margin (the default, for comparisons); ``"own"`` uses all of
        the pair's dates. MPOR > 1: non-overlapping sub-samples combined by Bonferroni. The report's
        ``disclosure`` (CPMI-IOSCO PQD 6.5) counts breaches of the margin held (the ``breach`` column), for an
        ES model its ES.
        """
        return cv.backtest(**self._coverage_inputs(portfolio, model, p, default_p, sample))

    def coverage_reports(self, pairs: Sequence[tuple[str, str]], p: float | None = None, default_p: float = 0.01,
                         sample: str = "common", executor: Executor | None = None
                         ) -> dict[tuple[str, str], cv.CoverageReport]:
        """:meth:`coverage_report` of each ``(portfolio, model)`` pair, the tests run on ``executor`` if given.

        On an executor each book's pairs are one task (they share the book's sample length, whose simulated
        nulls a worker then draws once), the reports returned in the order of ``pairs``.

        Each pair's tests are a pure function of its series (their simulations have fixed seeds), so the
        reports are the same whichever executor (:mod:`marginlab.validation.executors`) runs them; the series
        are cut here, so a pair with too few dates raises here, naming it.
        """
        # each book's common dates computed once, not once per model; only the books asked for
        every = self._pair_rows(sample, {pf for pf, _ in pairs})
        inputs = [self._coverage_inputs(pf, md, p, default_p, sample, every.get((pf, md))) for pf, md in pairs]
        if executor is None or len(inputs) < 2:
            return dict(zip(pairs, _coverage_of_book(inputs), strict=True))
        books: dict[str, list[int]] = {}  # one task per book: its pairs' positions in ``pairs``
        for k, (pf, _) in enumerate(pairs):
            books.setdefault(pf, []).append(k)
        run: list[Any] = [None] * len(pairs)
        for at, reports in zip(books.values(), executor.map(_coverage_of_book, [[inputs[k] for k in at]
                                                                                 for at in books.values()]),
                               strict=True):
            for k, report in zip(at, reports, strict=True):
                run[k] = report
        return dict(zip(pairs, run, strict=True))

    def _coverage_inputs(self, portfolio: str, model: str, p: float | None, default_p: float, sample: str,
                         rows: pd.DataFrame | None = None) -> dict[str, Any]:
        """The arguments of :func:`coverage.backtest <marginlab.validation.coverage.backtest>` for one pair.

        ``rows``: the pair's rows as :meth:`_rows` gives them, when already cut (:meth:`_pair_rows`).
        """
        rows = self._rows(portfolio, model, sample) if rows is None else rows
        if len(rows) < self.mpor_days + 1:
            raise ValueError(f"portfolio {portfolio!r} / model {model!r}: {len(rows)} margin date(s) in the "
                             f"{sample} sample, too few for coverage tests at an MPOR of {self.mpor_days} (at least "
                             f"{self.mpor_days + 1} needed); widen the date range")
        level = float(p) if p is not None else self.tail_prob(model, default_p)
        var = _tested_var(rows)
        is_es = model in self.models and self.models[model].margin_measure == "es"
        pit = rows["pit"] if rows["pit"].notna().all() else None
        return {"pnl": rows["pnl"], "var": var, "es": rows["margin"] if is_es else None, "p": level, "pit": pit,
                "mpor_days": self.mpor_days, "margin": rows["margin"]}

    def coverage(self, p: float | None = None, default_p: float = 0.01, sample: str = "common",
                 portfolios: Sequence[str] | None = None,
                 reports: Mapping[tuple[str, str], cv.CoverageReport] | None = None) -> pd.DataFrame:
        """Headline coverage tests per pair (:meth:`CoverageReport.headline`), each at its model's own level.

        Columns: ``sample`` and ``p`` tested, observations, breaches, expected breaches, breach rate, the exact
        two-sided Kupiec p-value and its direction ("too few" = over-margining), the exact one-sided "too many
        breaches" p-value, the exact Christoffersen conditional-coverage and independence p-values and the
        independence test's direction ("clustered" or "dispersed"), the Basel zone of the last 250
        observations (all when fewer; per sub-sample, Bonferroni-combined, when the MPOR is above one
        observation: ``reports.verdict.ZONE_LEGEND``), the worst 250-observation window and its calibrated
        p-value, and for ES models the Acerbi-Szekely Z2 and McNeil-Frey p-values. See :meth:`coverage_report`;
        ``reports`` (``(portfolio, model) -> CoverageReport``, computed with the same arguments) are used
        instead of running the tests again. ``portfolios`` restricts the table to those books (e.g. the
        reference books of a run with thousands of member accounts, whose account-level view is
        :meth:`accounts_summary`).
        """
        records = []
        if self.frame.empty:
            raise ValueError("no margin to test: every model was in its warm-up (history shorter than its min_obs) "
                             "or not applicable on every date; widen the date range")
        for portfolio, model in self._pairs(portfolios):
            rep = reports[(portfolio, model)] if reports is not None and (portfolio, model) in reports else \
                self.coverage_report(portfolio, model, p=p, default_p=default_p, sample=sample)
            es_tests = {f"{key}_pvalue": rep.tests[key].pvalue if key in rep.tests else float("nan")
                        for key in ("acerbi_szekely_z2", "mcneil_frey")}
            records.append({"portfolio": portfolio, "model": model, "sample": sample, **rep.headline(), **es_tests})
        if not records:
            return pd.DataFrame(columns=["portfolio", "model", "sample", *COVERAGE_COLUMNS]).set_index(
                ["portfolio", "model"])
        return pd.DataFrame(records).set_index(["portfolio", "model"])

    def efficiency(self, sample: str = "common", portfolios: Sequence[str] | None = None) -> pd.DataFrame:
        """Every metric of :data:`~marginlab.validation.metrics.METRICS` per pair (common dates by default)."""
        every = self._pair_rows(sample, portfolios)
        records = [{"portfolio": pf, "model": md, "sample": sample, **compute_metrics(rows, per_day=self.per_day)}
                   for (pf, md), rows in every.items()]
        return pd.DataFrame(records, columns=["portfolio", "model", "sample", *(m.key for m in METRICS)]
                            ).set_index(["portfolio", "model"])

    def _pairs(self, portfolios: Sequence[str] | None) -> list[tuple[str, str]]:
        pairs = list(self.frame.groupby(["portfolio", "model"], sort=False).groups)
        if portfolios is None:
            return pairs
        keep = set(portfolios)
        return [(pf, md) for pf, md in pairs if pf in keep]

    # ------------------------------------------------------------------ account-level view (PQD 6.5)

    def exceptions(self, rows: pd.DataFrame | None = None) -> pd.Series:
        """The exception of every row (default: every row of :attr:`frame`) as the coverage tests count it.

        ``loss > tested VaR`` (:func:`coverage.exceptions <marginlab.validation.coverage.exceptions>`), the
        tested VaR being the model's VaR at its own level where the pair has one on every date (for an ES
        model: its VaR at the ES level, not the ES margin), else the margin (rule-based models, overlays):
        the series :meth:`coverage_report` tests. Boolean Series on ``rows``' index.
        """
        rows = self.frame if rows is None else rows
        return cv.exceptions(rows["pnl"], _tested_var(rows))

    def _account_rows(self, portfolios: Sequence[str] | None) -> pd.DataFrame:
        names = list(self.accounts) if portfolios is None else list(portfolios)
        if not names:
            raise ValueError("no member accounts in this run (give [accounts] in the study, or AccountBook "
                             "portfolios to the Backtest); pass portfolios=[...] to treat other books as accounts")
        unknown = sorted(set(names) - set(self.frame["portfolio"]) - {pf for pf, _ in self.not_applicable}
                         - {pf for pf, _ in self.warmup})
        if unknown:
            raise ValueError(f"no rows for portfolio(s) {unknown[:3]}")
        rows = self.frame[self.frame["portfolio"].isin(names)]
        return rows.assign(exception=self.exceptions(rows),
                           shortfall=(rows["loss"] - rows["margin"]).where(rows["breach"], 0.0))

    def account_breach_rates(self, default_p: float = 0.01, portfolios: Sequence[str] | None = None) -> pd.DataFrame:
        """Per account and model: account-days, breaches, breach rate, coverage, largest shortfall, p-value.

        ``held_days_untested``: the dates the account holds a book on but is not tested on, the market lacking
        that book's data (:attr:`untested_account_days`; the same for each model).

        ``breaches`` are counted as the verdict matrix counts them (:meth:`exceptions`): losses above the
        model's VaR at its own level p, which is the margin for VaR and rule-based models and, for an ES
        model, its VaR at the ES level (an ES 97.5% margin is exceeded far less often than 2.5%: testing its
        exceedances at p = 0.025 would be lenient by construction); ``margin_breaches`` counts loss > margin.
        ``coverage`` = 1 - breach rate; ``largest_shortfall`` = max(loss - margin) over the account's
        margin breaches (quote currency, 0 without one) and its date; ``too_many_pvalue``: the verdict
        matrix's exact one-sided test of too many breaches (:func:`coverage.too_many_pvalue
        <marginlab.validation.coverage.too_many_pvalue>`) on the account's own rows in date order, at p the
        model's tail probability (``default_p`` for rule-based models): P(X >= breaches) under
        Binomial(account-days, p) when the MPOR is one observation; above that, on each of the h
        non-overlapping sub-samples (every h-th row), Bonferroni-combined, as for a book (the overlapping
        windows are not independent), NaN for an account with too few rows for a sub-sample of 2. An account
        holding a reference book's positions gets that book's p-value. For that account alone: many accounts
        are tested, expect about p-value x accounts of them below any threshold by chance. Index (account,
        model).
        """
        rows = self._account_rows(portfolios)
        g = rows.groupby(["portfolio", "model"], sort=False)
        out = pd.DataFrame({"account_days": g.size(), "breaches": g["exception"].sum().astype(int),
                            "margin_breaches": g["breach"].sum().astype(int),
                            "largest_shortfall": g["shortfall"].max()})
        idx = rows.loc[g["shortfall"].idxmax(), ["portfolio", "model", "date"]].set_index(["portfolio", "model"])
        out["largest_shortfall_date"] = idx["date"].where(out["largest_shortfall"] > 0)
        out["breach_rate"] = out["breaches"] / out["account_days"]
        out["coverage"] = 1.0 - out["breach_rate"]
        p = np.array([self.tail_prob(m, default_p) for m in out.index.get_level_values("model")])
        out["p"] = p
        hits = {key: h.to_numpy() for key, h in rows.sort_values("date", kind="stable")
                .groupby(["portfolio", "model"], sort=False)["exception"]}
        out["too_many_pvalue"] = [cv.too_many_pvalue(hits[key], level, self.mpor_days)
                                  for key, level in zip(out.index, p, strict=True)]
        untested = self.untested_account_days.groupby("account")["account_days"].sum()
        out["held_days_untested"] = (out.index.get_level_values("portfolio").map(untested).fillna(0)
                                     .to_numpy().astype(int))
        out.index = out.index.set_names(["account", "model"])
        return out[["account_days", "held_days_untested", "breaches", "breach_rate", "coverage", "p",
                    "too_many_pvalue", "margin_breaches", "largest_shortfall", "largest_shortfall_date"]]

    def untested_text(self, limit: int = 3) -> str:
        """One sentence on the held account dates not tested (empty when there are none), for the report and CLI.

        The untested account-days and accounts in total, the first ``limit`` accounts named with their held
        days, reasons and spans (e.g. "82 of 151 held days of A (no BTC implied vol, 2021-01-01 ..
        2021-03-23)"), and the accounts held but never testable (not idle: :attr:`untestable_accounts`).
        """
        u = self.untested_account_days
        if u.empty:
            return ""
        per = u.groupby("account", sort=False).agg(days=("account_days", "sum"), held=("held_days", "first"))
        names = []
        for account, r in u.groupby("account", sort=False):
            if len(names) == limit:
                break
            spans = "; ".join(f"{x['reason']}, {x['first']:%Y-%m-%d %H:%M} .. {x['last']:%Y-%m-%d %H:%M}"
                              .replace(" 00:00", "") for _, x in r.iterrows())
            names.append(f"{per.loc[account, 'days']:,} of {per.loc[account, 'held']:,} held days of {account} "
                         f"({spans})")
        more = f"; {len(per) - limit:,} more account(s)" if len(per) > limit else ""
        never = (f" Never testable (held, never with the data; not in the account tables, not idle): "
                 f"{len(self.untestable_accounts):,} account(s), {', '.join(self.untestable_accounts[:limit])}"
                 f"{', ...' if len(self.untestable_accounts) > limit else ''}." if self.untestable_accounts else "")
        return (f"Not tested: {int(per['days'].sum()):,} held account-days of {len(per):,} account(s), where the "
                f"market lacks the data of the book held (prices at t and t + MPOR, implied vol for options): "
                f"{'; '.join(names)}{more}.{never}")

    def accounts_summary(self, default_p: float = 0.01, portfolios: Sequence[str] | None = None) -> pd.DataFrame:
        """The account-level back-test table per model (CPMI-IOSCO PQD 6.5 style).

        Columns: ``accounts``, ``account_days``, ``breaches`` (losses above the VaR at the model's level p, as
        in the verdict matrix: :meth:`account_breach_rates`), ``breach_rate`` (pooled over account-days),
        ``target_coverage`` (1 - p), ``coverage`` (pooled, 1 - breach rate), ``accounts_with_breach`` (>= 1
        breach) and their share, ``margin_breaches`` (loss > margin; the breaches for all but ES models),
        ``largest_shortfall`` (max loss - margin over every margin breach, quote currency)
        with its account and date, ``median_account_coverage`` and ``min_account_coverage`` (coverage by
        account), ``accounts_below_target`` (accounts whose own coverage is below 1 - p) and
        ``accounts_rejected_5pct`` (accounts whose too-many-breaches p-value,
        :meth:`account_breach_rates`, is below 5%); ``held_days_untested`` (account-days held without the
        data of the book, over every account: :attr:`untested_account_days`) and ``accounts_untestable``
        (accounts held but never testable, not in the other columns). Index: model.
        """
        per = self.account_breach_rates(default_p, portfolios).reset_index()
        untested, never = self.untested_account_days, self.untestable_accounts
        if portfolios is not None:
            untested = untested[untested["account"].isin(list(portfolios))]
            never = [n for n in never if n in set(portfolios)]
        records = []
        for model, r in per.groupby("model", sort=False):
            worst = r.loc[r["largest_shortfall"].idxmax()]
            n_days, n_breach = int(r["account_days"].sum()), int(r["breaches"].sum())
            p = float(r["p"].iloc[0])
            records.append({
                "model": model, "accounts": len(r), "account_days": n_days, "breaches": n_breach,
                "breach_rate": n_breach / n_days, "target_coverage": 1.0 - p, "coverage": 1.0 - n_breach / n_days,
                "accounts_with_breach": int((r["breaches"] > 0).sum()),
                "share_with_breach": float((r["breaches"] > 0).mean()),
                "margin_breaches": int(r["margin_breaches"].sum()),
                "largest_shortfall": float(worst["largest_shortfall"]),
                "largest_shortfall_account": worst["account"] if worst["largest_shortfall"] > 0 else None,
                "largest_shortfall_date": worst["largest_shortfall_date"],
                "median_account_coverage": float(r["coverage"].median()),
                "min_account_coverage": float(r["coverage"].min()),
                "accounts_below_target": int((r["coverage"] < 1.0 - p).sum()),
                "accounts_rejected_5pct": int((r["too_many_pvalue"] < 0.05).sum()),
                "held_days_untested": int(untested["account_days"].sum()),
                "accounts_untestable": len(never)})
        return pd.DataFrame(records).set_index("model")

    def account_breach_distribution(self, default_p: float = 0.01, portfolios: Sequence[str] | None = None,
                                    quantiles: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
                                    ) -> pd.DataFrame:
        """Quantiles of the per-account breach rates, per model (rows: model; columns: the quantiles)."""
        per = self.account_breach_rates(default_p, portfolios).reset_index()
        q = per.groupby("model", sort=False)["breach_rate"].quantile(list(quantiles)).unstack()
        q.columns = [f"q{100 * c:g}" for c in q.columns]
        return q

    def worst_accounts(self, n: int = 10, by: str = "largest_shortfall", default_p: float = 0.01,
                       portfolios: Sequence[str] | None = None) -> pd.DataFrame:
        """The ``n`` worst accounts per model by ``"largest_shortfall"``, ``"breach_rate"`` or ``"too_many_pvalue"``."""
        if by not in ("largest_shortfall", "breach_rate", "too_many_pvalue"):
            raise ValueError(f"by must be 'largest_shortfall', 'breach_rate' or 'too_many_pvalue', got {by!r}")
        per = self.account_breach_rates(default_p, portfolios).reset_index()
        asc = by == "too_many_pvalue"
        out = (per.sort_values(["model", by, "account"], ascending=[True, asc, True], kind="stable")
               .groupby("model", sort=False).head(int(n)))
        order = {m: k for k, m in enumerate(dict.fromkeys(per["model"]))}
        return out.sort_values("model", key=lambda c: c.map(order), kind="stable").set_index(["model", "account"])

    def accounts_dict(self, default_p: float = 0.01, n_worst: int = 10) -> dict:
        """JSON-ready account-level view (empty without accounts).

        Keys: ``summary`` (per model), ``distribution`` (breach-rate quantiles), ``worst`` (the ``n_worst``
        accounts per model by largest shortfall), ``per_account`` rows, ``untested`` (held account dates
        not tested, per account and reason: :attr:`untested_account_days`) and ``untestable`` (accounts).
        """
        def records(frame: pd.DataFrame) -> list[dict]:
            return frame.reset_index(drop=isinstance(frame.index, pd.RangeIndex)).to_dict(orient="records")

        untested = {"untested": records(self.untested_account_days), "untestable": list(self.untestable_accounts)}
        if not self.accounts:
            return untested if self.untestable_accounts else {}
        return {**untested, "summary": records(self.accounts_summary(default_p)),
                "distribution": records(self.account_breach_distribution(default_p)),
                "worst": records(self.worst_accounts(n_worst, default_p=default_p)),
                "per_account": records(self.account_breach_rates(default_p))}

    def procyclicality(self, sample: str = "common") -> pd.DataFrame:
        """The procyclicality measures of :data:`~marginlab.validation.metrics.PROCYCLICALITY` per pair.

        Measured on the model, not on the book: margins per unit of gross notional, n-day changes only where
        the book holds the same instruments at both ends (rolls excluded), on the common dates by default
        (see :mod:`marginlab.validation.metrics`): the average margin rate, peak-to-trough ratios (sample and
        worst rolling year), the largest 1-, 5- and 30-day increases and quantiles of the daily margin calls.
        """
        records = [{"portfolio": pf, "model": md, "sample": sample, **compute_procyclicality(rows, self.per_day)}
                   for (pf, md), rows in self._pair_rows(sample).items()]
        return pd.DataFrame(records).set_index(["portfolio", "model"])

    def _pair_rows(self, sample: str = "common", portfolios: Collection[str] | None = None
                   ) -> dict[tuple[str, str], pd.DataFrame]:
        """Every pair's rows indexed by date (the book's common dates, or the pair's own), in first-seen order.

        The same rows as ``_rows`` for each pair, with each book's common dates computed once; only the pairs
        of ``portfolios`` when given (as :meth:`_pairs`).
        """
        if sample not in ("common", "own"):
            raise ValueError(f"sample must be 'common' (dates shared by the book's models) or 'own', got {sample!r}")
        out = {}
        keep = None if portfolios is None else set(portfolios)
        for pf, book in self.frame.groupby("portfolio", sort=False):
            if keep is not None and pf not in keep:
                continue
            common = self.common_dates(pf) if sample == "common" else None
            for md, rows in book.groupby("model", sort=False):
                rows = rows.set_index("date")
                out[(pf, md)] = rows.loc[rows.index.intersection(common)] if common is not None else rows
        return {key: out[key] for key in self._pairs(portfolios)}

    def overlay_bases(self) -> dict[str, str]:
        """Overlaid models of the result whose inner model is also in it: label -> label of the inner model."""
        out = {}
        for label, model in self.models.items():
            inner = getattr(model, "inner", None)
            base = next((other for other, m in self.models.items() if other != label and inner is not None
                         and type(m) is type(inner) and m == inner), None)
            if base is not None:
                out[label] = base
        return out

    def apc_tradeoff(self, sample: str = "common") -> pd.DataFrame:
        """Cost against benefit of each overlay (APC tool), side by side with the model it wraps, per book.

        For every overlaid model whose inner model is also in the result (:meth:`overlay_bases`) and every
        portfolio both have rows for: the average extra margin (quote currency and relative) and the largest
        1-, 5- and 30-day margin-rate increases without and with the overlay, and their reduction
        (:func:`~marginlab.validation.metrics.apc_tradeoff`); on the common dates by default.
        """
        records = []
        bases = self.overlay_bases()
        pairs = self._pair_rows(sample) if bases else {}
        for label, base in bases.items():
            tools = " + ".join(o.name for o in self.models[label].overlays)
            for pf, md in pairs:
                if md == label and (pf, base) in pairs:
                    records.append({"portfolio": pf, "model": label, "base_model": base, "tools": tools,
                                    **apc_tradeoff(pairs[(pf, base)], pairs[(pf, label)], self.per_day)})
        columns = ["portfolio", "model", "base_model", "tools"]
        return pd.DataFrame(records, columns=columns if not records else None).set_index(["portfolio", "model"])

    def summary(self) -> str:
        """Breaches and breach rates per portfolio x model, as text."""
        b = self.breaches().reset_index()
        b["cell"] = b.apply(lambda r: f"{int(r['breaches'])}/{int(r['observations'])} ({r['breach_rate']:.2%})",
                            axis=1)
        table = b.pivot(index="portfolio", columns="model", values="cell")
        table = table.reindex(index=list(dict.fromkeys(b["portfolio"])), columns=list(dict.fromkeys(b["model"])))
        for pf, md in self.not_applicable:
            if pf not in table.index:
                table.loc[pf] = np.nan
            table.loc[pf, md] = "n/a"
        lines = [f"Backtest: MPOR {self.mpor_days} observation(s); breaches / observations (rate); "
                 f"breach = loss > margin. {len(self.frame):,} rows in {self.elapsed_s:.1f}s."]
        with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_colwidth", 60):
            lines.append(table.fillna("").to_string())
        if self.not_applicable:
            lines.append("n/a: the model does not cover the book's instruments.")
        if self.warmup:
            lines.append("Warm-up (dates without a margin: model history shorter than its minimum): " + "; ".join(
                f"{pf} / {md}: {n}" for (pf, md), n in self.warmup.items()))
        for md, diag in self.diagnostics.items():
            lines.append(f"Estimation diagnostics, {md}: " + ", ".join(f"{k} {v}" for k, v in diag.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """JSON-ready summary: metrics per pair (reference books) and the account-level view (accounts)."""
        books = [pf for pf in self.frame["portfolio"].unique() if pf not in set(self.accounts)]
        eff = self.efficiency(portfolios=books).reset_index().to_dict(orient="records")
        return {"mpor_days": self.mpor_days, "models": {k: m.describe() for k, m in self.models.items()},
                "metrics": eff, "accounts": self.accounts_dict(),
                "metric_units": {m.key: m.unit for m in METRICS},
                "not_applicable": [list(x) for x in self.not_applicable],
                "warmup": [{"portfolio": pf, "model": md, "dates": n} for (pf, md), n in self.warmup.items()],
                "diagnostics": self.diagnostics}
