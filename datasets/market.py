"""`MarketData`: the aligned UTC panel every model and the engine read.

Clock (:mod:`marginlab.datasets.conventions`): row labels are bar open times and
a row holds the bar's close, so row i is **observed** at
``observation_time[i] = label + step`` (daily row D: D 24:00 UTC; hourly row H:
H + 1 h). Every time difference is taken between observation times; a value
enters the panel only at rows observed at or after the time it became known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from .conventions import YEAR, observation_times, utc
from .errors import DataError
from .smile import SMILE_COLUMNS, smile_regimes
from .validate import frequency_delta

__all__ = ["MarketData"]


def _log_change(values: np.ndarray) -> np.ndarray:
    out = np.full_like(values, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = np.log(values[1:] / values[:-1])
    return out


@dataclass(frozen=True)
class MarketData:
    """Aligned market panel on one UTC time index.

    The index holds row **labels** (bar open times: what result frames call
    ``date``); row i is observed at :attr:`observation_time` ``[i]`` = label +
    one step (a daily row labelled D is the close at D 24:00 UTC, an hourly row
    labelled H the close at H + 1 h).

    Attributes
    ----------
    prices : DataFrame of shape (n_times, n_assets)
        Close prices in the quote currency, one column per asset, observed at
        the row's observation time. NaN only before an asset's first or after
        its last observation (listing dates differ); never inside an asset's
        history.
    implied_vol : DataFrame of shape (n_times, n_assets)
        Annualised implied volatility as a decimal (0.65 = 65%): the last value
        known at the row's observation time; NaN where the asset has none.
    funding : DataFrame of shape (n_times, n_assets) or None
        Funding paid by longs over the row's period [previous observation
        time, this observation time) as a fraction of notional (NaN where
        unknown); the realised P&L from row i to row j charges rows i+1 .. j.
    freq : {"1d", "1h"}
        Sampling step of the index.
    option_chains : DataFrame or None
        End-of-day option chains (see :func:`load_option_chains`), the raw input
        of the smile; ``None`` when not loaded.
    smile : DataFrame or None
        The smile fitted once per chain snapshot at load
        (:func:`marginlab.datasets.smile.fit_smiles`: ``asset``, ``quote_time``
        = when it became known, ``date``, ``dvol``, ``dvol_time``, ``b0`` ..
        ``b3``); :meth:`smile_coefficients` gives the regime in force at each
        row. ``None``: flat DVOL everywhere.
    volume : DataFrame of shape (n_times, n_assets) or None
        Quote-currency volume traded in the row's bar (observed with its
        close; the bundled OHLCV ``volume_quote``), NaN where unknown; None
        when the panel has no volume (e.g. a user's price file).
    """

    prices: pd.DataFrame
    implied_vol: pd.DataFrame
    funding: pd.DataFrame | None = None
    freq: str = "1d"
    option_chains: pd.DataFrame | None = field(default=None, repr=False)
    smile: pd.DataFrame | None = field(default=None, repr=False)
    volume: pd.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        frequency_delta(self.freq)
        if not self.prices.index.equals(self.implied_vol.index):
            raise DataError("MarketData: implied_vol index differs from prices index")
        if self.funding is not None and not self.prices.index.equals(self.funding.index):
            raise DataError("MarketData: funding index differs from prices index")
        if self.volume is not None and not self.prices.index.equals(self.volume.index):
            raise DataError("MarketData: volume index differs from prices index")
        if self.smile is not None:
            missing = sorted({"asset", "quote_time", *SMILE_COLUMNS} - set(self.smile.columns))
            if missing:
                raise DataError(f"MarketData: smile table lacks column(s) {missing}")
        for asset in self.prices.columns:
            col = self.prices[asset]
            valid = col.notna().to_numpy()
            if not valid.any():
                continue
            first, last = valid.argmax(), len(valid) - 1 - valid[::-1].argmax()
            inner = ~valid[first:last + 1]
            if inner.any():
                raise DataError(f"MarketData: prices column {asset!r} has NaN inside its history "
                                f"at {self.index[first:last + 1][inner][:5].tolist()}")
            if (col.to_numpy()[valid] <= 0).any():
                bad = self.index[valid][col.to_numpy()[valid] <= 0]
                raise DataError(f"MarketData: prices column {asset!r} has non-positive values at "
                                f"{bad[:5].tolist()}")

    @cached_property
    def price_array(self) -> np.ndarray:
        """Prices as a float ndarray of shape (n_times, n_assets) (read-only view for kernels)."""
        return self.prices.to_numpy(dtype=float, copy=True)

    @cached_property
    def vol_array(self) -> np.ndarray:
        """Implied vols as a float ndarray of shape (n_times, n_assets)."""
        return self.implied_vol.to_numpy(dtype=float, copy=True)

    @cached_property
    def log_return_array(self) -> np.ndarray:
        """Log returns log(P_t / P_{t-1}), shape (n_times, n_assets); NaN in the first row and where undefined."""
        return _log_change(self.price_array)

    @cached_property
    def log_vol_change_array(self) -> np.ndarray:
        """Log changes of implied vol, shape (n_times, n_assets); NaN in the first row and where undefined."""
        return _log_change(self.vol_array)

    @cached_property
    def volume_array(self) -> np.ndarray | None:
        """Traded volume (quote currency per bar) as a float ndarray of shape (n_times, n_assets), or None."""
        return None if self.volume is None else self.volume.reindex(columns=self.prices.columns).to_numpy(
            dtype=float, copy=True)

    @cached_property
    def funding_array(self) -> np.ndarray | None:
        """Funding as a float ndarray of shape (n_times, n_assets), or None."""
        return None if self.funding is None else self.funding.to_numpy(dtype=float, copy=True)

    @property
    def step(self) -> pd.Timedelta:
        """Nominal time between two observations (one day or one hour)."""
        return frequency_delta(self.freq)

    @cached_property
    def observation_time(self) -> pd.DatetimeIndex:
        """Observation time of every row (UTC): the label plus one step (the bar's close)."""
        return observation_times(self.index, self.freq)

    @cached_property
    def observation_ns(self) -> np.ndarray:
        """Observation times as int64 nanoseconds since the epoch, shape (n_times,) (read-only)."""
        out = self.observation_time.as_unit("ns").asi8.copy()
        out.setflags(write=False)
        return out

    def horizon_years(self, horizon: float) -> float:
        """``horizon`` observations in years at the nominal step: ``horizon x step / 365 days``.

        A model at t does not know the future observation times; it ages by the
        nominal step (a gap in the data is only known once it happened).
        """
        return float(horizon) * float(self.step.value) / float(YEAR.value)

    def years_to(self, i: int, times) -> np.ndarray:
        """Years of 365 days from the observation time of row ``i`` to ``times`` (int64 ns or timestamps)."""
        ns = np.asarray(times) if isinstance(times, np.ndarray) and times.dtype.kind == "i" else \
            pd.DatetimeIndex(times).as_unit("ns").asi8
        return (ns - self.observation_ns[i]) / float(YEAR.value)

    def last_observed(self, time) -> int:
        """Position of the last row observed at or before ``time`` (-1 if none)."""
        return int(np.searchsorted(self.observation_ns, utc(time).value, side="right")) - 1

    def first_complete_row(self, assets, implied_vol: bool = False) -> int | None:
        """First row where every asset of ``assets`` has a price (and an implied vol); None if none.

        Memoised per (assets, implied_vol): the panel is immutable.
        """
        key = (tuple(assets), bool(implied_vol))
        memo = self._first_rows
        if key not in memo:
            cols = [self.asset_index[a] for a in key[0]]
            ok = np.isfinite(self.price_array[:, cols]).all(axis=1)
            if implied_vol:
                ok &= np.isfinite(self.vol_array[:, cols]).all(axis=1)
            memo[key] = int(ok.argmax()) if ok.any() else None
        return memo[key]

    @cached_property
    def _first_rows(self) -> dict:
        return {}

    def smile_coefficients(self, asset: str) -> np.ndarray | None:
        """Smile coefficients (b0, b1, b2, b3) in force at each row for ``asset``, or None (flat DVOL).

        ndarray of shape (n_times, 4), read-only: a snapshot's fitted smile at
        rows observed within 96 hours after its quote time; ``(b0, 0, 0, 0)``,
        flat at DVOL x b0 (DVOL mapped to the ATM level), at later rows; NaN
        (flat DVOL) before the first snapshot. Computed once from :attr:`smile`
        and the observation times (:func:`marginlab.datasets.smile.smile_regimes`).
        """
        return self._smile_rows.get(asset)

    @cached_property
    def _smile_rows(self) -> dict[str, np.ndarray]:
        if self.smile is None:
            return {}
        out = {}
        for asset, table in self.smile.groupby("asset", sort=False):
            coefs = smile_regimes(table, self.observation_ns)
            coefs.setflags(write=False)
            out[asset] = coefs
        return out

    @cached_property
    def asset_index(self) -> dict[str, int]:
        """Column position of each asset."""
        return {a: k for k, a in enumerate(self.prices.columns)}

    @cached_property
    def _positions(self) -> dict:
        return {t: k for k, t in enumerate(self.index)}

    @property
    def index(self) -> pd.DatetimeIndex:
        """The common UTC time index."""
        return self.prices.index

    @property
    def assets(self) -> list[str]:
        """Asset names (columns of ``prices``)."""
        return list(self._asset_names)

    @cached_property
    def _asset_names(self) -> tuple[str, ...]:
        return tuple(self.prices.columns)

    @property
    def periods_per_year(self) -> float:
        """Observations per year: 365 for daily data, 8760 for hourly (crypto never closes)."""
        return YEAR / self.step

    def loc_of(self, t: pd.Timestamp | str) -> int:
        """Integer position of timestamp ``t`` in the index, or DataError."""
        if isinstance(t, pd.Timestamp) and t.tzinfo is not None:  # the engine's dates: one dict lookup
            k = self._positions.get(t)
            if k is not None:
                return k
        ts = utc(t)
        try:
            return self._positions[ts]
        except KeyError:
            raise DataError(f"date {ts} is not in the market data "
                            f"({self.index[0]} .. {self.index[-1]})") from None

    def require_assets(self, assets, where: str = "request") -> None:
        """Raise DataError naming any asset of ``assets`` not in the panel."""
        unknown = sorted(set(assets) - set(self.assets))
        if unknown:
            raise DataError(f"{where}: unknown asset(s) {unknown}; the market data has {self.assets}")

    def available(self, asset: str) -> pd.DatetimeIndex:
        """Timestamps on which ``asset`` has a price."""
        return self.index[self.prices[asset].notna().to_numpy()]

    def truncate(self, end: pd.Timestamp | str) -> MarketData:
        """Return the panel with every row labelled after ``end`` removed.

        Option chains quoted after the observation time of ``end`` are dropped
        too. This cuts a finished panel; to rebuild the market from what was
        known at a time, use ``load_market(..., as_of=...)``.
        """
        ts = utc(end)
        keep = self.index <= ts
        chains, smile = self.option_chains, self.smile
        if chains is not None:
            chains = chains[chains["quote_time"] <= ts + self.step]
        if smile is not None:
            smile = smile[smile["quote_time"] <= ts + self.step]
        return MarketData(
            prices=self.prices.loc[keep],
            implied_vol=self.implied_vol.loc[keep],
            funding=None if self.funding is None else self.funding.loc[keep],
            freq=self.freq,
            option_chains=chains,
            smile=smile,
            volume=None if self.volume is None else self.volume.loc[keep],
        )

    def log_returns(self) -> pd.DataFrame:
        """Log returns ``log(P_t / P_{t-1})`` as a frame; the first row is dropped."""
        return pd.DataFrame(self.log_return_array[1:], index=self.index[1:], columns=self.prices.columns)

    def __repr__(self) -> str:
        return (f"MarketData(freq={self.freq!r}, assets={self.assets}, "
                f"{self.index[0]:%Y-%m-%d} .. {self.index[-1]:%Y-%m-%d}, n={len(self.index)})")
