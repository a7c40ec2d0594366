"""Loaders for the bundled datasets and for a user's own price files.

Every loader validates what it returns (:func:`~marginlab.datasets.validate.validate_frame`)
and raises :class:`~marginlab.datasets.DataError` naming the file, column and
timestamps at fault.
"""

from __future__ import annotations

import csv
import gzip
import json
import warnings
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .conventions import iso_text, utc
from .errors import DataError
from .inputs import MarketInputs
from .market import MarketData
from .validate import first_items, frequency_delta, validate_frame

__all__ = [
    "DATA_DIR",
    "catalog",
    "known_assets",
    "load_prices",
    "load_implied_vol",
    "load_option_chains",
    "load_funding",
    "load_market",
    "market_inputs",
    "read_prices",
    "PLAUSIBLE_PRICES",
]

DATA_DIR = Path(__file__).resolve().parent / "data"

FUNDING_SOURCES = {
    "binance": "funding_binance_btcusdt_1d",
    "bitmex": "funding_bitmex_xbtusd_8h",
    "deribit": "funding_deribit_btc_perpetual_1h",
}


@lru_cache(maxsize=1)
def _catalog_records() -> tuple[dict, ...]:
    path = DATA_DIR / "catalog.json"
    if not path.exists():
        raise DataError(f"{path}: bundled data catalogue missing; run "
                        "`python -m marginlab.datasets.build --raw ../shared/datasets/raw`")
    return tuple(json.loads(path.read_text()))


def catalog() -> pd.DataFrame:
    """Return the bundled datasets: name, kind, asset, frequency, first, last, rows, source, licence.

    Returns
    -------
    DataFrame
        One row per bundled dataset, also listing the raw file it was built from
        and the shipped file.
    """
    cols = ["name", "kind", "asset", "frequency", "first", "last", "rows", "source", "licence",
            "file", "raw_file", "notes"]
    return pd.DataFrame(list(_catalog_records()))[cols]


def known_assets(kind: str = "prices", freq: str = "1d") -> list[str]:
    """Assets that have a bundled dataset of ``kind`` at ``freq``."""
    return sorted(r["asset"] for r in _catalog_records()
                  if r["kind"] == kind and r["frequency"] == freq)


def _dataset(kind: str, asset: str, freq: str) -> dict:
    for r in _catalog_records():
        if r["kind"] == kind and r["asset"] == asset and r["frequency"] == freq:
            return r
    raise DataError(f"unknown asset {asset!r} for {kind} at frequency {freq!r}; "
                    f"known assets: {known_assets(kind, freq)}")


@lru_cache(maxsize=64)
def _read_bundled(file: str, time_col: str) -> pd.DataFrame:
    path = DATA_DIR / file
    frame = pd.read_csv(path)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop(time_col), utc=True), name="time")
    return frame


def _slice(frame: pd.DataFrame, start, end, source: str) -> pd.DataFrame:
    start, end = utc(start), utc(end)
    if start is not None and end is not None and start > end:
        raise DataError(f"{source}: start {start:%Y-%m-%d} is after end {end:%Y-%m-%d}")
    first, last = frame.index[0], frame.index[-1]
    if (start is not None and start > last) or (end is not None and end < first):
        raise DataError(f"{source}: requested range {start} .. {end} is outside the data "
                        f"({first} .. {last})")
    if start is not None and start < first:
        raise DataError(f"{source}: requested start {start:%Y-%m-%d %H:%M} is before the first "
                        f"observation {first:%Y-%m-%d %H:%M}")
    if end is not None and end > last:
        raise DataError(f"{source}: requested end {end:%Y-%m-%d %H:%M} is after the last "
                        f"observation {last:%Y-%m-%d %H:%M}")
    return frame.loc[start:end]


def load_prices(asset: str, start=None, end=None, freq: str = "1d",
                max_gap: int | None = None) -> pd.DataFrame:
    """Load bundled OHLCV bars for one asset.

    Parameters
    ----------
    asset : str
        Asset code, e.g. ``"BTC"`` (see :func:`catalog`).
    start, end : str or Timestamp, optional
        Inclusive UTC range; must lie inside the data.
    freq : {"1d", "1h"}
    max_gap : int, optional
        Missing periods tolerated between rows. Default 0 for daily data and
        6 for hourly data (the hourly exports have exchange-maintenance gaps of
        up to 5 hours, kept as gaps and never filled).

    Returns
    -------
    DataFrame
        Index ``time`` (UTC); columns open, high, low, close (quote currency),
        volume_base, volume_quote.
    """
    frequency_delta(freq)
    rec = _dataset("prices", asset, freq)
    frame = _slice(_read_bundled(rec["file"], "date" if freq == "1d" else "time"), start, end,
                   rec["file"])
    if max_gap is None:
        max_gap = 0 if freq == "1d" else 6
    return validate_frame(frame, source=rec["file"], freq=freq, max_gap=max_gap,
                          columns=["open", "high", "low", "close"])


def load_implied_vol(asset: str, start=None, end=None) -> pd.Series:
    """Load the Deribit DVOL index for ``asset`` as an annualised decimal (0.65 = 65%).

    Returns
    -------
    Series
        Daily UTC index, DVOL close / 100. BTC and ETH only, from 2021-03-24.
    """
    rec = _dataset("implied_vol", asset, "1d")
    frame = _slice(_read_bundled(rec["file"], "date"), start, end, rec["file"])
    validate_frame(frame, source=rec["file"], freq="1d", max_gap=0, columns=["dvol"])
    return (frame["dvol"] / 100.0).rename(asset)


def load_option_chains(start=None, end=None, asset: str = "BTC") -> pd.DataFrame:
    """Load the bundled end-of-day Deribit option chains (BTC; six months).

    Returns
    -------
    DataFrame
        One row per (date, instrument): ``date`` (UTC day of the snapshot),
        ``quote_time``, ``instrument``, ``expiry`` (UTC), ``kind`` (call/put),
        ``strike`` and ``underlying_price`` (USD), ``dte`` (days),
        ``bid_btc``/``ask_btc`` (BTC), ``mark_iv`` (decimal), Deribit's
        ``delta``, ``gamma``, ``vega``, ``theta``, ``open_interest``, ``volume``.
    """
    if asset != "BTC":
        raise DataError(f"unknown asset {asset!r} for option chains; known assets: ['BTC']")
    rec = _dataset("options", asset, "1d")
    frame = pd.read_csv(DATA_DIR / rec["file"])
    for col in ("date", "quote_time", "expiry"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    start, end = utc(start), utc(end)
    if start is not None:
        frame = frame[frame["date"] >= start]
    if end is not None:
        frame = frame[frame["date"] <= end]
    if frame.empty:
        raise DataError(f"{rec['file']}: no option chains in {start} .. {end} "
                        f"(data covers {rec['first']} .. {rec['last']} with gaps)")
    return frame.reset_index(drop=True)


def load_funding(source: str = "binance", start=None, end=None) -> pd.DataFrame:
    """Load a bundled BTC perpetual funding series at its native frequency.

    Parameters
    ----------
    source : {"binance", "bitmex", "deribit"}
        ``binance``: daily mean of BTCUSDT 8h prints (``funding_mean``,
        ``funding_abs``); ``bitmex``: XBTUSD prints (``rate`` per
        ``interval_hours``); ``deribit``: BTC-PERPETUAL hourly accrual
        (``interest_1h``, ``interest_8h``, ``index_price``).
    start, end : date-like, optional
        Inclusive bounds (UTC); outside the series' dates a DataError names them.
    """
    if source not in FUNDING_SOURCES:
        raise DataError(f"unknown funding source {source!r}; known: {sorted(FUNDING_SOURCES)}")
    name = FUNDING_SOURCES[source]
    rec = next(r for r in _catalog_records() if r["name"] == name)
    frame = _read_bundled(rec["file"], "date" if rec["frequency"] == "1d" else "time")
    return _slice(frame, start, end, rec["file"])


def daily_funding(start=None, end=None) -> pd.Series:
    """BTC funding paid by longs per UTC day (fraction): 3 x Binance's daily mean print."""
    frame = load_funding("binance")
    return (3.0 * frame["funding_mean"]).rename("BTC")


def _known_at_day_end(series: pd.Series) -> pd.Series:
    """A daily series labelled by UTC day D, re-indexed by the time it became known: D 24:00."""
    out = series.copy()
    out.index = pd.DatetimeIndex(series.index + pd.Timedelta(days=1), name="known_at")
    return out


def market_inputs(assets, freq: str = "1d", max_gap: int | None = None,
                  with_option_chains: bool = False) -> MarketInputs:
    """The bundled raw inputs of a panel, each indexed by the time it became known.

    Prices (closes by bar label) and quote-currency traded volume for ``assets``; DVOL for BTC and ETH (known at
    the end of its UTC day); BTC funding (3 x the Binance daily mean print, known
    at the end of its UTC day); the BTC option chains when ``with_option_chains``.
    See :class:`~marginlab.datasets.inputs.MarketInputs`.
    """
    bars = {a: load_prices(a, freq=freq, max_gap=max_gap) for a in assets}
    prices = {a: frame["close"] for a, frame in bars.items()}
    volume = {a: frame["volume_quote"] for a, frame in bars.items() if "volume_quote" in frame.columns}
    vols = {a: _known_at_day_end(load_implied_vol(a)) for a in assets if a in known_assets("implied_vol", "1d")}
    funding = {"BTC": _known_at_day_end(daily_funding())} if "BTC" in assets else {}
    chains = load_option_chains() if with_option_chains else None
    return MarketInputs(freq=freq, prices=prices, implied_vol=vols, funding=funding, option_chains=chains,
                        volume=volume)


def load_market(assets, start=None, end=None, freq: str = "1d", max_gap: int | None = None,
                with_option_chains: bool = False, as_of=None) -> MarketData:
    """Build an aligned :class:`MarketData` panel of bundled data.

    Parameters
    ----------
    assets : list of str
        Asset codes, e.g. ``["BTC", "ETH"]``.
    start, end : optional
        UTC range of row labels. Without ``start`` the panel starts at the
        first date on which any asset has a price (BTC alone: 2014-11-28).
    freq : {"1d", "1h"}
        Daily panels are on the full calendar (crypto trades every day). Hourly
        panels are indexed by the observed hours: the Binance hourly exports
        miss 16 maintenance hours (2017-2021), kept as gaps, never filled.
    max_gap : int, optional
        Passed to :func:`load_prices`.
    with_option_chains : bool
        Attach the BTC option chains and the smile fitted from them when True.
    as_of : str or Timestamp, optional
        Build the market from what was known at this UTC time only: price bars
        closed by then, DVOL and funding published by then, chain snapshots
        quoted by then (:meth:`MarketInputs.known_at`), then aligned as usual.
        The panel ends at the last row observed at or before ``as_of`` (an
        ``end`` after it is cut there). The no-look-ahead test compares margins
        on this market with those on the full one.

    Returns
    -------
    MarketData
        Row labels are bar open times; row i is observed at
        ``market.observation_time[i]`` (its close). ``prices`` (close; NaN
        outside each asset's history), ``implied_vol`` (DVOL / 100, the last
        value known at the row's observation time; NaN before 2021-03-24 and
        for assets without DVOL), ``funding`` (BTC, each day's funding booked at
        the row observed at the day's end; NaN elsewhere), option chains and
        smile when requested, ``volume`` (quote currency traded in each bar,
        observed with its close). Alignment rules:
        :mod:`marginlab.datasets.inputs`.
    """
    if isinstance(assets, str):
        assets = [assets]
    assets = list(assets)
    if not assets:
        raise DataError("load_market: no assets requested")
    dup = sorted({a for a in assets if assets.count(a) > 1})
    if dup:
        raise DataError(f"load_market: assets requested twice: {dup}")
    inputs = market_inputs(assets, freq=freq, max_gap=max_gap, with_option_chains=with_option_chains)
    where = f"load_market({assets}, freq={freq!r})"
    if as_of is not None:
        full = inputs.index()
        inputs = inputs.known_at(as_of)
        if all(s.empty for s in inputs.prices.values()):
            raise DataError(f"{where}: as_of {utc(as_of)} is before the first price close "
                            f"({full[0] + inputs.step})")
        last = inputs.index()[-1]
        end = last if end is None else min(utc(end), last)
    index = _slice(pd.DataFrame(index=inputs.index()), start, end, where).index
    market = inputs.to_market(index)
    prices = market.prices
    empty = [a for a in assets if prices[a].isna().all()]
    if empty:
        frames = inputs.prices
        ranges = {a: f"{frames[a].index[0]:%Y-%m-%d}..{frames[a].index[-1]:%Y-%m-%d}" if len(frames[a]) else "none"
                  for a in empty}
        raise DataError(f"load_market: no prices for {empty} in the requested range "
                        f"(their data covers {ranges})")
    return market


#: Default plausible range of prices read by :func:`read_prices` (quote currency per unit): wide enough for
#: a meme coin in USD (1e-8) and BTC in Indonesian rupiah (2e9), narrow enough to catch unit slips.
PLAUSIBLE_PRICES: tuple[float, float] = (1e-10, 1e10)

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


def _sniff_text(path: Path, head: bytes) -> None:
    """Raise DataError for input that is not UTF-8 CSV text: empty, UTF-16/32, binary."""
    if not head.strip():
        raise DataError(f"{path}: file is empty")
    for bom, encoding in _BOMS.items():
        if head.startswith(bom):
            raise DataError(f"{path}: is {encoding} text; save it as UTF-8 CSV")
    if b"\x00" in head:
        raise DataError(f"{path}: is not a text file (binary content); expected a UTF-8 CSV")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the sample's end
            raise DataError(f"{path}: is not UTF-8 text (byte {exc.start}: {head[exc.start:exc.start + 1]!r}); "
                            "save it as UTF-8 CSV") from None


def _check_header(path: Path, head: bytes) -> None:
    """Raise DataError for a blank or repeated column name in a CSV header (pandas would rename them silently)."""
    line = head.decode("utf-8", errors="replace").splitlines()[0] if head.strip() else ""
    names = next(csv.reader([line]), [])
    blank = [k + 1 for k, n in enumerate(names) if not n.strip()]
    if blank:
        raise DataError(f"{path}: header column {blank[0]} has no name; name every column")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears twice in the header; each column needs its own name")
        seen.add(name)


def _read_table(path: Path, time_column: str | None, dtype: dict | None = None) -> pd.DataFrame:
    """Read a user's CSV/Parquet file; every failure is a DataError naming the file (``dtype``: CSV columns' types)."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a price file")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet"):
            try:
                frame = pd.read_parquet(path)
            except ImportError:
                raise DataError(f"{path}: reading Parquet needs pyarrow (pip install 'marginlab[parquet]')") from None
            if time_column is None and isinstance(frame.index, pd.DatetimeIndex):
                frame = frame.reset_index()
            return frame
        if not suffixes.endswith((".csv", ".csv.gz")):
            raise DataError(f"{path}: unsupported file type {suffixes!r} (use .csv, .csv.gz or .parquet)")
        opener = gzip.open if suffixes.endswith(".gz") else open
        with opener(path, "rb") as fh:
            head = fh.read(65536)
        _sniff_text(path, head)
        _check_header(path, head)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # rows longer than the header: data lost
            return pd.read_csv(path, encoding="utf-8", index_col=False, dtype=dtype)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: cannot be read ({reason})") from None
    except Exception as exc:  # pyarrow's errors are not ValueErrors: any failure to parse names the file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: {reason})") from None


def _parse_times(raw_t: pd.Series, path: Path, column: str) -> pd.DatetimeIndex:
    """UTC timestamps from a text column, or from unix seconds / milliseconds (never a mix of both)."""
    def rows(mask) -> str:
        return f"data row(s) {first_items(np.flatnonzero(np.asarray(mask)) + 1, 3)}"

    if raw_t.isna().any():
        raise DataError(f"{path}: column {column!r} has missing timestamps at {rows(raw_t.isna())}")
    if pd.api.types.is_bool_dtype(raw_t):
        raise DataError(f"{path}: column {column!r} holds true/false values, not timestamps")
    try:
        if pd.api.types.is_numeric_dtype(raw_t):
            values = raw_t.to_numpy(dtype=float)
            if not np.isfinite(values).all():
                raise DataError(f"{path}: column {column!r} has non-finite timestamps at {rows(~np.isfinite(values))}")
            seconds = np.abs(values) < 1e11
            if seconds.any() and not seconds.all():
                raise DataError(f"{path}: column {column!r} mixes unix seconds ({rows(seconds)}) and "
                                f"milliseconds ({rows(~seconds)}); use one unit")
            if (np.abs(values) >= 1e14).any():
                raise DataError(f"{path}: column {column!r} has numbers too large for unix seconds or milliseconds "
                                f"at {rows(np.abs(values) >= 1e14)}")
            return pd.DatetimeIndex(pd.to_datetime(raw_t, unit="s" if seconds.all() else "ms", utc=True), name="time")
        if not iso_text(raw_t).all():
            raise ValueError("not ISO 8601")
        return pd.DatetimeIndex(pd.to_datetime(raw_t.astype(str), utc=True, format="ISO8601"), name="time")
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, DataError):
            raise
        parsed = pd.to_datetime(raw_t.astype(str), utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy() | ~iso_text(raw_t)
        first = f"; first: {raw_t[bad].iloc[0]!r} at {rows(bad)}" if bad.any() else ""
        raise DataError(f"{path}: column {column!r} has timestamps that are not ISO 8601 dates or times "
                        f"(YYYY-MM-DD[ HH:MM[:SS]][+HH:MM]){first}") from None


def read_prices(path, *, time_column: str | None = None, columns: list[str] | None = None,
                freq: str = "1d", max_gap: int | None = 0,
                plausible_range: tuple[float, float] | None = PLAUSIBLE_PRICES) -> pd.DataFrame:
    """Read a user's own price file (CSV or Parquet) with the same validation as bundled data.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz`` (UTF-8) or ``.parquet`` file.
    time_column : str, optional
        Timestamp column (default: the first of ``time``, ``date``,
        ``timestamp``, ``datetime``). Text must be ISO 8601
        (``YYYY-MM-DD[ HH:MM[:SS]][+HH:MM]``: no day/month ambiguity); naive
        timestamps are taken as UTC; numbers as unix seconds (below 1e11) or
        milliseconds, all in the same unit.
    columns : list of str, optional
        Price columns to keep and validate; default every other column.
    freq : {"1d", "1h"}
    max_gap : int or None
        Missing periods tolerated (default 0; None: no check).
    plausible_range : (float, float) or None
        Prices outside ``[low, high]`` are an error (default
        :data:`PLAUSIBLE_PRICES`, 1e-10 .. 1e10; None: no check).

    Returns
    -------
    DataFrame
        UTC ``time`` index, one column per price series. The file is never
        re-sorted, de-duplicated or repaired.

    Raises
    ------
    DataError
        Naming the file (and the column and first rows or timestamps at fault):
        an unreadable, empty, binary or non-UTF-8 file; missing, unparseable or
        mixed-unit timestamps; rows observed after the time of reading (a daily
        row labelled D is the close at D+1 00:00 UTC); true/false columns,
        non-numeric, missing, infinite, non-positive or implausible prices; and
        every check of :func:`~marginlab.datasets.validate.validate_frame`.
    """
    path = Path(path)
    step = frequency_delta(freq)
    frame = _read_table(path, time_column)
    if frame.empty or not len(frame.columns):
        raise DataError(f"{path}: no rows")
    for c in frame.columns:  # 'BTC ' would be a second BTC column, ' BTC' a column nobody asks for
        if isinstance(c, str) and c != c.strip():
            raise DataError(f"{path}: column {c!r} has leading or trailing spaces in its name; name it {c.strip()!r}")
    if frame.columns.has_duplicates:
        c = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"{path}: column {c!r} appears twice; each column needs its own name")
    if time_column is None:
        time_column = next((c for c in frame.columns
                            if str(c).lower() in ("time", "date", "timestamp", "datetime")), None)
        if time_column is None:
            raise DataError(f"{path}: no time column (looked for time/date/timestamp/datetime); "
                            f"columns are {list(frame.columns)}")
    if time_column not in frame.columns:
        raise DataError(f"{path}: time column {time_column!r} not found; columns are "
                        f"{list(frame.columns)}")
    frame.index = _parse_times(frame.pop(time_column), path, time_column)
    now = pd.Timestamp.now(tz="UTC")
    future = frame.index[frame.index + step > now]
    if len(future):
        raise DataError(f"{path}: rows observed after the time of reading ({now:%Y-%m-%d %H:%M} UTC; a {freq} row "
                        f"labelled t is the close at t + {freq}): {first_items(future)}")
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; columns are {list(frame.columns)}")
        frame = frame[columns]
    for c in frame.columns:
        if pd.api.types.is_bool_dtype(frame[c]):
            raise DataError(f"{path}: column {c!r} holds true/false values, not prices")
        if not pd.api.types.is_numeric_dtype(frame[c]):
            bad = pd.to_numeric(frame[c], errors="coerce").isna() & frame[c].notna()
            if bad.any():
                raise DataError(f"{path}: column {c!r} has non-numeric values at "
                                f"{first_items(frame.index[bad.to_numpy()])}")
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return validate_frame(frame, source=str(path), freq=freq, max_gap=max_gap, plausible_range=plausible_range)
