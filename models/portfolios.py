"""Portfolios: fixed books, constant-notional books and rolling option strategies.

A portfolio answers ``positions_at(t, market)`` with a list of
:class:`~marginlab.models.instruments.Position`, reading market data at or
before ``t`` only (an option is opened at the observation time of its opening
row, with that row's close and implied vol: its tenor runs from that time to an
08:00 UTC expiry). ``reference_portfolios()`` returns the library of books a
validator would run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.conventions import YEAR, date_format, utc

from .instruments import Option, Perpetual, Position, Spot
from .pricing import black76_greeks, strike_from_delta
from .revaluation import option_vols

__all__ = [
    "Portfolio",
    "FixedBook",
    "ConstantNotionalBook",
    "OptionLeg",
    "OptionStrategy",
    "CombinedBook",
    "reference_portfolios",
    "EXPIRY_HOUR",
    "CYCLE_ANCHOR",
]

EXPIRY_HOUR = 8  # Deribit options expire at 08:00 UTC
_DAY_NS = pd.Timedelta(days=1).value
#: The anchor of :class:`OptionStrategy` roll cycles without ``start``: an observation time, the close of the
#: daily row 2021-03-24 (2021-03-25 00:00 UTC), the first Deribit DVOL close of BTC and ETH in the bundled data
#: (the first hourly row with a DVOL is observed at the same time). Fixed, so that the books do not depend on
#: the first row of the loaded panel.
CYCLE_ANCHOR = pd.Timestamp("2021-03-25 00:00", tz="UTC")
_EXPIRY_NS = pd.Timedelta(hours=EXPIRY_HOUR).value
_YEAR_NS = float(YEAR.value)


def _expiry_after_ns(time_ns: int, tenor_days: int) -> int:
    target = time_ns + tenor_days * _DAY_NS
    expiry = (target // _DAY_NS) * _DAY_NS + _EXPIRY_NS
    return expiry if expiry >= target else expiry + _DAY_NS


def expiry_after(time: pd.Timestamp, tenor_days: int) -> pd.Timestamp:
    """The first 08:00 UTC at or after ``time + tenor_days`` days (Deribit's daily expiry hour).

    A daily row's observation time is 00:00 UTC, so an option opened there with a
    30-day tenor expires 30 days and 8 hours later.
    """
    return pd.Timestamp(_expiry_after_ns(utc(time).value, tenor_days), tz="UTC")


class Portfolio:
    """Base class of books (each has a ``name``). Subclasses implement :meth:`positions_at`."""

    @property
    def assets(self) -> list[str]:
        """Underlying assets the book can hold."""
        raise NotImplementedError

    @property
    def needs_implied_vol(self) -> bool:
        """True if the book holds options (it then needs implied vol data)."""
        return False

    @property
    def implied_vol_assets(self) -> list[str]:
        """Assets whose implied vol the book needs (those it holds options on; default: all when it holds any)."""
        return self.assets if self.needs_implied_vol else []

    @property
    def position_count(self) -> int | None:
        """How many positions the book holds on a date with all its legs (None: not known without a market).

        A book of one position has no offset to recognise (its margin is its leg's standalone margin).
        """
        return None

    def positions_at(self, t: pd.Timestamp, market: MarketData | None = None) -> list[Position]:
        """Positions held at ``t`` (frozen over the MPOR after ``t``)."""
        raise NotImplementedError

    def first_date(self, market: MarketData) -> pd.Timestamp:
        """First date on which the book can be built from ``market`` (and holds a book, :meth:`held`)."""
        row = self._first_row(market)
        held = self.held(market)
        if held is not None:
            rows = np.flatnonzero(held[row:])
            if not len(rows):
                raise DataError(f"portfolio {self.name!r}: holds no book on any date of the market data")
            row += int(rows[0])
        return market.index[row]

    def held(self, market: MarketData) -> np.ndarray | None:
        """Boolean mask over the market's rows where the portfolio holds a book (None: on every date)."""
        return None

    def margin_rows(self, market: MarketData, horizon: int = 1) -> np.ndarray:
        """Boolean mask over the market's rows: the book's margin dates for an MPOR of ``horizon`` observations.

        True at row t where the book holds positions (:meth:`held`) and the market has the price of each of
        its assets, and the implied vol of each asset it holds options on (:attr:`implied_vol_assets`), at
        t and at t + h. (A member account, :class:`~marginlab.models.accounts.AccountBook`, needs only the
        data of the book it holds at t.)
        """
        h = int(horizon)
        ok = ~np.isnan(market.price_array[:, [market.asset_index[a] for a in self.assets]]).any(axis=1)
        if self.needs_implied_vol:
            ok &= ~np.isnan(market.vol_array[:, [market.asset_index[a] for a in self.implied_vol_assets]]).any(axis=1)
        out = ok.copy()
        out[: len(ok) - h] &= ok[h:]
        out[len(ok) - h:] = False
        held = self.held(market)
        return out if held is None else out & held  # a book that holds nothing on some dates

    def _first_row(self, market: MarketData) -> int:
        if any(a not in market.asset_index for a in self.assets):
            market.require_assets(self.assets, f"portfolio {self.name!r}")
        row = market.first_complete_row(self.assets, implied_vol=self.needs_implied_vol)
        if row is None:
            raise DataError(f"portfolio {self.name!r}: market data has no date with prices"
                            f"{' and implied vol' if self.needs_implied_vol else ''} for {self.assets}")
        return row


@dataclass(frozen=True)
class FixedBook(Portfolio):
    """A static list of positions held on every date."""

    name: str
    positions: tuple[Position, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", tuple(self.positions))
        if not self.positions:
            raise ValueError(f"portfolio {self.name!r}: no positions")
        for k, p in enumerate(self.positions):
            if not isinstance(p, Position):
                raise ValueError(f"portfolio {self.name!r}: item {k} is not a Position ({p!r})")

    @property
    def assets(self) -> list[str]:
        """Assets in first-seen order."""
        return list(dict.fromkeys(p.instrument.asset for p in self.positions))

    @property
    def needs_implied_vol(self) -> bool:
        """True if any position is an option."""
        return any(isinstance(p.instrument, Option) for p in self.positions)

    @property
    def implied_vol_assets(self) -> list[str]:
        """Assets the book holds options on."""
        return list(dict.fromkeys(p.instrument.asset for p in self.positions if isinstance(p.instrument, Option)))

    @property
    def position_count(self) -> int:
        """The positions of the book (:attr:`Portfolio.position_count`)."""
        return len(self.positions)

    def positions_at(self, t, market=None) -> list[Position]:
        """The fixed positions (independent of ``t``)."""
        return list(self.positions)


@dataclass(frozen=True)
class ConstantNotionalBook(Portfolio):
    """Linear book re-sized every day to a constant notional per instrument.

    ``legs`` maps an instrument to its signed notional in the quote currency;
    the quantity at t is notional / S_t (data at t only).
    """

    name: str
    legs: tuple[tuple[Spot | Perpetual, float], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "legs", tuple(self.legs))
        if not self.legs:
            raise ValueError(f"portfolio {self.name!r}: no legs")
        for inst, notional in self.legs:
            if not np.isfinite(notional):
                raise ValueError(f"portfolio {self.name!r}: notional for {inst.label} must be finite, got {notional}")

    @property
    def assets(self) -> list[str]:
        """Assets in first-seen order."""
        return list(dict.fromkeys(inst.asset for inst, _ in self.legs))

    @property
    def position_count(self) -> int:
        """One position per leg (:attr:`Portfolio.position_count`)."""
        return len(self.legs)

    def positions_at(self, t, market=None) -> list[Position]:
        """Quantities notional / S_t."""
        if market is None:
            raise ValueError(f"portfolio {self.name!r}: positions_at needs the market data")
        i = market.loc_of(t)
        out = []
        for inst, notional in self.legs:
            if inst.asset not in market.asset_index:
                raise DataError(f"portfolio {self.name!r}: unknown asset {inst.asset!r}; the market data has "
                                f"{market.assets}")
            price = market.price_array[i, market.asset_index[inst.asset]]
            if not np.isfinite(price):
                raise DataError(f"portfolio {self.name!r}: no {inst.asset} price at {t}")
            out.append(Position(inst, notional / price))
        return out


@dataclass(frozen=True)
class OptionLeg:
    """One option leg of a rolling strategy.

    ``delta`` is the target Black-76 delta at opening (None: at the money,
    strike = spot); ``units`` is the signed quantity per unit of the strategy
    size (e.g. -1 for a short leg); ``tenor_days`` the days to expiry when opened.
    """

    kind: str
    units: float
    tenor_days: int = 30
    delta: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("call", "put"):
            raise ValueError(f"OptionLeg: kind must be 'call' or 'put', got {self.kind!r}")
        if self.tenor_days < 1:
            raise ValueError(f"OptionLeg: tenor_days must be >= 1, got {self.tenor_days}")


@dataclass(frozen=True)
class OptionStrategy(Portfolio):
    """Options opened at a target delta and tenor, rolled before expiry.

    All legs are opened together at the start of each roll cycle and reopened
    every ``tenor_days - roll_days`` days of the shortest leg, i.e. when it has
    ``roll_days`` left. The cycles are anchored at a fixed time that does not
    depend on the loaded panel: :data:`CYCLE_ANCHOR` (the close of 2021-03-24, the
    first Deribit DVOL close of BTC and ETH in the bundled data), or the close of
    the row labelled ``start`` when given (no position before it). A cycle starts
    at anchor + k x cycle (any integer k); its options are opened at the first row
    observed at or after that time (hourly panels keep maintenance gaps). A date
    whose cycle started before the panel's first row, or at a row without a price
    and implied vol, holds no position (:meth:`held`): a panel loaded from a later
    date holds the same options on the same dates as the full history. The size is set at each opening so that one unit
    is ``notional / S_open`` of the underlying. Optional linear legs: a spot
    holding of ``spot_units`` x size (covered call, protective put) and a daily
    delta hedge in the perpetual (``delta_hedge=True``: quantity = minus the
    options' Black-76 delta at t, from data at t).
    """

    name: str
    asset: str
    legs: tuple[OptionLeg, ...]
    roll_days: int = 7
    notional: float = 1_000_000.0
    spot_units: float = 0.0
    delta_hedge: bool = False
    start: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "legs", tuple(self.legs))
        if not self.legs:
            raise ValueError(f"portfolio {self.name!r}: no option legs")
        shortest = min(leg.tenor_days for leg in self.legs)
        if not 0 <= self.roll_days < shortest:
            raise ValueError(f"portfolio {self.name!r}: roll_days must be in [0, {shortest}), got {self.roll_days}")
        if not self.notional > 0:
            raise ValueError(f"portfolio {self.name!r}: notional must be positive")

    @property
    def assets(self) -> list[str]:
        """The single underlying."""
        return [self.asset]

    @property
    def needs_implied_vol(self) -> bool:
        """Option books need implied vol."""
        return True

    @property
    def cycle_days(self) -> int:
        """Days between two openings."""
        return min(leg.tenor_days for leg in self.legs) - self.roll_days

    def _anchor_ns(self, market: MarketData) -> int:
        """The cycles' anchor (ns, an observation time): the close of the row labelled ``start``, or CYCLE_ANCHOR."""
        if self.start is not None:
            return int(utc(self.start).value + market.step.value)
        return int(CYCLE_ANCHOR.value)

    def _opening_rows(self, market: MarketData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``rows``: the start of its roll cycle (ns) and the row its options were opened at (-1: none).

        None where the cycle started before the panel's first observation, before ``start``, or at a row
        without a price and implied vol of the asset.
        """
        obs = market.observation_ns
        anchor = self._anchor_ns(market)
        cycle = self.cycle_days * _DAY_NS
        begins = anchor + ((obs[rows] - anchor) // cycle) * cycle
        opened = np.searchsorted(obs, begins)  # the first row at or after the cycle start (hourly gaps kept)
        a = market.asset_index[self.asset]
        found = np.minimum(opened, len(obs) - 1)
        ok = (begins >= obs[0]) & np.isfinite(market.price_array[found, a]) & np.isfinite(market.vol_array[found, a])
        if self.start is not None:
            ok &= obs[rows] >= anchor
        return begins, np.where(ok, opened, -1)

    def _origin(self, market: MarketData) -> int:
        """The panel's first opening row (the first row holding a position, opened there)."""
        rows = np.arange(len(market.index))
        opened = self._opening_rows(market, rows)[1]
        first = np.flatnonzero(opened == rows)
        if not len(first):
            raise DataError(f"portfolio {self.name!r}: no roll cycle of {self.cycle_days} days starts at a row with "
                            f"{self.asset} price and implied vol in the market data")
        return int(first[0])

    def held(self, market: MarketData) -> np.ndarray:
        """Rows whose options were opened inside the panel, at a row with a price and implied vol (class docstring)."""
        self._first_row(market)  # checks the asset
        return self._opening_rows(market, np.arange(len(market.index)))[1] >= 0

    def _opening_row(self, i: int, market: MarketData) -> int:
        """Row at which the options held at row ``i`` were opened (at the start of its roll cycle)."""
        begins, opened = self._opening_rows(market, np.array([i]))
        if opened[0] < 0:
            begun = pd.Timestamp(int(begins[0]), tz="UTC")
            date = market.index[i].strftime(date_format(market.freq))
            raise DataError(f"portfolio {self.name!r}: no position at {date}: its roll cycle began at "
                            f"{begun:%Y-%m-%d %H:%M} UTC, before the market data, before start or at a row without "
                            f"{self.asset} price and implied vol")
        return int(opened[0])

    def _opening(self, row: int, market: MarketData) -> list[Position]:
        """The positions opened at ``row``: sizes from its close, strikes from the close and the ATM vol.

        A delta-``d`` strike solves Black-76 delta = d at the at-the-money vol of
        the row's vol regime (:func:`~marginlab.models.revaluation.option_vols` at
        K = S) for the leg's time to expiry.
        """
        a = market.asset_index[self.asset]
        spot, level = float(market.price_array[row, a]), float(market.vol_array[row, a])
        if not (np.isfinite(spot) and np.isfinite(level)):
            raise DataError(f"portfolio {self.name!r}: no {self.asset} price or implied vol on opening "
                            f"date {market.index[row]:%Y-%m-%d %H:%M}")
        opened = int(market.observation_ns[row])
        size = self.notional / spot
        expiries = [_expiry_after_ns(opened, leg.tenor_days) for leg in self.legs]
        taus = np.array([(e - opened) / _YEAR_NS for e in expiries])
        atm = option_vols(market, self.asset, row, level, spot, spot, taus)  # ATM vol per leg's tenor
        positions = []
        for k, leg in enumerate(self.legs):
            strike = spot if leg.delta is None else strike_from_delta(spot, taus[k], atm[k], leg.delta,
                                                                     leg.kind == "call")
            option = Option(self.asset, pd.Timestamp(expiries[k], tz="UTC"), float(np.float64(strike).round(2)),
                            leg.kind)
            positions.append(Position(option, leg.units * size))
        if self.spot_units:
            positions.append(Position(Spot(self.asset), self.spot_units * size))
        return positions

    @property
    def position_count(self) -> int:
        """The option legs, the spot holding and the perpetual hedge (:attr:`Portfolio.position_count`)."""
        return len(self.legs) + bool(self.spot_units) + bool(self.delta_hedge)

    def positions_at(self, t, market=None) -> list[Position]:
        """Positions at ``t`` (data at or before the observation time of ``t`` only)."""
        if market is None:
            raise ValueError(f"portfolio {self.name!r}: positions_at needs the market data")
        i = market.loc_of(t)
        positions = self._opening(self._opening_row(i, market), market)
        if self.delta_hedge:
            # hedge ratio: Black-76 delta at each option's mark vol (the row's vol regime), from t's close
            a = market.asset_index[self.asset]
            spot, level = float(market.price_array[i, a]), float(market.vol_array[i, a])
            opts = [p for p in positions if isinstance(p.instrument, Option)]
            strikes = np.array([p.instrument.strike for p in opts])
            tau = market.years_to(i, np.array([p.instrument.expiry.value for p in opts], dtype=np.int64))
            vols = option_vols(market, self.asset, i, level, strikes, spot, tau)
            g = black76_greeks(spot, strikes, tau, vols, np.array([p.instrument.is_call for p in opts]))
            net_delta = float(np.sum(g["delta"] * np.array([p.quantity for p in opts])))
            positions.append(Position(Perpetual(self.asset), -net_delta))
        return positions


@dataclass(frozen=True)
class CombinedBook(Portfolio):
    """Several books held together as one account: their positions side by side on every date.

    Each part keeps its own rules (sizes, rolls, hedges); the combined book holds every part's
    positions, so a portfolio-margin model sees their offsets (e.g. options on two underlyings).
    """

    name: str
    parts: tuple[Portfolio, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        if not self.parts:
            raise ValueError(f"portfolio {self.name!r}: no parts")
        for k, p in enumerate(self.parts):
            if not isinstance(p, Portfolio):
                raise ValueError(f"portfolio {self.name!r}: part {k} is not a Portfolio ({p!r})")

    @property
    def assets(self) -> list[str]:
        """Assets of the parts in first-seen order."""
        return list(dict.fromkeys(a for p in self.parts for a in p.assets))

    @property
    def needs_implied_vol(self) -> bool:
        """True if any part holds options."""
        return any(p.needs_implied_vol for p in self.parts)

    def held(self, market: MarketData) -> np.ndarray | None:
        """Rows where every part holds a book (None: every row)."""
        masks = [m for m in (p.held(market) for p in self.parts) if m is not None]
        return np.logical_and.reduce(masks) if masks else None

    @property
    def position_count(self) -> int | None:
        """The parts' positions added up (None when a part's is not known)."""
        counts = [p.position_count for p in self.parts]
        return None if any(c is None for c in counts) else sum(counts)

    def positions_at(self, t, market=None) -> list[Position]:
        """Every part's positions at ``t``, in the parts' order."""
        return [pos for p in self.parts for pos in p.positions_at(t, market)]


def reference_portfolios(notional: float = 1_000_000.0) -> dict[str, Portfolio]:
    """The reference books, named as validators name them, each of ``notional`` (USD).

    Linear books are re-sized daily to constant notional; option books open
    ``notional / S`` units of the underlying and roll (30-day tenor, rolled with
    7 days left) on cycles anchored at 2021-03-24's close, the first day of Deribit DVOL
    (:data:`CYCLE_ANCHOR`, whatever the first row of the loaded panel). Two books exercise
    portfolio-margin offsets: short BTC and long ETH ATM straddles, each delta-hedged
    daily with its perpetual (offsets across underlyings and between the perpetual and
    the option expiries), and a long 60-day BTC ATM call delta-hedged daily with the
    perpetual, rolled with 30 days left (the undated perpetual against a dated option:
    a calendar of delta across tiers).
    """
    n = float(notional)
    btc_perp, eth_perp = Perpetual("BTC"), Perpetual("ETH")
    books: list[Portfolio] = [
        ConstantNotionalBook("long BTC spot", ((Spot("BTC"), n),)),
        ConstantNotionalBook("short BTC perpetual", ((btc_perp, -n),)),
        ConstantNotionalBook("long BTC / short ETH perpetuals", ((btc_perp, n), (eth_perp, -n))),
        ConstantNotionalBook("equal-weight BTC-ETH-SOL-XRP basket",
                             tuple((Spot(a), n / 4) for a in ("BTC", "ETH", "SOL", "XRP"))),
        OptionStrategy("short BTC ATM straddle, delta-hedged daily", "BTC",
                       (OptionLeg("call", -1.0), OptionLeg("put", -1.0)), notional=n, delta_hedge=True),
        OptionStrategy("short BTC 25-delta strangle (30d, rolled at 7d)", "BTC",
                       (OptionLeg("call", -1.0, delta=0.25), OptionLeg("put", -1.0, delta=-0.25)), notional=n),
        OptionStrategy("BTC covered call (25-delta, 30d)", "BTC", (OptionLeg("call", -1.0, delta=0.25),),
                       notional=n, spot_units=1.0),
        OptionStrategy("BTC protective put (25-delta, 30d)", "BTC", (OptionLeg("put", 1.0, delta=-0.25),),
                       notional=n, spot_units=1.0),
        OptionStrategy("BTC ATM call calendar spread (short 30d / long 60d)", "BTC",
                       (OptionLeg("call", -1.0, tenor_days=30), OptionLeg("call", 1.0, tenor_days=60)), notional=n),
        OptionStrategy("BTC 25-delta risk reversal (long call / short put)", "BTC",
                       (OptionLeg("call", 1.0, delta=0.25), OptionLeg("put", -1.0, delta=-0.25)), notional=n),
        OptionStrategy("short ETH 25-delta strangle (30d, rolled at 7d)", "ETH",
                       (OptionLeg("call", -1.0, delta=0.25), OptionLeg("put", -1.0, delta=-0.25)), notional=n),
        CombinedBook("short BTC / long ETH ATM straddles, each delta-hedged with its perpetual", (
            OptionStrategy("short BTC ATM straddle leg", "BTC", (OptionLeg("call", -1.0), OptionLeg("put", -1.0)),
                           notional=n, delta_hedge=True),
            OptionStrategy("long ETH ATM straddle leg", "ETH", (OptionLeg("call", 1.0), OptionLeg("put", 1.0)),
                           notional=n, delta_hedge=True))),
        OptionStrategy("BTC perpetual vs long 60d ATM call (delta-hedged daily, rolled at 30d)", "BTC",
                       (OptionLeg("call", 1.0, tenor_days=60),), roll_days=30, notional=n, delta_hedge=True),
    ]
    return {b.name: b for b in books}

