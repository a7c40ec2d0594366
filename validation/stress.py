r"""Stress tests: a scenario library, stress losses, stress coverage, Cover-1/Cover-2 and reverse stress.

A **scenario** is a named object with its source (:data:`SCENARIOS`, name ->
scenario). Applied to a book at a date t it gives one or more joint shocks of
the book's assets — log price moves and implied-vol moves — over the margin
period of risk, and the book is revalued in full under each
(:func:`~marginlab.models.revaluation.revalue_at`, the pricer every model uses:
options aged by the MPOR, vol shocks on the at-the-money level, smile sticky in
moneyness); the scenario's **stress loss** is the largest loss of its shocks.

* :class:`HistoricalEpisode`: the joint moves of every asset and implied vol
  over the MPOR starting at each day D of a date range of the bundled data
  (from the close at D 00:00 UTC, the row labelled D - 1, to h observations
  later), implied-vol moves applied to today's vol in proportion
  (:math:`\sigma_t(\sigma_{D+h}/\sigma_D - 1)`); no vol move where the episode
  predates the implied-vol data (DVOL starts 2021-03-24). A book holding an
  asset without prices in the episode gets no stress loss (NaN). Episodes are
  applied at every date, also before they happened: a hindsight test of how the
  margin of the day would have fared.
* :class:`PriceShock`: every asset's price times 1 + ``move`` and every implied
  vol times ``vol_multiplier``.
* :class:`CorrelationBreakdown`: each asset moves by its own stressed move in
  the direction adverse to the book: up by its largest observed h-observation
  log rise, or down by its largest observed h-observation log fall, each over
  the ``lookback_days`` before t (known at t); each implied vol likewise by its
  own largest rise or fall. The stress loss is the worst of every combination
  of directions, so the legs of a hedged or long/short book lose together (no
  correlation benefit), each by a move it has actually made.

:func:`stress_losses` gives the tidy frame (one row per book, date, scenario
and, given a backtest result, model, with the margin and the stress coverage
ratio margin / stress loss); :func:`stress_coverage` the share of dates where
the margin covers each scenario (and the worst of them); :func:`not_applicable`
the book/scenario pairs without a stress loss and why; :func:`cover_n` the
Cover-1 and Cover-2 amounts, treating books as clearing members;
:func:`reverse_stress` the smallest uniform adverse price move that exhausts the
margin.

Sources: EMIR (Regulation (EU) No 648/2012) Art. 43(2) (the default fund and
the other financial resources withstand the default of the two members to which
the CCP has the largest exposures in extreme but plausible market conditions:
Cover-2, what :func:`cover_n` computes; Art. 42(3), the default fund alone for
the largest member or the second and third largest together, is not computed)
and RTS 153/2013 Arts. 29-31 (extreme but plausible conditions; historical and
hypothetical scenarios); CPMI-IOSCO Principles for
Financial Market Infrastructures (2012), Principle 4 (credit risk: Cover 1 /
Cover 2, key consideration 4; stress testing and reverse stress testing,
explanatory notes 3.4.21-3.4.24) and Principle 6 (margin); CPMI-IOSCO
"Resilience of central counterparties: further guidance on the PFMI" (2017),
section 4 (stress testing, reverse stress testing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.conventions import utc
from marginlab.models.portfolios import Portfolio
from marginlab.models.revaluation import Book, BookArrays, book_arrays, revalue_at

__all__ = ["Scenario", "Members", "HistoricalEpisode", "PriceShock", "CorrelationBreakdown", "SCENARIOS",
           "stress_losses", "state_losses", "LOSS_TOLERANCE", "stress_coverage", "not_applicable", "cover_n",
           "reverse_stress", "vol_price_beta"]

_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Members:
    """The assets the members (books) of a stress run hold, in market order: the dimensions of a joint state.

    ``price_assets``: every asset of a member; ``vol_assets``: every asset whose implied vol a member needs.
    """

    price_assets: tuple[str, ...]
    vol_assets: tuple[str, ...]

    @classmethod
    def of(cls, books: Mapping[str, Portfolio], market: MarketData) -> Members:
        """The members' assets and implied-vol assets, in the market's order."""
        held = {a for b in books.values() for a in b.assets}
        vol = {a for b in books.values() for a in b.implied_vol_assets}
        return cls(tuple(a for a in market.assets if a in held), tuple(a for a in market.assets if a in vol))


#: A stress loss (or gain) at most this fraction of the book's gross notional (sum of |quantity| x price of the
#: underlying) is zero: the rounding residue of an exactly hedged book (a $1m long BTC / $1m short ETH perpetual
#: book under a uniform shock gives +-1e-10, i.e. 5e-17 of its notional, where it has no exposure), which would
#: give coverage ratios of 1e16 and a random sign; 1e-12 is a millionth of a dollar per $1m.
LOSS_TOLERANCE = 1e-12

#: The most asset and implied-vol dimensions of a correlation breakdown's joint states (2^16 states)
_MAX_DIRECTIONS = 16


@dataclass(frozen=True)
class Scenario:
    """Base class of stress scenarios: a name, a kind, a one-line description and its source."""

    name: str
    description: str
    source: str

    kind = "scenario"
    #: True when the shocks do not depend on the date (only today's vol level scales the vol moves)
    static = False

    def prepare(self, market: MarketData, horizon: int):
        """Whatever the scenario computes once per market and MPOR (passed back to :meth:`shocks`)."""
        return None

    def why_not_applicable(self, market: MarketData, assets: Sequence[str], horizon: int = 1) -> str:
        """Why the scenario gives no stress loss to a book holding ``assets`` (a short clause)."""
        return "the scenario does not apply to the book"

    def states(self, market: MarketData, horizon: int, members: Members) -> list[str]:
        """Labels of the scenario's joint market states, the same for every member (one per shock by default).

        A joint state moves every asset (and implied vol) of every member the same way at once: the states over
        which Cover-1/Cover-2 add members' losses (:func:`cover_n`). ``members`` names the members' assets.
        """
        return [""]

    def state_rows(self, book: BookArrays, members: Members) -> np.ndarray | None:
        """The row of the book's :meth:`shocks` that is each joint state of :meth:`states` (None: row k is state k).

        Needed when a scenario's shocks depend on the book's own assets (:class:`CorrelationBreakdown`).
        """
        return None

    def shocks(self, market: MarketData, book: BookArrays, i: int, horizon: int, prepared=None):
        r"""``(spot, vol)``: log price moves and relative implied-vol moves, each of shape (k, n_assets), or None.

        The shocked vol is :math:`\sigma_t(1 + vol)`; ``vol`` is None for books without options. None when the
        scenario does not apply to the book (e.g. an asset without prices in an episode). ``prepared`` is
        :meth:`prepare`'s result for the same market and horizon (computed here when None).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class HistoricalEpisode(Scenario):
    """The joint moves of a date range of the bundled data (see the module docstring).

    Parameters
    ----------
    start, end : date
        The first and last day D of the episode (UTC days); each gives the move over the MPOR from the close
        at D 00:00 (the row labelled D - 1).
    """

    start: dt.date = dt.date(2020, 3, 12)
    end: dt.date = dt.date(2020, 3, 12)

    kind = "historical"
    static = True

    def start_rows(self, market: MarketData) -> np.ndarray:
        """Rows observed at the start of each day of the episode (labelled the day before), inside the panel."""
        days = pd.date_range(utc(self.start), utc(self.end), freq="D")
        labels = days - _DAY if market.freq == "1d" else days - market.step
        rows = market.index.get_indexer(labels)
        return rows[rows >= 0]

    def moves(self, market: MarketData, horizon: int = 1) -> pd.DataFrame:
        r"""The episode's joint moves: one row per day D, log price moves and log implied-vol moves per asset.

        Columns ``("price", asset)`` and ``("vol", asset)``: :math:`\ln(X_{s+h}/X_s)` with s the row observed
        at D 00:00 and h = ``horizon`` observations (NaN where a value is missing).
        """
        rows = self.start_rows(market)
        rows = rows[rows + horizon < len(market.index)]
        with np.errstate(invalid="ignore", divide="ignore"):
            price = np.log(market.price_array[rows + horizon] / market.price_array[rows])
            vol = np.log(market.vol_array[rows + horizon] / market.vol_array[rows])
        days = market.observation_time[rows].normalize()
        cols = pd.MultiIndex.from_product([["price", "vol"], market.assets])
        return pd.DataFrame(np.hstack([price, vol]), index=pd.DatetimeIndex(days, name="day"), columns=cols)

    def why_not_applicable(self, market: MarketData, assets: Sequence[str], horizon: int = 1) -> str:
        """The assets of ``assets`` without prices in the episode, or that the episode is outside the data."""
        period = f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"
        price = self.moves(market, horizon)["price"]
        if price.empty:
            return f"the episode, {period}, is outside the market data"
        missing = [a for a in assets if price[a].isna().any()]
        if not missing:
            return f"the episode, {period}, does not apply to the book"
        return f"{', '.join(missing)} had no prices in the episode, {period}"

    def states(self, market: MarketData, horizon: int, members: Members) -> list[str]:
        """One joint state per day D of the episode (``YYYY-MM-DD``): every asset's move of that day."""
        return [f"{d:%Y-%m-%d}" for d in self.moves(market, horizon).index]

    def prepare(self, market: MarketData, horizon: int):
        """The episode's (price, vol) log moves, arrays of shape (n_days, n_market_assets)."""
        frame = self.moves(market, horizon)
        return frame["price"].to_numpy(float), frame["vol"].to_numpy(float)

    def shocks(self, market: MarketData, book: BookArrays, i: int, horizon: int, prepared=None):
        """The episode's moves of the book's assets; vol moves in proportion to today's vol (0 where missing)."""
        price, vol = prepared if prepared is not None else self.prepare(market, horizon)
        cols = [market.asset_index[a] for a in book.assets]
        spot = price[:, cols]
        if not spot.size or np.isnan(spot).any():
            return None
        if not book.has_options:
            return spot, None
        return spot, np.nan_to_num(np.expm1(vol[:, cols]), nan=0.0)


@dataclass(frozen=True)
class PriceShock(Scenario):
    """Every price times 1 + ``move`` and every implied vol times ``vol_multiplier`` (a hypothetical scenario)."""

    move: float = -0.3
    vol_multiplier: float = 1.0

    kind = "hypothetical"
    static = True

    def __post_init__(self) -> None:
        if not (np.isfinite(self.move) and self.move > -1.0):
            raise ValueError(f"scenario {self.name!r}: move must be > -1 (a price cannot fall below 0), "
                             f"got {self.move}")
        if not (np.isfinite(self.vol_multiplier) and self.vol_multiplier > 0):
            raise ValueError(f"scenario {self.name!r}: vol_multiplier must be positive, got {self.vol_multiplier}")

    def states(self, market: MarketData, horizon: int, members: Members) -> list[str]:
        """One joint state, labelled by its moves (e.g. ``every price -30%, implied vols x1.5``)."""
        return [f"every price {100 * self.move:+.4g}%, implied vols x{self.vol_multiplier:.4g}"]

    def shocks(self, market: MarketData, book: BookArrays, i: int, horizon: int, prepared=None):
        """One shock: the same price move for every asset, vols scaled."""
        n = len(book.assets)
        spot = np.full((1, n), np.log1p(self.move))
        if not book.has_options:
            return spot, None
        return spot, np.full((1, n), self.vol_multiplier - 1.0)


@dataclass(frozen=True)
class CorrelationBreakdown(Scenario):
    r"""Each leg moves adversely by its own largest observed rise or fall (see the module docstring).

    With :math:`r_{j,s} = \ln(X_{j,s}/X_{j,s-h})` the h-observation log move of asset (or implied vol) j ending
    at row s, the stressed rise and fall known at row i are

    .. math:: u_{j,i} = \max(0, \max_{i-n<s\le i} r_{j,s}), \qquad d_{j,i} = \min(0, \min_{i-n<s\le i} r_{j,s})

    (n = ``lookback_days`` in observations); the shocks are every combination of :math:`u_j` or :math:`d_j` per
    asset (and per implied vol of an option book) and the stress loss the largest loss among them. A short leg
    is shocked by the asset's own largest rise, a long leg by its largest fall: a crash is not mirrored into a
    rally of the same size (BTC to 2022: largest daily rise +28.9% on 2015-01-15, largest fall -39.0% on
    2020-03-12).

    Parameters
    ----------
    lookback_days : int
        History (days before t) in which each asset's largest h-observation rise and fall are taken.
    """

    lookback_days: int = 3650

    kind = "hypothetical"

    def prepare(self, market: MarketData, horizon: int):
        """Each asset's stressed moves known at every row: ``(price_up, price_down, vol_up, vol_down)``.

        Arrays of shape (n_rows, n_market_assets): row i holds the largest h-observation log rise (>= 0) and
        log fall (<= 0) ending at rows ``i - n + 1 .. i`` (n = ``lookback_days`` in observations); 0 where none
        is known.
        """
        n = max(int(round(self.lookback_days * (_DAY / market.step))), 1)
        out = []
        for levels in (market.price_array, market.vol_array):
            with np.errstate(invalid="ignore", divide="ignore"):
                x = np.log(levels)
                moves = np.full(x.shape, np.nan)
                moves[horizon:] = x[horizon:] - x[:-horizon]
            window = pd.DataFrame(moves).rolling(n, min_periods=1)
            out.append(np.maximum(np.nan_to_num(window.max().to_numpy(), nan=0.0), 0.0))
            out.append(np.minimum(np.nan_to_num(window.min().to_numpy(), nan=0.0), 0.0))
        return tuple(out)

    @staticmethod
    def _directions(members: Members) -> np.ndarray:
        """Every combination of up (True) / down of the members' prices, then implied vols.

        The first dimension is the most significant bit (the order of :meth:`shocks`); too many are refused.
        """
        dims = len(members.price_assets) + len(members.vol_assets)
        if dims > _MAX_DIRECTIONS:
            raise ValueError(f"correlation_breakdown: the members hold {len(members.price_assets)} assets and "
                             f"{len(members.vol_assets)} implied vols, 2^{dims} joint directions (at most "
                             f"2^{_MAX_DIRECTIONS}); stress fewer assets at once")
        return ((np.arange(2**dims)[:, None] >> np.arange(dims)[::-1]) & 1).astype(bool)

    def states(self, market: MarketData, horizon: int, members: Members) -> list[str]:
        """Every combination of directions of the members' assets and implied vols.

        Labelled e.g. ``BTC down, ETH up; vol BTC up``: in a state every member's legs on an asset move by that
        asset's largest rise, or all by its largest fall.
        """
        rise = self._directions(members)
        n = len(members.price_assets)
        word = np.array(["down", "up"])
        out = []
        for row in rise:
            price = ", ".join(f"{a} {w}" for a, w in zip(members.price_assets, word[row[:n].astype(int)],
                                                          strict=True))
            vol = ", ".join(f"{a} {w}" for a, w in zip(members.vol_assets, word[row[n:].astype(int)], strict=True))
            out.append(price + (f"; vol {vol}" if vol else ""))
        return out

    def state_rows(self, book: BookArrays, members: Members) -> np.ndarray:
        """The book's combination (row of :meth:`shocks`) in each joint state: its own assets' directions."""
        rise = self._directions(members)
        n = len(members.price_assets)
        cols = [members.price_assets.index(a) for a in book.assets]
        if book.has_options:
            cols += [n + members.vol_assets.index(book.assets[k]) for k in sorted(set(book.asset_idx[
                book.is_option].tolist()))]
        own = rise[:, cols].astype(np.int64)
        return own @ (1 << np.arange(len(cols))[::-1]).astype(np.int64)

    def shocks(self, market: MarketData, book: BookArrays, i: int, horizon: int, prepared=None):
        """Every combination of each asset's (and, for option books, implied vol's) largest rise or fall."""
        up, down, vol_up, vol_down = prepared if prepared is not None else self.prepare(market, horizon)
        n = len(book.assets)
        cols = [market.asset_index[a] for a in book.assets]
        vol_assets = sorted(set(book.asset_idx[book.is_option].tolist())) if book.has_options else []
        dims = n + len(vol_assets)
        rise = ((np.arange(2**dims)[:, None] >> np.arange(dims)[::-1]) & 1).astype(bool)  # every combination
        spot = np.where(rise[:, :n], up[i, cols], down[i, cols])
        if not book.has_options:
            return spot, None
        log_vol = np.zeros((rise.shape[0], n))
        for k, a in enumerate(vol_assets):
            log_vol[:, a] = np.where(rise[:, n + k], vol_up[i, cols[a]], vol_down[i, cols[a]])
        return spot, np.expm1(log_vol)


_SOURCE_DATA = ("bundled data (Bitstamp USD closes for BTC, ETH, XRP; Binance USDT for SOL; Deribit DVOL for BTC "
                "and ETH implied vol from 2021-03-24)")

#: The scenario library: name -> scenario. Historical episodes from the bundled data, hypothetical shocks.
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    HistoricalEpisode("covid_2020_03", "COVID-19 crash week ('Black Thursday' 2020-03-12: BTC -39% in a day)",
                      _SOURCE_DATA, dt.date(2020, 3, 12), dt.date(2020, 3, 16)),
    HistoricalEpisode("china_2021_05", "May 2021 sell-off (China mining ban; 2021-05-19: BTC -14%, ETH -28%)",
                      _SOURCE_DATA, dt.date(2021, 5, 12), dt.date(2021, 5, 23)),
    HistoricalEpisode("luna_2022_05", "Terra/LUNA collapse (UST de-peg 2022-05-09)", _SOURCE_DATA,
                      dt.date(2022, 5, 5), dt.date(2022, 5, 13)),
    HistoricalEpisode("celsius_2022_06", "Celsius freeze and 3AC (2022-06-13: BTC -16%)", _SOURCE_DATA,
                      dt.date(2022, 6, 10), dt.date(2022, 6, 18)),
    HistoricalEpisode("ftx_2022_11", "FTX collapse (2022-11-08/09: BTC -22.9%, SOL -52.5% close to close in two "
                      "days)", _SOURCE_DATA, dt.date(2022, 11, 6), dt.date(2022, 11, 14)),
    PriceShock("down_30_vol_up_50", "every price -30%, implied vols x1.5",
               "hypothetical; EMIR RTS 153/2013 Art. 30 (extreme but plausible); BTC's largest daily fall in "
               "the bundled data is -39% (2020-03-12)", -0.30, 1.5),
    PriceShock("up_30_vol_up_50", "every price +30%, implied vols x1.5",
               "hypothetical; EMIR RTS 153/2013 Art. 30; short books lose on rallies", 0.30, 1.5),
    PriceShock("down_50", "every price -50%, implied vols unchanged", "hypothetical; EMIR RTS 153/2013 Art. 30",
               -0.50, 1.0),
    PriceShock("up_50", "every price +50%, implied vols unchanged", "hypothetical; EMIR RTS 153/2013 Art. 30",
               0.50, 1.0),
    PriceShock("vol_x2", "prices unchanged, implied vols x2", "hypothetical; vega stress", 0.0, 2.0),
    PriceShock("vol_x0.5", "prices unchanged, implied vols x0.5", "hypothetical; vega stress (long vol books)",
               0.0, 0.5),
    CorrelationBreakdown("correlation_breakdown", "each leg moves adversely by its own largest MPOR rise (short "
                         "legs) or fall (long legs) of the last ten years, implied vols likewise: no "
                         "diversification between legs",
                         "hypothetical; CPMI-IOSCO PFMI Principle 4 explanatory note 3.4.23 (breakdown of "
                         "correlations); EMIR RTS 153/2013 Art. 30", 3650),
)}


# ----------------------------------------------------------------------------------------------------------------
# stress losses


def _check_every(every, where: str) -> None:
    if not isinstance(every, int | np.integer) or isinstance(every, bool) or every < 1:
        raise ValueError(f"{where}: every must be an integer >= 1, got {every!r}")


def _calendar(rows_per_book, market: MarketData, dates, every: int) -> np.ndarray:
    """The run's stress rows: every k-th row of the union of the books' rows (within ``dates``), from the first.

    One calendar for every book, so that books (members) are stressed on the same dates and Cover-1/Cover-2
    compare them date by date; a book is stressed on the calendar's dates it holds.
    """
    rows = [np.asarray(r, dtype=np.int64) for r in rows_per_book]
    union = np.unique(np.concatenate(rows)) if rows else np.empty(0, dtype=np.int64)
    union = union[union >= 0]
    if dates is not None:
        wanted = pd.DatetimeIndex([utc(d) for d in dates])
        union = union[market.index[union].isin(wanted)]
    return union[::every]


def _book_map(books) -> dict[str, Portfolio]:
    if isinstance(books, Portfolio):
        return {books.name: books}
    if isinstance(books, Mapping):
        return dict(books)
    return {b.name: b for b in books}


def _book_rows(portfolio: Portfolio, market: MarketData) -> np.ndarray:
    """Rows where the book's assets (and implied vols for option books) have data."""
    cols = [market.asset_index[a] for a in portfolio.assets]
    ok = np.isfinite(market.price_array[:, cols]).all(axis=1)
    if portfolio.needs_implied_vol:
        ok &= np.isfinite(market.vol_array[:, cols]).all(axis=1)
    return np.flatnonzero(ok)


def _scenarios(scenarios) -> dict[str, Scenario]:
    if scenarios is None:
        return dict(SCENARIOS)
    out = {}
    for s in scenarios:
        if isinstance(s, str):
            if s not in SCENARIOS:
                raise ValueError(f"unknown stress scenario {s!r}; known scenarios: {sorted(SCENARIOS)}")
            s = SCENARIOS[s]
        if not isinstance(s, Scenario):
            raise ValueError(f"a stress scenario must be a name or a Scenario, got {s!r}")
        out[s.name] = s
    if not out:
        raise ValueError("no stress scenario given")
    return out


class _Layout:
    """The scenarios' shocks for one book layout (assets, option assets), stacked for one revaluation per row.

    Static scenarios' shocks are built once; dynamic ones (:class:`CorrelationBreakdown`) at each row. The
    losses come out per joint market state of the members (:meth:`Scenario.state_rows`).
    """

    def __init__(self, market: MarketData, book: BookArrays, horizon: int, scenarios: dict[str, Scenario],
                 prepared: dict[str, object], members: Members):
        self.scenarios, self.prepared, self.horizon = scenarios, prepared, horizon
        self.cols = [market.asset_index[a] for a in book.assets]
        self.static = {name: s.shocks(market, book, -1, horizon, prepared[name])
                       for name, s in scenarios.items() if s.static}
        self.rows = {name: s.state_rows(book, members) for name, s in scenarios.items()}

    def losses(self, market: MarketData, book: BookArrays, i: int, where: str,
               sizes: Sequence[int]) -> np.ndarray:
        """The book's loss in each joint state of each scenario at row i, scenario after scenario.

        ``sizes`` states per scenario; NaN where a scenario does not apply.
        """
        spots, vols, counts = [], [], []
        for name, s in self.scenarios.items():
            shock = self.static[name] if s.static else s.shocks(market, book, i, self.horizon, self.prepared[name])
            if shock is None:
                counts.append(0)
                continue
            spots.append(shock[0])
            if book.has_options:
                vols.append(shock[1])
            counts.append(shock[0].shape[0])
        out = np.full(int(np.sum(sizes)), np.nan)
        if not spots:
            return out
        vol = np.vstack(vols) * market.vol_array[i, self.cols] if book.has_options else None
        loss = -revalue_at(book, market, i, np.vstack(spots), vol, horizon=self.horizon, where=where)
        # a loss within LOSS_TOLERANCE of the gross notional is rounding residue (an exactly hedged book): none
        gross = float(np.abs(book.quantity) @ market.price_array[i, self.cols][book.asset_idx])
        loss = np.where(np.abs(loss) <= LOSS_TOLERANCE * gross, 0.0, loss)
        first, at = 0, 0
        for name, count, size in zip(self.scenarios, counts, sizes, strict=True):
            if count:
                rows = self.rows[name]
                out[at:at + size] = loss[first:first + count] if rows is None else loss[first + rows]
                first += count
            at += size
        return out


def _stress_rows(result, books: dict[str, Portfolio], market: MarketData, dates, every: int):
    """Each book's stress rows: the run's calendar (:func:`_calendar`) on the book's margin dates (or data rows)."""
    book_rows = {}
    for name, portfolio in books.items():
        market.require_assets(portfolio.assets, f"portfolio {name!r}")
        if result is not None:
            rows = market.index.get_indexer(pd.DatetimeIndex(result.frame.loc[result.frame["portfolio"] == name,
                                                                              "date"].unique()))
        else:
            rows = _book_rows(portfolio, market)
        book_rows[name] = np.sort(rows[rows >= 0])
    calendar = _calendar(book_rows.values(), market, dates, every)
    return {name: rows[np.isin(rows, calendar)] for name, rows in book_rows.items()}


def _run(result_or_books, market: MarketData, scenarios, dates, every: int, horizon: int | None, where: str,
         joint: bool):
    """The stress losses of each book and stress date: per joint state (``joint``) or the worst per scenario.

    Returns ``(result, frame)``: the backtest result (or None) and the tidy frame without margins.
    """
    from .engine import BacktestResult

    _check_every(every, where)
    result = result_or_books if isinstance(result_or_books, BacktestResult) else None
    books = _book_map(result.portfolios if result is not None else result_or_books)
    if result is not None and not books:
        raise ValueError(f"{where}: the backtest result carries no portfolios; pass the books instead")
    scen = _scenarios(scenarios)
    h = int(horizon if horizon is not None else (result.mpor_days if result is not None else 1))
    prepared = {name: s.prepare(market, h) for name, s in scen.items()}
    stress_rows = _stress_rows(result, books, market, dates, every)
    members = Members.of(books, market)
    # a scenario without a state (an episode outside the market data) keeps one, without a loss (NaN)
    labels = [s.states(market, h, members) or [""] for s in scen.values()]
    sizes = [len(x) for x in labels]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    n_states = int(np.sum(sizes))
    names = list(scen)
    kinds = [s.kind for s in scen.values()]
    pieces = []
    for name, portfolio in books.items():
        rows = stress_rows[name]
        losses = np.full((rows.size, n_states), np.nan)
        previous, book, layouts = None, None, {}
        for k, i in enumerate(rows):
            t = market.index[i]
            positions = portfolio.positions_at(t, market)
            if previous is None or tuple(positions) != previous:
                previous, book = tuple(positions), Book(positions)
            if not len(book):
                losses[k] = 0.0
                continue
            arrays = book_arrays(book)
            key = (tuple(arrays.assets), tuple(arrays.asset_idx[arrays.is_option].tolist()))
            if key not in layouts:
                layouts[key] = _Layout(market, arrays, h, scen, prepared, members)
            losses[k] = layouts[key].losses(market, arrays, i, f"portfolio {name!r}", sizes)
        if joint:
            per_row = np.repeat(np.arange(len(scen)), sizes)
            pieces.append(pd.DataFrame({
                "date": np.repeat(market.index[rows], n_states), "portfolio": name,
                "scenario": np.tile(np.asarray(names, dtype=object)[per_row], rows.size),
                "kind": np.tile(np.asarray(kinds, dtype=object)[per_row], rows.size),
                "state": np.tile(np.asarray([x for group in labels for x in group], dtype=object), rows.size),
                "stress_loss": losses.ravel()}))
        else:  # the worst state of each scenario (NaN propagates: a scenario applies to all its states or none)
            worst = np.column_stack([losses[:, a:a + n].max(axis=1) for a, n in zip(starts, sizes, strict=True)])
            pieces.append(pd.DataFrame({
                "date": np.repeat(market.index[rows], len(scen)), "portfolio": name,
                "scenario": np.tile(names, rows.size), "kind": np.tile(kinds, rows.size),
                "stress_loss": worst.ravel()}))
    cols = ["date", "portfolio", "scenario", "kind", *(["state"] if joint else []), "stress_loss"]
    return result, (pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=cols))


def state_losses(result_or_books, market: MarketData, scenarios=None, dates=None, every: int = 1,
                 horizon: int | None = None) -> pd.DataFrame:
    """Each book's loss in every joint market state of each scenario, per stress date: what :func:`cover_n` adds.

    A **joint state** moves every asset and implied vol the same way for every book at once
    (:meth:`Scenario.states`): a price shock is one state, a historical episode one state per day D of the
    episode (every asset's move of that day), the correlation breakdown one state per combination of directions
    (largest rise or fall) of every asset and implied vol the books hold. A book's stress loss
    (:func:`stress_losses`) is its largest loss over the scenario's states.

    Parameters are those of :func:`stress_losses` (the same books, dates and calendar).

    Returns
    -------
    DataFrame
        Columns ``date, portfolio, scenario, kind, state`` (the state's label: ``YYYY-MM-DD`` for an episode's
        day, e.g. ``BTC down, ETH up; vol BTC up`` for the correlation breakdown, ``every price -50%, implied vols
        x1`` for a price shock) and
        ``stress_loss`` (quote currency; NaN where the scenario does not apply to the book). No margins: join
        them from :func:`stress_losses` (as :func:`cover_n` does).
    """
    return _run(result_or_books, market, scenarios, dates, every, horizon, "state_losses", joint=True)[1]


def stress_losses(result_or_books, market: MarketData, scenarios=None, dates=None, every: int = 1,
                  horizon: int | None = None, states: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stress loss of each book, date and scenario (and, given a backtest result, model), as a tidy frame.

    Parameters
    ----------
    result_or_books : BacktestResult, Portfolio, mapping name -> Portfolio or sequence of portfolios
        A backtest result: its portfolios on its margin dates, joined with every model's margin; or books, on
        ``dates`` (default: every row where the book's data exist).
    market : MarketData
        The market the books are revalued on (the backtest's).
    scenarios : sequence of names or Scenario objects, optional
        Default: every scenario of :data:`SCENARIOS`.
    dates : sequence of timestamps, optional
        Margin dates to test (a subset of the result's dates, or of the books' rows).
    every : int
        Test every k-th date (>= 1) of the run's calendar: the union of the books' dates (within ``dates``),
        anchored at its first date. The same dates for every book, so that Cover-1/Cover-2 compare the books
        (members) on one date; each book is tested on the calendar dates it holds.
    horizon : int, optional
        MPOR in observations (default: the result's, else 1).
    states : DataFrame, optional
        :func:`state_losses` of the same books, scenarios and dates: the stress loss is the largest of each
        scenario's states (the same numbers; nothing is revalued again). Computed here when not given.

    Returns
    -------
    DataFrame
        Columns ``date, portfolio, scenario, kind, stress_loss`` (quote currency, the largest loss of the
        scenario's shocks; NaN where the scenario does not apply to the book); with a result also ``model,
        margin, coverage_ratio`` (margin / stress loss, inf when the scenario makes no loss: a loss within
        :data:`LOSS_TOLERANCE` of the book's gross notional is none) and ``covered`` (stress loss <= margin).
    """
    if states is None:
        result, out = _run(result_or_books, market, scenarios, dates, every, horizon, "stress_losses", joint=False)
    else:
        from .engine import BacktestResult

        result = result_or_books if isinstance(result_or_books, BacktestResult) else None
        keys = ["date", "portfolio", "scenario", "kind"]
        out = states.groupby(keys, sort=False, dropna=False)["stress_loss"].max().reset_index()
    if result is None:
        return out
    margins = result.frame[["date", "portfolio", "model", "margin"]]
    out = margins.merge(out, on=["date", "portfolio"], how="inner")[
        ["date", "portfolio", "model", "scenario", "kind", "stress_loss", "margin"]]
    loss = out["stress_loss"].to_numpy(float)
    margin = out["margin"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(loss > 0, margin / np.where(loss > 0, loss, 1.0), np.inf)
    out["coverage_ratio"] = np.where(np.isnan(loss), np.nan, ratio)
    out["covered"] = np.where(np.isnan(loss), False, loss <= margin)
    return out


def stress_coverage(frame: pd.DataFrame) -> pd.DataFrame:
    """Per portfolio, model and scenario (and ``"worst"``, the largest stress loss of each date): coverage.

    Columns: ``dates`` (with a stress loss), ``covered_share`` (share of dates where margin >= stress loss),
    ``median_ratio`` and ``min_ratio`` of margin / stress loss, ``mean_stress_loss`` and ``max_stress_loss``
    (quote currency). ``frame`` is :func:`stress_losses` of a backtest result.
    """
    if "model" not in frame.columns:
        raise ValueError("stress_coverage needs stress_losses of a backtest result (with margins)")
    f = frame.dropna(subset=["stress_loss"])
    worst = f.loc[f.groupby(["date", "portfolio", "model"], sort=False)["stress_loss"].idxmax()].copy()
    worst["scenario"] = "worst"
    both = pd.concat([f, worst], ignore_index=True)
    g = both.groupby(["portfolio", "model", "scenario"], sort=False)
    out = pd.DataFrame({"dates": g.size(), "covered_share": g["covered"].mean(),
                        "median_ratio": g["coverage_ratio"].median(), "min_ratio": g["coverage_ratio"].min(),
                        "mean_stress_loss": g["stress_loss"].mean(), "max_stress_loss": g["stress_loss"].max()})
    return out


def not_applicable(frame: pd.DataFrame, books, market: MarketData, scenarios=None,
                   horizon: int = 1) -> pd.DataFrame:
    """The (book, scenario) pairs of a :func:`stress_losses` frame without a stress loss on some date, and why.

    Parameters
    ----------
    frame : DataFrame
        :func:`stress_losses` (of books or of a backtest result).
    books : mapping name -> Portfolio or sequence of portfolios
        The books of the frame (their assets name the reason).
    market : MarketData
        The market of the frame.
    scenarios : sequence of names or Scenario objects, optional
        The scenarios of the frame (default: every scenario of :data:`SCENARIOS`).
    horizon : int
        MPOR in observations.

    Returns
    -------
    DataFrame
        Columns ``portfolio, scenario, dates`` (stress dates of the book), ``dates_na`` (those without a stress
        loss) and ``reason`` (e.g. "SOL had no prices in the episode, 2020-03-12 to 2020-03-16"), one row per
        pair with ``dates_na`` > 0.
    """
    cols = ["portfolio", "scenario", "dates", "dates_na", "reason"]
    scen = _scenarios(scenarios)
    books = _book_map(books)
    f = frame.drop_duplicates(["date", "portfolio", "scenario"])
    g = f.groupby(["portfolio", "scenario"], sort=False)["stress_loss"]
    counts = pd.DataFrame({"dates": g.size(), "dates_na": g.apply(lambda x: int(x.isna().sum()))}).reset_index()
    counts = counts[counts["dates_na"] > 0]
    reasons = [scen[s].why_not_applicable(market, books[b].assets, horizon) if s in scen and b in books else ""
               for b, s in zip(counts["portfolio"], counts["scenario"], strict=True)]
    return counts.assign(reason=reasons).reset_index(drop=True)[cols]


def cover_n(frame: pd.DataFrame, members: Sequence[str] | None = None,
            states: pd.DataFrame | None = None) -> pd.DataFrame:
    r"""Cover-1 and Cover-2 per date and model, treating books as clearing members (EMIR Art. 43(2), PFMI 4).

    The members' losses are added within one joint market state (:func:`state_losses`): every asset and
    implied vol moves the same way for every member at once (a price shock; one day of a historical episode;
    one combination of directions of the correlation breakdown), since the default fund must cover the
    defaults "in extreme but plausible market conditions", the same conditions for all (CPMI-IOSCO PFMI
    Principle 4, key consideration 4 and explanatory note 3.4.19; EMIR Art. 43(2)). For each joint state s
    and member b the uncovered loss is :math:`U_{b,s} = \max(L_{b,s} - M_b, 0)`; Cover-1 is
    :math:`\max_s \max_b U_{b,s}` (the default of the member with the largest exposure) and Cover-2
    :math:`\max_s` of the sum of the two largest :math:`U_{b,s}` (the two largest together): the amounts a
    default fund sized on these scenarios must hold beyond the defaulters' margins. Each member's own worst
    state (its stress loss in :func:`stress_losses`) is not added: a long and a short member cannot both take
    their worst move of one asset at once.

    Parameters
    ----------
    frame : DataFrame
        :func:`stress_losses` of a backtest result: each member's margin per date and model (members: books
        with a margin and a stress loss that date).
    members : sequence of str, optional
        The books taken as members (default: every book of ``frame``).
    states : DataFrame, optional
        :func:`state_losses` of the same run, scenarios and dates. Needed unless ``frame`` itself has a
        ``state`` column (one row per book, model, scenario and state, with the margin).

    Returns
    -------
    DataFrame
        Indexed by ``(date, model)``: ``members``, ``cover1``, ``cover1_member``, ``cover1_scenario``,
        ``cover1_state``, ``cover2``, ``cover2_members``, ``cover2_scenario`` and ``cover2_state`` (the joint
        state of the scenario that gives the amount: see :func:`state_losses`; empty when nothing is uncovered).
        Ties go to the first scenario and state of the run's order, and to the first member.
    """
    cols = ["date", "model", "members", "cover1", "cover1_member", "cover1_scenario", "cover1_state", "cover2",
            "cover2_members", "cover2_scenario", "cover2_state"]
    if "model" not in frame.columns:
        raise ValueError("cover_n needs stress_losses of a backtest result (with margins)")
    if states is None:
        if "state" not in frame.columns:
            raise ValueError("cover_n adds members' losses within one joint market state: pass "
                             "states=state_losses(result, market, ...) of the same run, scenarios and dates")
        states = frame
    f = frame.dropna(subset=["stress_loss"])
    s = states.dropna(subset=["stress_loss"]).drop_duplicates(["date", "portfolio", "scenario", "state"])
    if members is not None:
        f, s = f[f["portfolio"].isin(list(members))], s[s["portfolio"].isin(list(members))]
    margins = f.drop_duplicates(["date", "portfolio", "model"])
    if margins.empty or s.empty:
        return pd.DataFrame(columns=cols).set_index(["date", "model"])
    key = pd.MultiIndex.from_arrays([s["scenario"], s["state"]])
    codes, keys = pd.factorize(key)  # in the run's order of scenarios and states
    scen_names = keys.get_level_values(0).to_numpy(object)
    state_names = keys.get_level_values(1).to_numpy(object)
    s_dates, s_books, s_loss = s["date"].to_numpy(), s["portfolio"].to_numpy(object), s["stress_loss"].to_numpy(float)
    by_date = pd.Series(np.arange(len(s))).groupby(s_dates, sort=True).indices
    m_by_date = pd.Series(np.arange(len(margins))).groupby(margins["date"].to_numpy(), sort=True).indices
    m_books, m_models = margins["portfolio"].to_numpy(object), margins["model"].to_numpy(object)
    m_value = margins["margin"].to_numpy(float)
    records = []
    for date, at in by_date.items():
        if date not in m_by_date:
            continue
        book_code, books = pd.factorize(s_books[at])  # members in the frame's order (ties go to the first)
        loss = np.full((books.size, len(keys)), np.nan)
        loss[book_code, codes[at]] = s_loss[at]
        where = {b: k for k, b in enumerate(books)}
        mat = m_by_date[date]
        models = pd.unique(m_models[mat])
        margin = np.full((models.size, books.size), np.nan)
        row_of = {m: k for k, m in enumerate(models)}
        for j in mat:
            if m_books[j] in where:
                margin[row_of[m_models[j]], where[m_books[j]]] = m_value[j]
        present = np.isfinite(margin) & np.isfinite(loss).any(axis=1)[None, :]
        with np.errstate(invalid="ignore"):
            uncovered = np.where(present[:, :, None] & np.isfinite(loss)[None],
                                 np.maximum(loss[None] - margin[:, :, None], 0.0), 0.0)
        rank = np.argsort(-uncovered, axis=1, kind="stable")  # per model and state: members by uncovered loss
        first, second = rank[:, 0], (rank[:, 1] if books.size > 1 else None)
        top1 = np.take_along_axis(uncovered, first[:, None], axis=1)[:, 0]
        top2 = (np.take_along_axis(uncovered, second[:, None], axis=1)[:, 0] if second is not None
                else np.zeros_like(top1))
        pair = top1 + top2
        for k, model in enumerate(models):
            n = int(present[k].sum())
            if not n:
                continue
            c1, c2 = int(np.argmax(top1[k])), int(np.argmax(pair[k]))
            names = [books[b[k, c2]] for b, u in ((first, top1), (second, top2)) if b is not None and u[k, c2] > 0]
            records.append((date, model, n, top1[k, c1], books[first[k, c1]] if top1[k, c1] > 0 else "",
                            scen_names[c1] if top1[k, c1] > 0 else "", state_names[c1] if top1[k, c1] > 0 else "",
                            pair[k, c2], " + ".join(names), scen_names[c2] if pair[k, c2] > 0 else "",
                            state_names[c2] if pair[k, c2] > 0 else ""))
    out = pd.DataFrame.from_records(records, columns=cols)
    return out.sort_values(["date", "model"], kind="stable").set_index(["date", "model"])


# ----------------------------------------------------------------------------------------------------------------
# reverse stress


def vol_price_beta(market: MarketData, assets: Sequence[str], i: int, lookback: int = 1000) -> np.ndarray:
    r"""Slope of implied-vol log changes on price log returns per asset, over the last ``lookback`` rows to i.

    OLS with intercept of :math:`\Delta\ln\sigma_s` on :math:`r_s` on the rows where both are known: the
    vol-price relation that historical simulation and FHS carry in their joint scenarios (negative for
    crypto: vol rises when prices fall). 0 for assets without implied vol.
    """
    cols = [market.asset_index[a] for a in assets]
    lo = max(1, i - lookback + 1)
    r = market.log_return_array[lo:i + 1][:, cols]
    v = market.log_vol_change_array[lo:i + 1][:, cols]
    out = np.zeros(len(cols))
    for k in range(len(cols)):
        ok = np.isfinite(r[:, k]) & np.isfinite(v[:, k])
        if ok.sum() >= 20:
            x, y = r[ok, k], v[ok, k]
            var = np.var(x)
            out[k] = float(np.mean((x - x.mean()) * (y - y.mean())) / var) if var > 0 else 0.0
    return out


def _uniform_losses(book: BookArrays, market: MarketData, i: int, horizon: int, beta: np.ndarray,
                    moves: np.ndarray, where: str) -> np.ndarray:
    """Losses under uniform relative price moves ``moves`` (> -1) of every asset, vols moving by ``beta``."""
    log_move = np.log1p(moves)[:, None] * np.ones(len(book.assets))
    vol = None
    if book.has_options:
        cols = [market.asset_index[a] for a in book.assets]
        vol = market.vol_array[i, cols] * np.expm1(beta * log_move)
    return -revalue_at(book, market, i, log_move, vol, horizon=horizon, where=where)


def _reverse_one(book: BookArrays, market: MarketData, i: int, horizon: int, beta: np.ndarray,
                 margins: np.ndarray, where: str, tol: float):
    """Smallest adverse uniform move exhausting each margin: arrays (move, direction) per margin."""
    n_grid = 60
    down = np.geomspace(1e-4, 0.9999, n_grid)  # falls of 0.01% .. 99.99%
    up = np.geomspace(1e-4, 20.0, n_grid)
    grid = {"down": down, "up": up}
    losses = _uniform_losses(book, market, i, horizon, beta, np.concatenate([-down, up]), where)
    curve = {"down": losses[:n_grid], "up": losses[n_grid:]}
    best = np.full(margins.size, np.inf)
    side = np.full(margins.size, "", dtype=object)
    for direction, sign in (("down", -1.0), ("up", 1.0)):
        x, loss = grid[direction], curve[direction]
        lo = np.zeros(margins.size)
        hi = np.full(margins.size, np.nan)
        for k, m in enumerate(margins):
            if not np.isfinite(m):
                continue
            hit = np.flatnonzero(loss >= m)
            if hit.size:
                j = hit[0]
                hi[k] = x[j]
                lo[k] = x[j - 1] if j > 0 else 0.0
        active = np.isfinite(hi)
        # bisection on full revaluation, every margin at once: the loss reaches the margin in (lo, hi]
        while active.any() and np.max(hi[active] - lo[active]) > tol:
            mid = 0.5 * (lo + hi)
            idx = np.flatnonzero(active)
            at = _uniform_losses(book, market, i, horizon, beta, sign * mid[idx], where)
            reached = at >= margins[idx]
            hi[idx[reached]] = mid[idx[reached]]
            lo[idx[~reached]] = mid[idx[~reached]]
        better = active & (hi < best)
        best[better] = hi[better]
        side[better] = direction
    return best, side


def reverse_stress(result, market: MarketData, dates=None, every: int = 1, tol: float = 1e-5,
                   lookback: int = 1000) -> pd.DataFrame:
    r"""Smallest uniform adverse price move that exhausts the margin, per book, date and model.

    Every asset's price moves by the same relative amount x (down: :math:`S(1 - x)`, up: :math:`S(1 + x)`)
    and each implied vol by the vol-price relation of the last ``lookback`` rows
    (:func:`vol_price_beta`: :math:`\sigma(1 + x)^{\beta}` for an up move); the book is revalued in full over
    the MPOR. The answer is the smallest x of either direction whose loss reaches the margin: a grid of 60
    geometric points per direction (down to -99.99%, up to +2,000%) brackets the first crossing and bisection
    on full revaluation narrows it to ``tol``. For a linear book of exposure E (long) the loss is E x, so
    x = margin / E exactly. ``inf`` when no move within the grid exhausts the margin (e.g. a long option).

    Parameters
    ----------
    result : BacktestResult
        Its portfolios, margin dates and every model's margin.
    market : MarketData
        The backtest's market.
    dates : sequence of timestamps, optional
        Dates to test (default: every margin date of the result).
    every : int
        Test every k-th date (>= 1) of the run's calendar (the union of the books' margin dates within
        ``dates``, anchored at its first), the same dates for every book, as :func:`stress_losses`.
    tol : float
        Bisection tolerance on x (1e-5: a thousandth of a percent of the price).

    Returns
    -------
    DataFrame
        Columns ``date, portfolio, model, margin, move`` (x, a fraction) and ``direction`` ("down"/"up").
    """
    _check_every(every, "reverse_stress")
    if not result.portfolios:
        raise ValueError("reverse_stress: the backtest result carries no portfolios")
    records = []
    frame = result.frame
    tables = {}
    for name in result.portfolios:
        rows = frame[frame["portfolio"] == name]
        if not rows.empty:
            tables[name] = rows.pivot(index="date", columns="model", values="margin")
    calendar = market.index[_calendar([market.index.get_indexer(t.index) for t in tables.values()], market, dates,
                                      every)]
    for name, table in tables.items():
        portfolio = result.portfolios[name]
        for t in table.index[table.index.isin(calendar)]:
            i = market.loc_of(t)
            positions = portfolio.positions_at(t, market)
            book = book_arrays(Book(positions))
            if not len(book.assets):
                continue
            beta = vol_price_beta(market, book.assets, i, lookback)
            margins = table.loc[t].to_numpy(float)
            move, side = _reverse_one(book, market, i, result.mpor_days, beta, margins, f"portfolio {name!r}", tol)
            for model, m, x, d in zip(table.columns, margins, move, side, strict=True):
                if np.isfinite(m):
                    records.append({"date": t, "portfolio": name, "model": model, "margin": m, "move": x,
                                    "direction": d})
    if not records and dates is not None:
        raise DataError("reverse_stress: none of the given dates is a margin date of the result")
    return pd.DataFrame(records, columns=["date", "portfolio", "model", "margin", "move", "direction"])
