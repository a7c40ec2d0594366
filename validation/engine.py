"""The replay engine: margins at t, realised MPOR losses after t, breaches.

For every portfolio and every date t of its range the engine freezes the book
``positions_at(t)``, asks each model for its margin using data up to t, and
revalues the frozen book over the margin period of risk: ``pnl`` is the
full-revaluation P&L from t to t + ``mpor_days`` observations, ``loss = -pnl``
and ``breach = loss > margin`` (strict). A portfolio's range is the set of
dates inside ``[start, end]`` where its assets (and, for option books, implied
vols) have data at t and t + mpor_days.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.conventions import utc
from marginlab.models.base import MarginModel
from marginlab.models.instruments import Position
from marginlab.models.portfolios import Portfolio
from marginlab.models.revaluation import realised_pnl

from . import coverage as cv
from .metrics import METRICS, compute_metrics

__all__ = ["Backtest", "BacktestResult"]

COLUMNS = ["date", "portfolio", "model", "margin", "pnl", "loss", "breach"]


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
        Margin period of risk in observations (days for daily data), >= 1.
    start, end : optional
        Range of margin dates; must lie inside the market data.
    include_funding : bool
        Charge perpetual funding over the MPOR when the market has funding data.
    """

    market: MarketData
    portfolios: object
    models: object
    mpor_days: int = 1
    start: object = None
    end: object = None
    include_funding: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.market, MarketData):
            raise ValueError("Backtest: market must be a MarketData (see marginlab.datasets.load_market)")
        if not isinstance(self.mpor_days, int | np.integer) or isinstance(self.mpor_days, bool) or self.mpor_days < 1:
            raise ValueError(f"Backtest: mpor_days must be an integer >= 1, got {self.mpor_days!r}")
        self._portfolios = _portfolio_map(self.portfolios)
        self._models = _model_labels(self.models)
        idx = self.market.index
        self._start, self._end = utc(self.start), utc(self.end)
        for label, ts in (("start", self._start), ("end", self._end)):
            if ts is not None and not (idx[0] <= ts <= idx[-1]):
                raise DataError(f"Backtest: {label} {ts:%Y-%m-%d} is outside the market data "
                                f"({idx[0]:%Y-%m-%d} .. {idx[-1]:%Y-%m-%d})")
        if self._start is not None and self._end is not None and self._start > self._end:
            raise DataError(f"Backtest: start {self._start:%Y-%m-%d} is after end {self._end:%Y-%m-%d}")
        for label, model in self._models.items():
            h = getattr(model, "mpor_days", None)
            if h is not None and h != self.mpor_days:
                raise ValueError(f"model {label!r} has mpor_days={h} but the backtest's mpor_days is {self.mpor_days}; "
                                 "build the model with the backtest's MPOR")
        for name, p in self._portfolios.items():
            unknown = [a for a in p.assets if a not in self.market.assets]
            if unknown:
                raise DataError(f"portfolio {name!r}: unknown asset(s) {unknown}; the market data has "
                                f"{self.market.assets}")

    def portfolio_dates(self, name: str) -> pd.DatetimeIndex:
        """Margin dates of one portfolio (see module docstring)."""
        p = self._portfolios[name]
        m, h = self.market, self.mpor_days
        cols = [m.asset_index[a] for a in p.assets]
        ok = ~np.isnan(m.price_array[:, cols]).any(axis=1)
        if p.needs_implied_vol:
            ok &= ~np.isnan(m.vol_array[:, cols]).any(axis=1)
        ok_t = ok.copy()
        ok_t[: len(ok) - h] &= ok[h:]
        ok_t[len(ok) - h:] = False
        dates = m.index[ok_t]
        if self._start is not None:
            dates = dates[dates >= self._start]
        if self._end is not None:
            dates = dates[dates <= self._end]
        return dates

    def _book(self, name: str, dates: pd.DatetimeIndex):
        p = self._portfolios[name]
        positions, pnl = [], np.empty(len(dates))
        for k, t in enumerate(dates):
            book = p.positions_at(t, self.market)
            for item, pos in enumerate(book):
                if not isinstance(pos, Position):
                    raise ValueError(f"portfolio {name!r}: item {item} at {t:%Y-%m-%d} is not a Position")
                if pos.instrument.asset not in self.market.assets:
                    raise DataError(f"portfolio {name!r}: item {item} ({pos.instrument.label}) has unknown asset "
                                    f"{pos.instrument.asset!r}; the market data has {self.market.assets}")
            positions.append(book)
            pnl[k] = realised_pnl(book, self.market, t, self.mpor_days, self.include_funding,
                                  where=f"portfolio {name!r}")
        return positions, pnl

    def run(self) -> BacktestResult:
        """Replay every portfolio through every model and return the result."""
        t0 = time.perf_counter()
        books: dict[str, tuple[pd.DatetimeIndex, list, np.ndarray]] = {}
        for name in self._portfolios:
            dates = self.portfolio_dates(name)
            if len(dates) == 0:
                raise DataError(f"portfolio {name!r}: no date in the backtest range has the data it needs "
                                f"(assets {self._portfolios[name].assets}"
                                f"{', implied vol' if self._portfolios[name].needs_implied_vol else ''}, "
                                f"and {self.mpor_days} day(s) after)")
            positions, pnl = self._book(name, dates)
            books[name] = (dates, positions, pnl)
        all_dates = sorted(set().union(*(set(d) for d, _, _ in books.values())))
        frames, not_applicable, timings, warmup, diagnostics = [], [], {}, {}, {}
        active: dict[str, dict[str, dict]] = {}
        margins: dict[str, dict[str, np.ndarray]] = {}
        for label, model in self._models.items():
            active[label] = {}
            for name, (dates, positions, _) in books.items():
                if all(model.applies_to(b) for b in positions):
                    active[label][name] = {t: k for k, t in enumerate(dates)}
                else:
                    not_applicable.append((name, label))
            margins[label] = {name: np.full(len(books[name][0]), np.nan) for name in active[label]}
            timings[label] = 0.0
        # dates outer, models inner: each model's state is warm-started from its previous date,
        # and models sharing an estimation (e.g. FHS VaR and ES) reuse it within the date.
        states: dict[str, object] = {label: None for label in self._models}
        for t in all_dates:
            for label, model in self._models.items():
                holders = [name for name, pos in active[label].items() if t in pos]
                if not holders:
                    continue
                tm = time.perf_counter()
                states[label] = model.fit(self.market, t, warm_start=states[label])
                for name in holders:
                    k = active[label][name][t]
                    margins[label][name][k] = model.margin(states[label], books[name][1][k], self.market, t)
                timings[label] += time.perf_counter() - tm
        for label in self._models:
            diag = getattr(states[label], "diagnostics", None)
            if diag:
                diagnostics[label] = dict(diag)
            for name in active[label]:
                dates, _, pnl = books[name]
                m = margins[label][name]
                if (m < 0).any() or np.isinf(m).any():
                    bad = dates[(m < 0) | np.isinf(m)]
                    raise ValueError(f"model {label!r} returned an invalid margin for portfolio {name!r} at "
                                     f"{bad[:3].tolist()}")
                ok = np.isfinite(m)
                if (~ok).any():
                    warmup[(name, label)] = int((~ok).sum())
                if not ok.any():
                    continue
                frames.append(pd.DataFrame({"date": dates[ok], "portfolio": name, "model": label, "margin": m[ok],
                                            "pnl": pnl[ok], "loss": -pnl[ok], "breach": -pnl[ok] > m[ok]}))
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
        return BacktestResult(frame=frame[COLUMNS], mpor_days=self.mpor_days,
                              models={k: v.describe() for k, v in self._models.items()},
                              not_applicable=not_applicable, warmup=warmup, diagnostics=diagnostics,
                              elapsed_s=time.perf_counter() - t0, model_seconds=timings)


@dataclass
class BacktestResult:
    """Long-format backtest rows (``date, portfolio, model, margin, pnl, loss, breach``) and their analysis."""

    frame: pd.DataFrame
    mpor_days: int
    models: dict[str, str] = field(default_factory=dict)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    warmup: dict[tuple[str, str], int] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, int]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    model_seconds: dict[str, float] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The long-format rows (a copy)."""
        return self.frame.copy()

    def pairs(self):
        """Iterate ``((portfolio, model), rows indexed by date)`` in first-seen order."""
        for key, rows in self.frame.groupby(["portfolio", "model"], sort=False):
            yield key, rows.set_index("date")

    def breaches(self) -> pd.DataFrame:
        """Breach counts and rates per portfolio (rows) x model (columns)."""
        g = self.frame.groupby(["portfolio", "model"], sort=False)["breach"]
        out = pd.DataFrame({"observations": g.size(), "breaches": g.sum(), "breach_rate": g.mean()})
        return out

    def coverage_report(self, portfolio: str, model: str, p: float = 0.01) -> cv.CoverageReport:
        """Every coverage test of one pair (non-overlapping sub-samples when mpor_days > 1)."""
        rows = self.frame[(self.frame["portfolio"] == portfolio) & (self.frame["model"] == model)]
        if rows.empty:
            raise ValueError(f"no rows for portfolio {portfolio!r} and model {model!r}")
        rows = rows.set_index("date")
        return cv.backtest(rows["pnl"], rows["margin"].to_numpy(), p=p, mpor_days=self.mpor_days)

    def coverage(self, p: float = 0.01) -> pd.DataFrame:
        """Headline coverage tests per pair.

        Kupiec POF and Christoffersen conditional coverage with exact p-values
        (Bonferroni over the non-overlapping sub-samples when mpor_days > 1), the
        Basel zone of the last 250 observations and the worst zone of any rolling
        250-observation window.
        """
        records = []
        for (portfolio, model), rows in self.pairs():
            h = rows["breach"].to_numpy()
            sub = [h[k::self.mpor_days] for k in range(self.mpor_days) if h[k::self.mpor_days].size >= 2]
            m = len(sub)
            pof = min(cv.kupiec_pof(s, p, exact=True).pvalue for s in sub)
            cc = min(cv.christoffersen_conditional_coverage(s, p, exact=True).pvalue for s in sub)
            # Basel zones need non-overlapping outcomes: the first sub-sample when mpor_days > 1
            tl = cv.traffic_light(h if self.mpor_days == 1 else sub[0], p)
            zones = tl.rolling["zone"] if len(tl.rolling) else pd.Series([tl.zone])
            worst = "red" if (zones == "red").any() else "yellow" if (zones == "yellow").any() else "green"
            records.append({"portfolio": portfolio, "model": model, "observations": len(h),
                            "breaches": int(h.sum()), "breach_rate": float(h.mean()), "expected_rate": p,
                            "kupiec_pvalue": min(1.0, m * pof), "christoffersen_cc_pvalue": min(1.0, m * cc),
                            "traffic_light_zone": tl.zone, "worst_rolling_zone": worst})
        return pd.DataFrame(records).set_index(["portfolio", "model"])

    def efficiency(self) -> pd.DataFrame:
        """Every metric of :data:`~marginlab.validation.metrics.METRICS` per pair."""
        records = [{"portfolio": pf, "model": md, **compute_metrics(rows)} for (pf, md), rows in self.pairs()]
        return pd.DataFrame(records).set_index(["portfolio", "model"])

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
        """JSON-ready summary: breaches, coverage and metrics per pair."""
        eff = self.efficiency().reset_index().to_dict(orient="records")
        return {"mpor_days": self.mpor_days, "models": self.models, "metrics": eff,
                "metric_units": {m.key: m.unit for m in METRICS},
                "not_applicable": [list(x) for x in self.not_applicable],
                "warmup": [{"portfolio": pf, "model": md, "dates": n} for (pf, md), n in self.warmup.items()],
                "diagnostics": self.diagnostics}
