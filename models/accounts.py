"""Member accounts as portfolios: books read from a position file, and synthetic members.

:class:`AccountBook` serves one account's book per date from a validated
position table (:func:`marginlab.datasets.read_positions`), indexed once: the
row sets' dates are a sorted array and ``positions_at(t)`` is one binary search.
Semantics (see :mod:`marginlab.datasets.accounts`): a row set is the account's
book from its date's close until the account's next row set (carry forward) or
on its date only; a carried option or future leaves the book at its expiry (it
has settled); an account with an empty book (all quantities zero, or every
instrument expired) holds nothing and has no margin date.

:func:`synthetic_accounts` draws **synthetic** member accounts (not real member
data) from the reference strategies of :mod:`marginlab.models.portfolios`: long
spot, leveraged perpetuals, pair trades, baskets and option strategies (short
strangles and straddles with a partial delta hedge, covered calls, protective
puts, calendars, risk reversals), with drawn sizes, leverage, hedge ratios,
rebalancing and hedging frequencies, option tenors and deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.accounts import PositionTable
from marginlab.datasets.validate import frequency_delta

from .instruments import Future, Option, Perpetual, Position, Spot
from .portfolios import OptionLeg, OptionStrategy, Portfolio

__all__ = ["AccountBook", "account_books", "synthetic_accounts", "STRATEGY_MIX"]

_INSTRUMENT_TYPES = {"spot": Spot, "perpetual": Perpetual}
_NEVER = np.iinfo(np.int64).max  # the expiry of an undated instrument (spot, perpetual)


@dataclass(frozen=True, eq=False)
class AccountBook(Portfolio):
    """One member account's book over time, from a position table (see the module docstring).

    Parameters
    ----------
    name : str
        The account identifier.
    dates : ndarray of int64, shape (n_sets,)
        Dates of the account's row sets (UTC nanoseconds), increasing.
    books : tuple of tuple of Position
        The book of each row set (zero quantities dropped; may be empty: the account is flat).
    carry_forward : bool
        A row set holds until the next one (True) or on its date only (False).
    step_ns : int
        Nanoseconds from a row's date to its observation time (one day on daily data): used when
        ``positions_at`` is called without the market.
    source : str
        The position file the account was read from (for messages).
    """

    name: str
    dates: np.ndarray
    books: tuple[tuple[Position, ...], ...]
    carry_forward: bool = True
    step_ns: int = pd.Timedelta(days=1).value
    source: str = ""
    _assets: list[str] = field(default_factory=list, repr=False)
    _legs: tuple[np.ndarray, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        dates = np.asarray(self.dates, dtype=np.int64)
        if dates.ndim != 1 or len(dates) != len(self.books) or len(dates) == 0:
            raise ValueError(f"account {self.name!r}: dates and books must be non-empty and of the same length")
        if (np.diff(dates) <= 0).any():
            raise ValueError(f"account {self.name!r}: row-set dates must be increasing")
        dates.setflags(write=False)
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "books", tuple(tuple(b) for b in self.books))
        object.__setattr__(self, "_assets", list(dict.fromkeys(p.instrument.asset for b in self.books for p in b)))
        # the distinct legs of each row set: (set, asset, expiry in ns or never, option?), for the data mask
        legs = [(k, *leg) for k, book in enumerate(self.books) for leg in dict.fromkeys(
            (p.instrument.asset, p.instrument.expiry.value if isinstance(p.instrument, Option | Future) else _NEVER,
             isinstance(p.instrument, Option)) for p in book)]
        columns = list(zip(*legs, strict=True)) if legs else [(), (), (), ()]
        object.__setattr__(self, "_legs", (np.array(columns[0], dtype=np.int64), np.array(columns[1], dtype=object),
                                           np.array(columns[2], dtype=np.int64), np.array(columns[3], dtype=bool)))

    @property
    def assets(self) -> list[str]:
        """Assets the account ever holds."""
        return list(self._assets)

    @property
    def needs_implied_vol(self) -> bool:
        """True when the account ever holds an option."""
        return any(isinstance(p.instrument, Option) for b in self.books for p in b)

    @property
    def implied_vol_assets(self) -> list[str]:
        """Assets the account ever holds options on."""
        return list(dict.fromkeys(p.instrument.asset for b in self.books for p in b
                                  if isinstance(p.instrument, Option)))

    def _set_at(self, t_ns: int) -> int:
        """Index of the row set in force at date ``t_ns`` (-1: none)."""
        k = int(np.searchsorted(self.dates, t_ns, side="right")) - 1
        if k >= 0 and not self.carry_forward and self.dates[k] != t_ns:
            return -1
        return k

    def positions_at(self, t, market: MarketData | None = None) -> list[Position]:
        """The book held at ``t`` (empty before the first row set, or on flat dates); expired instruments left out."""
        t = pd.Timestamp(t)
        k = self._set_at(t.value)
        if k < 0:
            return []
        observed = market.observation_ns[market.loc_of(t)] if market is not None else t.value + self.step_ns
        return [p for p in self.books[k] if p.held_at(observed)]

    def _set_rows(self, market: MarketData) -> tuple[np.ndarray, np.ndarray]:
        """Per row set, the market rows ``lo[k]:hi[k]`` it is in force at (``lo == hi``: none).

        Carried forward, a set is in force at every row from its date until the next set's date, as in
        :meth:`positions_at`, whether or not its own date is a row (a set dated before the market's first
        row, or at an hour missing from an hourly panel, holds from the next row). A snapshot
        (``carry_forward=False``) holds on its date only: a snapshot dated inside the market's range on a
        date that is not a row would never be margined, and is refused (``DataError``).
        """
        index_ns = market.index.as_unit("ns").asi8
        n = len(index_ns)
        lo = np.searchsorted(index_ns, self.dates, side="left")
        if self.carry_forward:
            return lo, np.r_[lo[1:], n]
        exact = (lo < n) & (index_ns[np.minimum(lo, n - 1)] == self.dates)
        inside = (self.dates >= index_ns[0]) & (self.dates <= index_ns[-1])
        if (inside & ~exact).any():
            d = pd.Timestamp(int(self.dates[np.flatnonzero(inside & ~exact)[0]]), tz="UTC")
            where = f"{self.source}: " if self.source else ""
            raise DataError(f"{where}account {self.name!r}: the row set dated {d:%Y-%m-%d %H:%M} is not a row of the "
                            f"market data ({market.freq}; a missing hour?) and carry_forward=False holds it on that "
                            "date only")
        return lo, np.where(exact, lo + 1, lo)

    def _leg_rows(self, market: MarketData) -> tuple[np.ndarray, np.ndarray]:
        """Every (market row, leg) pair where a row set's leg is in the book: rows and indices into ``_legs``."""
        lo, hi = self._set_rows(market)
        set_id = self._legs[0]
        count = (hi - lo)[set_id]
        leg = np.repeat(np.arange(len(set_id)), count)
        rows = np.repeat(lo[set_id], count) + np.arange(len(leg)) - np.repeat(np.cumsum(count) - count, count)
        return rows, leg

    def _held_legs(self, market: MarketData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_leg_rows` and the mask over them of legs not expired at the row's close; :meth:`held`."""
        rows, leg = self._leg_rows(market)
        alive = market.observation_ns[rows] < self._legs[2][leg]
        out = np.zeros(len(market.index), dtype=bool)
        out[rows[alive]] = True
        return rows, leg, alive, out

    def held(self, market: MarketData) -> np.ndarray:
        """Boolean mask over the market's rows: True where the account holds a non-empty book."""
        return self._held_legs(market)[3]

    def _leg_data(self, market: MarketData, horizon: int) -> _LegData:
        """:meth:`_held_legs` and the data checks of each (row, leg) (:class:`_LegData`)."""
        h = int(horizon)
        n = len(market.index)
        rows, leg, alive, out = self._held_legs(market)
        _, assets, expiry_ns, is_option = self._legs
        a = np.array([market.asset_index[x] for x in assets], dtype=np.int64)[leg]
        expiry, option = expiry_ns[leg], is_option[leg]
        obs = market.observation_ns
        later = np.minimum(rows + h, n - 1)  # row t + h (clipped: rows without it fail the check below)
        price, vol = market.price_array, market.vol_array
        has_later = rows + h < n
        price_ok = ~np.isnan(price[rows, a]) & ~np.isnan(price[later, a])
        vol_ok = ~option | (~np.isnan(vol[rows, a]) & (~np.isnan(vol[later, a]) | (obs[later] >= expiry)))
        return _LegData(rows, leg, alive, out, a, has_later, price_ok, vol_ok)

    def margin_rows(self, market: MarketData, horizon: int = 1) -> np.ndarray:
        """Boolean mask over the market's rows: the account's margin dates for an MPOR of ``horizon`` observations.

        True at row t where the account holds a non-empty book (:meth:`positions_at`) and the market has
        the data that book needs: the price of each asset it holds at t and at t + h, the implied vol of
        each asset it holds options on at t, and at t + h for the options not yet expired there (an option
        expired by t + h settles at intrinsic value). Only the book held at t counts, not the assets the
        account holds on other dates. The held rows left out for missing data: :meth:`untested_rows`.
        """
        d = self._leg_data(market, horizon)
        d.held[d.rows[d.alive & ~(d.has_later & d.price_ok & d.vol_ok)]] = False  # a leg without its data at t or t+h
        return d.held

    def untested_rows(self, market: MarketData, horizon: int = 1) -> pd.Series:
        """The rows the account holds a book on but :meth:`margin_rows` leaves out, and why.

        A Series indexed by market row (int, increasing) of reasons: the data the book held at t lacks at t
        or t + h, e.g. ``"no BTC implied vol"`` or ``"no ETH price; no BTC implied vol"`` (price first, then
        implied vol, by asset in the market's order). The last h rows of the market (no row t + h: no
        book of any kind can be tested there) are not counted.
        """
        d = self._leg_data(market, horizon)
        rows, a, price_ok = d.rows, d.asset_column, d.price_ok
        bad = d.alive & d.has_later & ~(price_ok & d.vol_ok)
        if not bad.any():
            return pd.Series([], index=pd.Index([], dtype=np.int64), dtype=object)
        names = {k: x for x, k in market.asset_index.items()}
        why = pd.DataFrame({"row": rows[bad], "kind": np.where(~price_ok[bad], 0, 1), "asset": a[bad]})
        why = why.drop_duplicates().sort_values(["row", "kind", "asset"], kind="stable")
        text = [f"no {names[x]} {'price' if k == 0 else 'implied vol'}" for k, x in zip(why["kind"], why["asset"],
                                                                                      strict=True)]
        return why.assign(text=text).groupby("row", sort=True)["text"].agg("; ".join)

    def first_date(self, market: MarketData) -> pd.Timestamp:
        """The first date the account holds a book."""
        rows = np.flatnonzero(self.held(market))
        if not len(rows):
            raise DataError(f"account {self.name!r}: holds no position on any date of the market data")
        return market.index[rows[0]]


class _LegData(NamedTuple):
    """Per (row, leg) held by an account (:meth:`AccountBook._held_legs`) and the data it needs."""

    rows: np.ndarray  # the market row t
    leg: np.ndarray  # the leg held there
    alive: np.ndarray  # the leg is not expired at t
    held: np.ndarray  # over the market's rows: the account holds a non-empty book (written by margin_rows)
    asset_column: np.ndarray  # the leg's asset's column in the market
    has_later: np.ndarray  # row t + h exists
    price_ok: np.ndarray  # the asset's price at t and t + h
    vol_ok: np.ndarray  # not an option, or its implied vol at t and (not expired there) at t + h


def account_books(table: PositionTable) -> dict[str, AccountBook]:
    """One :class:`AccountBook` per account of a validated position table, in the table's account order."""
    if not isinstance(table, PositionTable):
        raise ValueError(f"account_books needs a PositionTable (marginlab.datasets.read_positions), got "
                         f"{type(table).__name__}")
    f = table.frame
    step = frequency_delta(table.freq).value
    instruments: dict[tuple, object] = {}

    def instrument(kind: str, asset: str, expiry, strike: float, option_kind: str):
        key = (kind, asset, expiry, strike, option_kind)
        inst = instruments.get(key)
        if inst is None:
            if kind == "option":
                inst = Option(asset, expiry, float(strike), option_kind)
            elif kind == "future":
                inst = Future(asset, expiry)
            else:
                inst = _INSTRUMENT_TYPES[kind](asset)
            instruments[key] = inst
        return inst

    dates_ns = pd.DatetimeIndex(f["date"]).as_unit("ns").asi8
    expiry = list(f["expiry"])
    cols = (f["account"].to_numpy(), f["instrument"].to_numpy(), f["asset"].to_numpy(),
            f["quantity"].to_numpy(float), f["strike"].to_numpy(float), f["kind"].to_numpy())
    out: dict[str, AccountBook] = {}
    account, inst, asset, qty, strike, kind = cols
    # rows are sorted by account and date: cut into accounts, then row sets
    bounds = np.flatnonzero(account[1:] != account[:-1]) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(f)], strict=True):
        set_starts = lo + np.r_[0, np.flatnonzero(dates_ns[lo + 1:hi] != dates_ns[lo:hi - 1]) + 1]
        books = []
        for a, b in zip(set_starts, np.r_[set_starts[1:], hi], strict=True):
            books.append(tuple(Position(instrument(inst[j], asset[j], expiry[j], strike[j], kind[j]), float(qty[j]))
                               for j in range(a, b) if qty[j] != 0.0))
        name = str(account[lo])
        out[name] = AccountBook(name=name, dates=dates_ns[set_starts], books=tuple(books),
                                carry_forward=table.carry_forward, step_ns=step, source=table.source)
    return out


#: The strategy menu of :func:`synthetic_accounts` and each strategy's probability of being drawn.
STRATEGY_MIX: dict[str, float] = {
    "long spot": 0.16, "long perpetual": 0.12, "short perpetual": 0.10, "pair trade": 0.10, "basket": 0.08,
    "short strangle": 0.10, "short straddle, delta-hedged": 0.07, "covered call": 0.09, "protective put": 0.07,
    "calendar spread": 0.05, "risk reversal": 0.06,
}
_LINEAR_ASSETS = ("BTC", "ETH", "SOL", "XRP")
_OPTION_ASSETS = ("BTC", "ETH")


def _linear_schedule(legs, rows, market: MarketData) -> list[tuple[int, list[Position]]]:
    """Constant-notional linear legs ``(instrument, notional)`` re-sized on each of ``rows``."""
    out = []
    for r in rows:
        out.append((r, [Position(inst, _round(notional / market.price_array[r, market.asset_index[inst.asset]]))
                        for inst, notional in legs]))
    return out


def _round(q: float) -> float:
    return float(f"{q:.8g}")


def _draw_strategy(kind: str, rng: np.random.Generator, notional: float, first: int, last: int,
                   market: MarketData, name: str) -> list[tuple[int, list[Position]]]:
    """The change points ``(row, positions)`` of one drawn strategy between market rows first .. last."""
    every = int(rng.choice([1, 7, 14, 30], p=[0.1, 0.4, 0.3, 0.2]))  # rebalancing / hedging interval, days
    rows = list(range(first, last + 1, every))
    if kind in ("long spot", "long perpetual", "short perpetual", "pair trade", "basket"):
        assets = [a for a in _LINEAR_ASSETS if np.isfinite(market.price_array[first, market.asset_index[a]])]
        if kind == "basket":
            k = int(rng.integers(2, len(assets) + 1))
            chosen = rng.choice(assets, size=k, replace=False)
            legs = [(Spot(str(a)), notional / k) for a in chosen]
        elif kind == "pair trade":
            a, b = rng.choice(assets, size=2, replace=False)
            hedge = float(rng.uniform(0.5, 1.0))  # short leg as a fraction of the long leg
            legs = [(Perpetual(str(a)), notional), (Perpetual(str(b)), -hedge * notional)]
        else:
            a = str(rng.choice(assets, p=_weights(assets)))
            sign = -1.0 if kind == "short perpetual" else 1.0
            legs = [((Spot if kind == "long spot" else Perpetual)(a), sign * notional)]
        return _linear_schedule(legs, rows, market)
    asset = str(rng.choice(_OPTION_ASSETS, p=[0.75, 0.25]))
    tenor = int(rng.choice([7, 14, 30, 60, 90], p=[0.1, 0.2, 0.4, 0.2, 0.1]))
    roll = int(rng.choice([1, 3, 7])) if tenor > 7 else 1
    delta = float(rng.choice([0.10, 0.15, 0.20, 0.25, 0.30, 0.40]))
    spot_units, hedge = 0.0, False
    if kind == "short strangle":
        legs = (OptionLeg("call", -1.0, tenor, delta), OptionLeg("put", -1.0, tenor, -delta))
    elif kind == "short straddle, delta-hedged":
        legs, hedge = (OptionLeg("call", -1.0, tenor), OptionLeg("put", -1.0, tenor)), True
    elif kind == "covered call":
        legs, spot_units = (OptionLeg("call", -1.0, tenor, delta),), float(rng.uniform(0.5, 1.0))
    elif kind == "protective put":
        legs, spot_units = (OptionLeg("put", 1.0, tenor, -delta),), float(rng.uniform(0.5, 1.0))
    elif kind == "calendar spread":
        legs = (OptionLeg("call", -1.0, tenor), OptionLeg("call", 1.0, 2 * tenor))
    else:  # risk reversal
        legs = (OptionLeg("call", 1.0, tenor, delta), OptionLeg("put", -1.0, tenor, -delta))
    strategy = OptionStrategy(name, asset, legs, roll_days=roll, notional=notional, spot_units=spot_units,
                              delta_hedge=hedge, start=market.index[first])
    hedge_ratio = float(rng.uniform(0.5, 1.0)) if hedge else 1.0
    origin = strategy._origin(market)
    openings = set(range(origin, last + 1, strategy.cycle_days))
    change = sorted(openings | (set(range(origin, last + 1, every)) if hedge else set()))
    out = []
    for r in change:
        positions = strategy.positions_at(market.index[r], market)
        positions = [Position(p.instrument, _round(p.quantity * (hedge_ratio if isinstance(p.instrument, Perpetual)
                                                                 else 1.0))) for p in positions]
        out.append((r, positions))
    return out


def _weights(assets) -> np.ndarray:
    w = np.array([{"BTC": 0.5, "ETH": 0.3}.get(a, 0.1) for a in assets])
    return w / w.sum()


def synthetic_accounts(n: int, seed: int, market: MarketData, start=None, end=None,
                       strategies: dict[str, float] | None = None, median_equity: float = 500_000.0) -> PositionTable:
    """Draw ``n`` **synthetic** member accounts (a position table; see the module docstring).

    Each account ``k`` is drawn from its own generator ``default_rng([seed, k])`` (so the first accounts
    of a larger draw are the same accounts): equity lognormal around ``median_equity`` (USD, sigma 1,
    clipped to 20k .. 50m); one to three strategies from ``strategies`` (default :data:`STRATEGY_MIX`),
    each given a share of the equity times a leverage (linear: 1-10x, lognormal around 2x; options: 1x,
    the notional of the underlying); rebalancing or delta-hedging every 1, 7, 14 or 30 rows (days on daily
    markets, hours on hourly ones); option tenors
    7-90 days, deltas 0.10-0.40, rolls 1-7 days before expiry, hedge ratios and covered fractions
    0.5-1.0. An account joins on a random date in the first quarter of ``start .. end`` and one in ten
    closes (a flat row set) in the last quarter. Books are written when they change (carry forward).

    Parameters
    ----------
    n, seed : int
    market : MarketData
        Prices (and DVOL for the option strategies) the books are sized and struck from (data at each
        row set's date only).
    start, end : optional
        First and last dates (default: the first date with BTC DVOL and the market's last date minus one).
    strategies : dict name -> probability, optional
    median_equity : float

    Returns
    -------
    PositionTable
        Carry-forward table; ``table.to_file(path)`` writes the file format of ``read_positions``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"synthetic_accounts: n must be an integer >= 1, got {n!r}")
    mix = dict(STRATEGY_MIX if strategies is None else strategies)
    unknown = sorted(set(mix) - set(STRATEGY_MIX))
    if unknown:
        raise ValueError(f"synthetic_accounts: unknown strategies {unknown}; known: {list(STRATEGY_MIX)}")
    names, probs = list(mix), np.array(list(mix.values()), dtype=float)
    probs = probs / probs.sum()
    market.require_assets([a for a in _LINEAR_ASSETS], "synthetic_accounts")
    first = market.first_complete_row(["BTC", "ETH"], implied_vol=True) if start is None else \
        int(market.index.searchsorted(pd.Timestamp(start, tz="UTC") if pd.Timestamp(start).tz is None
                                      else pd.Timestamp(start)))
    last = len(market.index) - 2 if end is None else int(market.index.searchsorted(
        pd.Timestamp(end, tz="UTC") if pd.Timestamp(end).tz is None else pd.Timestamp(end), side="right")) - 1
    if first is None or last <= first + 30:
        raise ValueError("synthetic_accounts: the date range must span more than 30 rows with BTC/ETH implied vol")
    records = []
    span = last - first
    for k in range(n):
        rng = np.random.default_rng([int(seed), k])
        account = f"ACC{k + 1:05d}"
        equity = float(np.clip(median_equity * np.exp(rng.normal(0.0, 1.0)), 2e4, 5e7))
        joined = first + int(rng.integers(0, span // 4 + 1))
        closes = rng.random() < 0.1
        left = last - int(rng.integers(0, span // 4 + 1)) if closes else last
        m = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        shares = rng.dirichlet(np.ones(m))
        changes: list[list[tuple[int, list[Position]]]] = []
        for s in range(m):
            kind = str(rng.choice(names, p=probs))
            leverage = float(np.clip(np.exp(rng.normal(np.log(2.0), 0.6)), 1.0, 10.0)) if "perpetual" in kind \
                or kind == "pair trade" else 1.0
            notional = equity * float(shares[s]) * leverage
            changes.append(_draw_strategy(kind, rng, notional, joined, left, market, f"{account}/{s}"))
        rows = sorted({r for ch in changes for r, _ in ch})
        current = [[] for _ in changes]
        pointers = [0] * len(changes)
        date_index = market.index
        for r in rows:
            for s, ch in enumerate(changes):
                while pointers[s] < len(ch) and ch[pointers[s]][0] <= r:
                    current[s] = ch[pointers[s]][1]
                    pointers[s] += 1
            book = _merge([p for ps in current for p in ps])
            for p in book or [_FLAT]:
                records.append(_record(date_index[r], account, p))
        if closes and left < last:
            records.append(_record(date_index[left + 1], account, _FLAT))
    frame = pd.DataFrame.from_records(records, columns=["date", "account", "instrument", "asset", "quantity",
                                                        "expiry", "strike", "kind"])
    frame["expiry"] = pd.to_datetime(frame["expiry"], utc=True)
    frame["row"] = np.arange(1, len(frame) + 1)
    frame = frame.sort_values(["account", "date", "row"], kind="stable").reset_index(drop=True)
    return PositionTable(frame=frame, carry_forward=True, source=f"synthetic_accounts(n={n}, seed={seed})",
                         freq=market.freq)


#: A row set holding nothing: the account is flat from its date.
_FLAT = Position(Spot("BTC"), 0.0)


def _merge(positions: list[Position]) -> list[Position]:
    """One position per instrument (quantities of the same instrument from two strategies summed)."""
    total: dict[object, float] = {}
    for p in positions:
        total[p.instrument] = total.get(p.instrument, 0.0) + p.quantity
    return [Position(inst, _round(q)) for inst, q in total.items() if q != 0.0]


def _record(date: pd.Timestamp, account: str, p: Position) -> dict:
    inst = p.instrument
    kind = {Spot: "spot", Perpetual: "perpetual", Future: "future", Option: "option"}[type(inst)]
    return {"date": date, "account": account, "instrument": kind, "asset": inst.asset, "quantity": p.quantity,
            "expiry": getattr(inst, "expiry", pd.NaT), "strike": getattr(inst, "strike", np.nan),
            "kind": getattr(inst, "kind", "") if kind == "option" else ""}
