"""Market inputs with the time each value became known, and their alignment into a `MarketData` panel.

Every raw input carries the UTC time at which a market participant could
first have known it:

========================  ==================================================================
input                     known at
========================  ==================================================================
price bar labelled L      its close, ``L + step`` (CryptoDataDownload bars are labelled by
                          their open time; the next bar opens at this close)
traded volume of bar L    with the bar's close, ``L + step`` (quote currency traded in the bar)
DVOL daily close of D     D 24:00 (the source keeps the last bar of each UTC day)
funding of day D          D 24:00 (the bundled Binance series is the mean of the day's
                          00:00, 08:00 and 16:00 prints)
option-chain snapshot     its quote time (00:00 US/Eastern: 04:00 or 05:00 UTC)
========================  ==================================================================

:meth:`MarketInputs.known_at` keeps what was known at a time (the
no-look-ahead test rebuilds the market from it); :meth:`MarketInputs.to_market`
aligns the inputs on the panel's observation times, so a value appears only at
rows observed at or after the time it became known:

* implied vol at row i: the last value known at the row's observation time, if
  it is less than one day old (hourly rows of day D carry DVOL of D-1, except
  the last hour, observed at D 24:00 with the daily row, which carries DVOL of
  D; NaN where the series has ended or not begun);
* traded volume is aligned like the prices (a bar's volume is known with its close);
* funding is a flow: each day's funding is booked once, at the first row
  observed at or after the time it became known (daily panels: the row of the
  day; hourly panels: the hour closing at 24:00), so a row's funding is what
  was paid over its period and sums agree across frequencies; a row inside a
  funding period that books nothing carries 0 (the other hours of the day on
  hourly panels), a row outside the series' coverage NaN (no data: never 0);
* the smile is fitted once per snapshot against the last DVOL known at the
  snapshot (:mod:`marginlab.datasets.smile`) and kept as a table with its
  quote times; :class:`MarketData` derives the regime in force at each row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .conventions import utc
from .errors import DataError
from .market import MarketData
from .smile import fit_smiles
from .validate import frequency_delta

__all__ = ["MarketInputs"]

#: Largest age at which a daily level (DVOL) still counts as the current value.
LEVEL_MAX_AGE = pd.Timedelta(days=1)
#: The asset of the bundled option chains.
CHAIN_ASSET = "BTC"


def _known_before(series: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    return series.loc[series.index <= as_of]


@dataclass(frozen=True)
class MarketInputs:
    """Raw market inputs of one panel, each indexed by the time it became known (see module docstring).

    Attributes
    ----------
    freq : {"1d", "1h"}
        Bar length of the prices.
    prices : dict of str -> Series
        Closes per asset, indexed by the bar label (known at label + step).
    implied_vol : dict of str -> Series
        Implied-vol levels (decimal) per asset, indexed by the time each became known.
    funding : dict of str -> Series
        Funding paid by longs (fraction of notional) per accrual period, indexed
        by the time the period's funding became known.
    option_chains : DataFrame or None
        Chain snapshots (``quote_time`` is when each became known).
    volume : dict of str -> Series
        Quote-currency volume traded in each bar per asset, indexed like the prices (by bar label, known
        with the bar's close).
    """

    freq: str
    prices: dict[str, pd.Series]
    implied_vol: dict[str, pd.Series] = field(default_factory=dict)
    funding: dict[str, pd.Series] = field(default_factory=dict)
    option_chains: pd.DataFrame | None = None
    volume: dict[str, pd.Series] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frequency_delta(self.freq)
        if not self.prices:
            raise DataError("MarketInputs: no price series")

    @property
    def step(self) -> pd.Timedelta:
        """Bar length of the prices."""
        return frequency_delta(self.freq)

    def known_at(self, as_of) -> MarketInputs:
        """The inputs a participant knew at ``as_of`` (UTC): bars closed, levels and snapshots published by then."""
        ts = utc(as_of)
        chains = self.option_chains
        if chains is not None:
            chains = chains.loc[chains["quote_time"] <= ts]
        return replace(
            self,
            prices={a: s.loc[s.index + self.step <= ts] for a, s in self.prices.items()},
            volume={a: s.loc[s.index + self.step <= ts] for a, s in self.volume.items()},
            implied_vol={a: _known_before(s, ts) for a, s in self.implied_vol.items()},
            funding={a: _known_before(s, ts) for a, s in self.funding.items()},
            option_chains=chains,
        )

    def index(self) -> pd.DatetimeIndex:
        """Row labels: the full calendar for daily bars, the union of the observed hours for hourly bars."""
        series = [s for s in self.prices.values() if len(s)]
        if not series:
            raise DataError("MarketInputs: no price known (every price series is empty)")
        if self.freq == "1d":
            first = min(s.index[0] for s in series)
            last = max(s.index[-1] for s in series)
            return pd.date_range(first, last, freq=self.step, name="time")
        # hourly exports have exchange-maintenance gaps (kept, never filled): the index is the union of
        # the observed hours, so a return across a gap spans the missing hours
        full = series[0].index
        for s in series[1:]:
            full = full.union(s.index)
        return full.rename("time")

    def to_market(self, index: pd.DatetimeIndex) -> MarketData:
        """Align the inputs on the rows ``index`` (labels) and return the panel (see module docstring)."""
        assets = list(self.prices)
        prices = pd.DataFrame({a: s.reindex(index) for a, s in self.prices.items()}, index=index)
        obs_index = index + self.step
        obs = obs_index.as_unit("ns").asi8
        iv = pd.DataFrame(np.nan, index=index, columns=assets)
        for a, s in self.implied_vol.items():
            if a in iv.columns:
                iv[a] = _level_at(s, obs)
        funding = pd.DataFrame(np.nan, index=index, columns=assets)
        for a, s in self.funding.items():
            if a in funding.columns:
                funding[a] = _flow_at(s, obs, self.step.value)
        smile = None
        if self.option_chains is not None and CHAIN_ASSET in self.implied_vol:
            smile = fit_smiles(self.option_chains, self.implied_vol[CHAIN_ASSET], asset=CHAIN_ASSET)
        volume = None
        if self.volume:
            volume = pd.DataFrame(np.nan, index=index, columns=assets)
            for a, s in self.volume.items():
                if a in volume.columns:
                    volume[a] = s.reindex(index).to_numpy(float)
        return MarketData(prices=prices, implied_vol=iv, funding=funding, freq=self.freq,
                          option_chains=self.option_chains, smile=smile, volume=volume)


def _level_at(series: pd.Series, obs: np.ndarray) -> np.ndarray:
    """Last value of ``series`` (indexed by known time) known at each observation time, if under a day old."""
    out = np.full(len(obs), np.nan)
    if series.empty:
        return out
    known = pd.DatetimeIndex(series.index).as_unit("ns").asi8
    k = np.searchsorted(known, obs, side="right") - 1
    ok = k >= 0
    kk = np.where(ok, k, 0)
    ok &= obs - known[kk] < LEVEL_MAX_AGE.value
    out[ok] = series.to_numpy(float)[kk[ok]]
    return out


def _flow_at(series: pd.Series, obs: np.ndarray, step_ns: int) -> np.ndarray:
    """Book each value of ``series`` (indexed by known time) at the first row observed at or after it.

    A value is booked at row r when obs[r-1] < known <= obs[r] (row 0: within one step before
    obs[0]); values outside the panel are dropped; values landing on one row are summed. Each value
    covers the period (known - period, known], the period being the series' shortest spacing (one
    step for a single value): a row observed inside a covered period without a booking gets 0 (it
    paid nothing yet: the period's funding is booked at its end); rows outside every period stay NaN.
    """
    out = np.full(len(obs), np.nan)
    if series.empty or not len(obs):
        return out
    known = pd.DatetimeIndex(series.index).as_unit("ns").asi8
    r = np.searchsorted(obs, known, side="left")
    inside = (r < len(obs)) & (known > np.where(r > 0, obs[np.maximum(r - 1, 0)], obs[0] - step_ns))
    values = series.to_numpy(float)
    booked = np.zeros(len(obs))
    hit = np.zeros(len(obs), dtype=bool)
    np.add.at(booked, r[inside], values[inside])
    hit[r[inside]] = True
    out[hit] = booked[hit]
    spacing = np.diff(known)
    period = int(spacing[spacing > 0].min()) if (spacing > 0).any() else step_ns
    k = np.searchsorted(known, obs, side="left")  # the first value known at or after each observation
    covered = (k < len(known)) & (known[np.minimum(k, len(known) - 1)] - period < obs)
    out[covered & ~hit] = 0.0
    return out
