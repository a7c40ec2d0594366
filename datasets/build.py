"""Build the bundled datasets in ``datasets/data/`` from the raw files.

Run ``python -m marginlab.datasets.build --raw ../shared/datasets/raw`` (or
``marginlab datasets build --raw ...``). The build is deterministic: the same
raw files give byte-identical outputs (gzip with a zero timestamp, fixed column
order, ``repr`` floats), recorded with their sha256 in ``MANIFEST.sha256``.

Every defect of the raw files is detected and either repaired by one of the
rules below or dropped, and each action is written to ``BUILD_LOG.md``:

==========================  =============================================================
rule                        action
==========================  =============================================================
``header``                  find the header line (CDD files may or may not start with a
                            banner line) instead of skipping a fixed number of lines
``unix_units``              unix timestamps below 1e11 are seconds, others milliseconds;
                            the text date columns are ignored (some are local time)
``sort``                    newest-first or out-of-order rows are sorted ascending by the
                            unix timestamp
``stitched_duplicates``     an hour present twice (two stitched export generations): the
                            millisecond (newer, full-precision) row is kept
``exact_duplicates``        a timestamp present as identical rows: one is kept
``conflicting_rows``        any other repeated timestamp (different values) is an error
                            naming both lines, never resolved by guessing
``blank_values``            a blank or non-numeric timestamp or price (e.g. a truncated
                            file) is an error naming the line; blank volumes are kept
``bogus_first_row``         the oldest row is dropped when its open or low is not
                            positive, or its open is outside [close/2, 2 close]
``swapped_volume``          base and quote volume are swapped back when quote/base is not
                            a price inside [low/1.5, 1.5 high] but base/quote is
``partial_last_period``     the newest row is dropped when its base volume is below half
                            the median of the 30 periods before it (an export taken
                            during the period)
``truncate_at_gap``         daily series: rows after the first missing day are dropped,
                            so that the shipped record is continuous
``stale_prices``            zero-volume days whose close equals the previous close are
                            kept (they are the exchange's last price) and listed
``non_positive``            rows with a non-positive price are an error, never repaired
``bar_range``               an open or close outside its bar's [low, high] (relative
                            tolerance 1e-9) is an error naming the line, date and column
==========================  =============================================================

Nothing is written until every dataset is built and validated; the data folder is
then replaced whole and atomically (:func:`~marginlab.datasets.folders.publish_folder`),
so a failing build leaves it byte-identical. A missing raw file is reported before
anything is read.

A build-time cross-check compares Bitstamp BTC/ETH closes with the Coin Metrics
community reference rates (CC BY-NC 4.0, used only here and never shipped) and
the Deribit DVOL copy with an independent copy of the same index.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .folders import FolderKind, check_output_folder, publish_folder
from .validate import first_items, validate_frame

__all__ = [
    "DAILY_SOURCES",
    "BuildLog",
    "build",
    "read_cdd",
    "fix_unix_units",
    "sort_by_time",
    "drop_stitched_duplicates",
    "drop_bogus_first_row",
    "fix_swapped_volume",
    "drop_partial_last_period",
    "truncate_at_first_gap",
    "stale_days",
    "write_csv_gz",
]

DATA_DIR = Path(__file__).resolve().parent / "data"

CDD = "CryptoDataDownload.com"
CDD_TERMS = "no licence stated; exchange data, third-party terms apply (research use)"

#: asset -> (raw file, venue, quote currency, why this source)
DAILY_SOURCES: dict[str, tuple[str, str, str, str]] = {
    "BTC": ("btc_usd_daily_bitstamp_cdd.csv", "Bitstamp", "USD",
            "longest continuous USD history (from 2014-11-28)"),
    "ETH": ("eth_usd_daily_bitstamp_cdd.csv", "Bitstamp", "USD",
            "same venue and quote currency as BTC, continuous, no 2026 gaps"),
    "XRP": ("xrp_usd_daily_bitstamp_cdd.csv", "Bitstamp", "USD",
            "longer than Binance (from 2017-01-17), USD quote"),
    "LTC": ("ltc_usd_daily_bitstamp_cdd.csv", "Bitstamp", "USD", "only daily LTC source"),
    "SOL": ("sol_usdt_daily_binance_cdd.csv", "Binance", "USDT", "only daily SOL source"),
    "BNB": ("bnb_usdt_daily_binance_cdd.csv", "Binance", "USDT", "only daily BNB source"),
    "ADA": ("ada_usdt_daily_binance_cdd.csv", "Binance", "USDT", "only daily ADA source"),
    "DOGE": ("doge_usdt_daily_binance_cdd.csv", "Binance", "USDT", "only daily DOGE source"),
    "TRX": ("trx_usdt_daily_binance_cdd.csv", "Binance", "USDT", "only daily TRX source"),
    "BCH": ("bch_usdt_daily_binance_cdd.csv", "Binance", "USDT", "only daily BCH source"),
}

HOURLY_SOURCES: dict[str, str] = {
    "BTC": "btc_usdt_hourly_binance_cdd_2017_2021.csv",
    "ETH": "eth_usdt_hourly_binance_cdd_2017_2021.csv",
}

DVOL_SOURCES: dict[str, str] = {
    "BTC": "btc_dvol_daily_deribit.csv",
    "ETH": "eth_dvol_daily_deribit.csv",
}

FUNDING_FILES: dict[str, str] = {
    "bitmex": "bitmex_xbtusd_funding_8h_2016_2020.csv",
    "deribit": "deribit_btc_perpetual_funding_hourly_2019_2021.csv",
    "binance": "binance_btcusdt_funding_daily_mean_2019_2026.csv",
}

OPTION_FILES = [f"btc_options_eod_deribit_optionsdx_{m}.txt.gz"
                for m in ("2021-06", "2021-07", "2022-01", "2022-02", "2022-03", "2022-04")]

#: The bundled data folder: recognised by its ``MANIFEST.sha256`` (``sha256sum`` format) and a
#: ``BUILD_LOG.md`` starting with the build's own title.
DATA_FOLDER = FolderKind(what="marginlab dataset build", manifest="MANIFEST.sha256", header="",
                         signature=("BUILD_LOG.md", b"# Build log\n\nEvery repair or drop applied to the raw files"))

PRICE_COLUMNS = ["open", "high", "low", "close", "volume_base", "volume_quote"]
PARTIAL_FRACTION = 0.5
PARTIAL_WINDOW = 30


@dataclass
class BuildLog:
    """Every repair or drop made by the build, one entry per rule and file."""

    entries: list[dict] = field(default_factory=list)

    def add(self, file: str, rule: str, action: str, count: int, detail: str = "") -> None:
        """Record that ``rule`` changed ``count`` rows of ``file``."""
        self.entries.append({"file": file, "rule": rule, "action": action,
                             "count": int(count), "detail": detail})

    def for_file(self, file: str) -> list[dict]:
        """Entries for one raw file."""
        return [e for e in self.entries if e["file"] == file]

    def to_markdown(self) -> str:
        """Render as the Markdown table written to ``BUILD_LOG.md``."""
        lines = ["# Build log", "",
                 "Every repair or drop applied to the raw files (rules: see "
                 "`marginlab.datasets.build`).", "",
                 "| raw file | rule | action | rows | detail |", "|---|---|---|---|---|"]
        for e in self.entries:
            detail = e["detail"].replace("|", "/")
            lines.append(f"| {e['file']} | {e['rule']} | {e['action']} | {e['count']} | {detail} |")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- rules

def _read_raw_csv(path: Path, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` whose failures (missing, empty, binary, truncated, bad encoding) name the file."""
    try:
        frame = pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise DataError(f"{path}: raw file not found") from None
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path.name}: cannot be read as CSV ({reason})") from None
    if frame.empty:
        raise DataError(f"{path.name}: no data rows after the header (truncated file?)")
    return frame


def _require_columns(frame: pd.DataFrame, columns, name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing}; columns are {list(frame.columns)}")


def _numeric(values: pd.Series, name: str, column: str, lines: np.ndarray, blank_ok: bool = False) -> pd.Series:
    """Parse a raw column as floats; a non-numeric or (unless ``blank_ok``) blank cell raises, naming its line."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & values.notna()
    if bad.any():
        k = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{name}: line {lines[k]}: column {column!r} is not a number: {values.iloc[k]!r}")
    if not blank_ok and parsed.isna().any():
        at = np.flatnonzero(parsed.isna().to_numpy())
        more = f" (and {len(at) - 1} more)" if len(at) > 1 else ""
        raise DataError(f"{name}: line {lines[at[0]]}: blank {column!r}{more}; a missing value is never filled in "
                        "(truncated file?)")
    return parsed.astype(float)


def _lines(frame: pd.DataFrame) -> np.ndarray:
    """File line numbers of a raw CSV's rows (header on line 1)."""
    return np.arange(len(frame)) + 2


def _raw_times(values: pd.Series, name: str, column: str) -> pd.Series:
    """Parse a raw timestamp column as UTC; a blank or unparseable cell is a DataError naming its line."""
    lines = _lines(values.to_frame())
    if values.isna().any():
        raise DataError(f"{name}: line {lines[np.flatnonzero(values.isna().to_numpy())[0]]}: blank {column!r}")
    try:
        return pd.to_datetime(values, utc=True)
    except (ValueError, TypeError, OverflowError):
        bad = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601").isna().to_numpy()
        where = f"line {lines[np.flatnonzero(bad)[0]]}: " if bad.any() else ""
        first = f": {values[bad].iloc[0]!r}" if bad.any() else ""
        raise DataError(f"{name}: {where}column {column!r} has an unparseable timestamp{first}") from None


def read_cdd(path: Path) -> pd.DataFrame:
    """Read a CryptoDataDownload export, finding its header line.

    Columns are normalised to ``unix, open, high, low, close, volume_base,
    volume_quote`` (the base volume is the column named ``Volume <BASE>``),
    plus ``line``, the row's line number in the file (for error messages).
    A blank or non-numeric timestamp or price is a DataError naming the line
    (a truncated file ends in such a line); blank volumes are kept as NaN.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = [fh.readline() for _ in range(3)]
    except FileNotFoundError:
        raise DataError(f"{path}: raw file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: cannot be read as UTF-8 text ({exc})") from None
    header_at = next((i for i, line in enumerate(lines) if line.lower().startswith("unix")), None)
    if header_at is None:
        raise DataError(f"{path.name}: no header line starting with 'unix' in the first 3 lines")
    raw = _read_raw_csv(path, skiprows=header_at, encoding="utf-8-sig")
    if raw.empty:
        raise DataError(f"{path.name}: no data rows after the header (line {header_at + 1})")
    cols = {c: c.strip().lower() for c in raw.columns}
    raw = raw.rename(columns=cols)
    _require_columns(raw, ["open", "high", "low", "close"], path.name)
    line = np.arange(len(raw)) + header_at + 2
    unix_col = next(c for c in raw.columns if c.startswith("unix"))
    vol_cols = [c for c in raw.columns if c.startswith("volume")]
    quote = [c for c in vol_cols if c.endswith(("usd", "usdt"))]
    base = [c for c in vol_cols if c not in quote]
    out = pd.DataFrame({"unix": _numeric(raw[unix_col], path.name, unix_col, line)})
    for c in ("open", "high", "low", "close"):
        out[c] = _numeric(raw[c], path.name, c, line)
    out["volume_base"] = _numeric(raw[base[0]], path.name, base[0], line, blank_ok=True) if base else np.nan
    out["volume_quote"] = _numeric(raw[quote[0]], path.name, quote[0], line, blank_ok=True) if quote else np.nan
    out["line"] = line
    return out


def fix_unix_units(frame: pd.DataFrame, name: str, log: BuildLog) -> pd.DataFrame:
    """Convert a ``unix`` column of mixed seconds/milliseconds to a UTC ``time`` column."""
    unix = frame["unix"].astype(float).to_numpy()
    is_seconds = unix < 1e11
    n_s, n_ms = int(is_seconds.sum()), int((~is_seconds).sum())
    if n_s and n_ms:
        log.add(name, "unix_units", "repaired", n_s,
                f"{n_s} rows in seconds and {n_ms} in milliseconds; all converted to UTC")
    ms = np.where(is_seconds, unix * 1000.0, unix).astype("int64")
    out = frame.copy()
    out["time"] = pd.to_datetime(ms, unit="ms", utc=True)
    out["unix_was_seconds"] = is_seconds
    return out


def sort_by_time(frame: pd.DataFrame, name: str, log: BuildLog) -> pd.DataFrame:
    """Sort rows ascending by ``time`` (stable), logging how many were out of order."""
    t = frame["time"].to_numpy()
    if len(t) > 1 and not (t[1:] >= t[:-1]).all():
        descending = bool((t[1:] <= t[:-1]).all())
        out_of_order = int((t[1:] < t[:-1]).sum())
        log.add(name, "sort", "repaired", out_of_order,
                "rows newest first; sorted ascending" if descending
                else "rows out of order; sorted ascending by unix timestamp")
        frame = frame.sort_values("time", kind="mergesort")
    return frame.reset_index(drop=True)


def _row_text(row: pd.Series) -> str:
    where = f"line {int(row['line'])}" if "line" in row.index else f"row {row.name}"
    prices = ", ".join(f"{c}={float(row[c])!r}" for c in ("open", "high", "low", "close") if c in row.index)
    return f"{where} ({prices})"


def drop_stitched_duplicates(frame: pd.DataFrame, name: str, log: BuildLog) -> pd.DataFrame:
    """Keep one row per timestamp, by rule, or raise on rows that conflict.

    * A timestamp present twice as one second-stamped and one millisecond-stamped
      row (two stitched export generations): the millisecond (newer,
      full-precision) row is kept (rule ``stitched_duplicates``).
    * Rows identical in every column: one is kept (rule ``exact_duplicates``).
    * Any other repeated timestamp (same unit, different values) is a DataError
      naming both rows: which one is right cannot be decided by rule.
    """
    dup = frame["time"].duplicated(keep=False)
    if not dup.any():
        return frame
    values = [c for c in frame.columns if c not in ("line", "unix", "unix_was_seconds")]
    stitched, exact = [], []
    for _, rows in frame[dup].groupby("time", sort=True):
        units = rows["unix_was_seconds"].astype(bool)
        if len(rows) == 2 and units.nunique() == 2:
            stitched.append(rows)
        elif not rows[values].duplicated(keep="first").iloc[1:].all():
            first = rows.iloc[0]
            same = rows[values].eq(first[values]) | (rows[values].isna() & first[values].isna())
            other = rows[~same.all(axis=1)].iloc[0]
            raise DataError(f"{name}: conflicting rows for {rows['time'].iloc[0]}: {_row_text(first)} and "
                            f"{_row_text(other)}; remove the wrong one")
        else:
            exact.append(rows)
    drop = []
    if exact:
        drop += [i for rows in exact for i in rows.index[1:]]
        times = pd.concat([rows["time"].iloc[:1] for rows in exact])
        log.add(name, "exact_duplicates", "dropped", len(drop),
                f"{len(exact)} timestamps present as identical rows ({times.min()} .. {times.max()}); kept one")
    if stitched:
        seconds = [rows.index[rows["unix_was_seconds"].astype(bool).to_numpy()][0] for rows in stitched]
        drop += seconds
        hours = pd.concat([rows["time"].iloc[:1] for rows in stitched])
        log.add(name, "stitched_duplicates", "dropped", len(seconds),
                f"{len(seconds)} timestamps present twice ({hours.min()} .. {hours.max()}); "
                "kept the millisecond (full-precision) row")
    return frame.drop(index=drop).reset_index(drop=True)


def drop_bogus_first_row(frame: pd.DataFrame, name: str, log: BuildLog) -> pd.DataFrame:
    """Drop the oldest row if its open/low is not positive or its open is absurd."""
    first = frame.iloc[0]
    bad = (first["open"] <= 0 or first["low"] <= 0
           or not (first["close"] / 2 <= first["open"] <= 2 * first["close"]))
    if bad:
        log.add(name, "bogus_first_row", "dropped", 1,
                f"{first['time']}: open={first['open']}, low={first['low']}, "
                f"close={first['close']}")
        return frame.iloc[1:].reset_index(drop=True)
    return frame


def fix_swapped_volume(frame: pd.DataFrame, name: str, log: BuildLog) -> pd.DataFrame:
    """Swap base/quote volume back where only the swapped reading gives a plausible price."""
    base, quote = frame["volume_base"], frame["volume_quote"]
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = quote / base
        swapped_implied = base / quote
    lo, hi = frame["low"] / 1.5, frame["high"] * 1.5
    ok = implied.between(lo, hi)
    swap = ~ok & swapped_implied.between(lo, hi) & (base > 0) & (quote > 0)
    if swap.any():
        frame = frame.copy()
        frame.loc[swap, ["volume_base", "volume_quote"]] = frame.loc[
            swap, ["volume_quote", "volume_base"]].to_numpy()
        times = frame.loc[swap, "time"]
        log.add(name, "swapped_volume", "repaired", int(swap.sum()),
                f"base/quote volume swapped back on {times.min():%Y-%m-%d} .. {times.max():%Y-%m-%d}")
    return frame


def drop_partial_last_period(frame: pd.DataFrame, name: str, log: BuildLog) -> pd.DataFrame:
    """Drop the newest row if its volume is below half the trailing 30-period median."""
    if len(frame) <= PARTIAL_WINDOW:
        return frame
    last = frame["volume_base"].iloc[-1]
    median = frame["volume_base"].iloc[-PARTIAL_WINDOW - 1:-1].median()
    if last < PARTIAL_FRACTION * median:
        log.add(name, "partial_last_period", "dropped", 1,
                f"{frame['time'].iloc[-1]}: volume {last:.6g} < {PARTIAL_FRACTION} x median "
                f"{median:.6g} of the previous {PARTIAL_WINDOW}")
        return frame.iloc[:-1].reset_index(drop=True)
    return frame


def truncate_at_first_gap(frame: pd.DataFrame, name: str, log: BuildLog,
                          step: pd.Timedelta | None = None) -> pd.DataFrame:
    """Drop every row after the first missing period (default step one day), keeping it continuous."""
    step = pd.Timedelta(days=1) if step is None else step
    t = frame["time"]
    gaps = np.flatnonzero((t.diff() > step).to_numpy())
    if not len(gaps):
        return frame
    cut = gaps[0]
    dropped = len(frame) - cut
    missing = [f"{t.iloc[i - 1] + step:%Y-%m-%d}" for i in gaps]
    log.add(name, "truncate_at_gap", "dropped", dropped,
            f"first missing period {missing[0]}; {len(gaps)} gaps in all ({', '.join(missing)}); "
            f"rows from {t.iloc[cut]:%Y-%m-%d} dropped so the record is continuous")
    return frame.iloc[:cut].reset_index(drop=True)


def stale_days(frame: pd.DataFrame) -> pd.Series:
    """Return the times of zero-volume periods whose close equals the previous close."""
    stale = (frame["volume_base"] == 0) & (frame["close"] == frame["close"].shift())
    return frame.loc[stale, "time"]


def check_positive(frame: pd.DataFrame, name: str) -> None:
    """Raise DataError if any price is not strictly positive."""
    for c in ("open", "high", "low", "close"):
        bad = frame.loc[frame[c] <= 0, "time"]
        if len(bad):
            raise DataError(f"{name}: column {c!r} has non-positive prices at "
                            f"{', '.join(str(x) for x in bad[:5])}")


#: Relative tolerance of :func:`check_bar_range` (exports rounded in the last digit; none seen in the raw files).
BAR_RANGE_TOLERANCE = 1e-9


def check_bar_range(frame: pd.DataFrame, name: str) -> None:
    """Raise DataError if an open or close lies outside its bar's [low, high] (a typo'd price, e.g. a digit added).

    Checked with a relative tolerance :data:`BAR_RANGE_TOLERANCE`; the shipped raw files have no such row.
    """
    for c in ("close", "open"):
        below = frame["low"] > frame[c] * (1.0 + BAR_RANGE_TOLERANCE)
        above = frame[c] > frame["high"] * (1.0 + BAR_RANGE_TOLERANCE)
        bad = np.flatnonzero((below | above).to_numpy())
        if len(bad):
            r = frame.iloc[bad[0]]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(f"{name}: line {int(r['line'])}: column {c!r} {r[c]:g} on {r['time']:%Y-%m-%d %H:%M} is "
                            f"outside its bar's [low, high] = [{r['low']:g}, {r['high']:g}]{more}")


def clean_cdd(path: Path, log: BuildLog, *, daily: bool) -> pd.DataFrame:
    """Apply every CDD rule in order and return the cleaned frame (``time`` + prices)."""
    name = Path(path).name
    frame = read_cdd(path)
    frame = fix_unix_units(frame, name, log)
    frame = sort_by_time(frame, name, log)
    frame = drop_stitched_duplicates(frame, name, log)
    frame = drop_bogus_first_row(frame, name, log)
    check_positive(frame, name)
    check_bar_range(frame, name)
    frame = fix_swapped_volume(frame, name, log)
    frame = drop_partial_last_period(frame, name, log)
    if daily:
        frame = truncate_at_first_gap(frame, name, log)
        stale = stale_days(frame)
        if len(stale):
            log.add(name, "stale_prices", "kept, listed", len(stale),
                    "zero volume and unchanged close on " +
                    ", ".join(f"{d:%Y-%m-%d}" for d in stale))
    else:
        step = pd.Timedelta(hours=1)
        t = frame["time"]
        gaps = (t.diff() / step - 1).fillna(0)
        if (gaps > 0).any():
            where = [f"{t.iloc[i - 1] + step:%Y-%m-%d %H:%M} ({int(g)}h)"
                     for i, g in zip(np.flatnonzero(gaps > 0), gaps[gaps > 0], strict=True)]
            log.add(name, "hourly_gaps", "kept as gaps (not filled)", int(gaps.sum()),
                    f"{len(where)} gaps: " + ", ".join(where))
    return frame[["time", *PRICE_COLUMNS]]


# --------------------------------------------------------------------------- writing

def csv_gz_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as deterministic gzip CSV bytes (zero gzip timestamp, LF line ends, no index)."""
    text = frame.to_csv(index=False, lineterminator="\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    return buffer.getvalue()


def write_csv_gz(frame: pd.DataFrame, path: Path) -> str:
    """Write ``frame`` as gzip CSV deterministically and atomically; return its sha256."""
    return atomic_write_bytes(path, csv_gz_bytes(frame))


def atomic_write_bytes(path: Path, payload: bytes) -> str:
    """Write ``payload`` to ``path`` via a temporary file and rename; return sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(payload).hexdigest()


def _fmt_time(frame: pd.DataFrame, daily: bool) -> pd.DataFrame:
    out = frame.copy()
    fmt = "%Y-%m-%d" if daily else "%Y-%m-%dT%H:%M:%SZ"
    out["time"] = out["time"].dt.strftime(fmt)
    return out.rename(columns={"time": "date" if daily else "time"})


# --------------------------------------------------------------------------- datasets

def _entry(name, kind, asset, freq, frame, time_col, source, licence, raw, file, notes=""):
    t = pd.to_datetime(frame[time_col], utc=True)
    return {"name": name, "kind": kind, "asset": asset, "frequency": freq,
            "first": f"{t.min():%Y-%m-%d %H:%M}" if freq != "1d" else f"{t.min():%Y-%m-%d}",
            "last": f"{t.max():%Y-%m-%d %H:%M}" if freq != "1d" else f"{t.max():%Y-%m-%d}",
            "rows": int(len(frame)), "source": source, "licence": licence,
            "raw_file": raw, "file": file, "notes": notes}


def build_prices(raw: Path, log: BuildLog) -> tuple[list[dict], dict[str, bytes]]:
    """Build daily and hourly price files (catalogue entries, file name -> content)."""
    entries, files = [], {}
    for asset, (fname, venue, quote, why) in DAILY_SOURCES.items():
        frame = clean_cdd(raw / fname, log, daily=True)
        frame["time"] = frame["time"].dt.tz_convert("UTC").dt.normalize()
        file = f"prices_1d_{asset.lower()}.csv.gz"
        files[file] = csv_gz_bytes(_fmt_time(frame, True))
        entries.append(_entry(f"prices_1d_{asset.lower()}", "prices", asset, "1d", frame, "time",
                              f"{CDD} / {venue} {asset}/{quote} daily", CDD_TERMS, fname, file,
                              f"quote {quote}; {why}"))
    for asset, fname in HOURLY_SOURCES.items():
        frame = clean_cdd(raw / fname, log, daily=False)
        file = f"prices_1h_{asset.lower()}.csv.gz"
        files[file] = csv_gz_bytes(_fmt_time(frame, False))
        n_gap = sum(e["count"] for e in log.for_file(fname) if e["rule"] == "hourly_gaps")
        entries.append(_entry(f"prices_1h_{asset.lower()}", "prices", asset, "1h", frame, "time",
                              f"{CDD} / Binance {asset}/USDT hourly", CDD_TERMS, fname, file,
                              f"quote USDT; {n_gap} missing hours kept as gaps"))
    return entries, files


def build_dvol(raw: Path, log: BuildLog) -> tuple[list[dict], dict[str, bytes]]:
    """Build the Deribit DVOL files and cross-check BTC against the independent copy."""
    entries, files = [], {}
    for asset, fname in DVOL_SOURCES.items():
        src = _read_raw_csv(raw / fname)
        _require_columns(src, ["date", "dvol_close"], fname)
        frame = pd.DataFrame({"time": _raw_times(src["date"], fname, "date"),
                              "dvol": _numeric(src["dvol_close"], fname, "dvol_close", _lines(src))})
        frame = sort_by_time(frame, fname, log)
        if (frame["dvol"] <= 0).any():
            raise DataError(f"{fname}: column 'dvol_close' has non-positive values on "
                            f"{first_items(frame.loc[frame['dvol'] <= 0, 'time'])}")
        if frame["time"].duplicated().any():
            raise DataError(f"{fname}: duplicate dates: {first_items(frame.loc[frame['time'].duplicated(), 'time'])}")
        file = f"implied_vol_1d_{asset.lower()}.csv.gz"
        files[file] = csv_gz_bytes(_fmt_time(frame, True))
        entries.append(_entry(f"implied_vol_1d_{asset.lower()}", "implied_vol", asset, "1d", frame,
                              "time", "Deribit DVOL index (30-day implied volatility, %)",
                              "no licence stated; Deribit public API data", fname, file,
                              "annualised percent; loaders return decimals"))
    check = raw / "btc_dvol_daily_deribit_isayggyo_subset.csv"
    if check.exists():
        ours = _read_raw_csv(raw / DVOL_SOURCES["BTC"]).set_index("date")["dvol_close"]
        other = _read_raw_csv(check)
        _require_columns(other, ["date", "dvol"], check.name)
        other = other.set_index("date")["dvol"]
        common = ours.index.intersection(other.index)
        if not len(common):
            raise DataError(f"{DVOL_SOURCES['BTC']}: no date in common with {check.name} (truncated file?)")
        mismatch = int((ours[common] - other[common]).abs().gt(0.005).sum())
        log.add(DVOL_SOURCES["BTC"], "cross_check", "checked", len(common),
                f"{len(common)} dates compared with {check.name}: {mismatch} differ by > 0.005")
        if mismatch:
            raise DataError(f"{DVOL_SOURCES['BTC']}: {mismatch} dates disagree with {check.name}")
    return entries, files


def build_funding(raw: Path, log: BuildLog) -> tuple[list[dict], dict[str, bytes]]:
    """Build the three funding files (native frequency, rates as fractions)."""
    entries, files = [], {}
    # BitMEX XBTUSD 8h (first rows 24h interval)
    fname = FUNDING_FILES["bitmex"]
    bm = _read_raw_csv(raw / fname)
    _require_columns(bm, ["timestamp", "fundingInterval", "fundingRate"], fname)
    interval = _raw_times(bm["fundingInterval"], fname, "fundingInterval") - pd.Timestamp("2000-01-01", tz="UTC")
    frame = pd.DataFrame({"time": _raw_times(bm["timestamp"], fname, "timestamp"),
                          "interval_hours": (interval / pd.Timedelta(hours=1)).astype(int),
                          "rate": _numeric(bm["fundingRate"], fname, "fundingRate", _lines(bm))})
    frame = sort_by_time(frame, fname, log)
    n24 = int((frame["interval_hours"] == 24).sum())
    log.add(fname, "funding_interval", "kept, decoded", n24,
            f"{n24} early prints use a 24h interval (BitMEX encoding 2000-01-02T00:00Z)")
    file = "funding_bitmex_xbtusd_8h.csv.gz"
    files[file] = csv_gz_bytes(_fmt_time(frame, False))
    entries.append(_entry("funding_bitmex_xbtusd_8h", "funding", "BTC", "8h", frame, "time",
                          "BitMEX XBTUSD funding (public API)", "no licence stated; BitMEX data",
                          fname, file, "rate per funding interval, fraction; longs pay if > 0"))
    # Deribit hourly: use the millisecond timestamp; time_dt is Europe/London local text
    fname = FUNDING_FILES["deribit"]
    db = _read_raw_csv(raw / fname)
    _require_columns(db, ["timestamp", "interest_1h", "interest_8h", "index_price"], fname)
    lines = _lines(db)
    frame = pd.DataFrame({"unix": _numeric(db["timestamp"], fname, "timestamp", lines).astype("int64"),
                          **{c: _numeric(db[c], fname, c, lines) for c in ("interest_1h", "interest_8h",
                                                                            "index_price")}})
    frame = fix_unix_units(frame, fname, log)
    log.add(fname, "local_time_text", "ignored", len(frame),
            "time_dt columns are Europe/London local time (duplicated at DST); "
            "the millisecond 'timestamp' is used")
    frame = sort_by_time(frame, fname, log)
    frame = frame[["time", "interest_1h", "interest_8h", "index_price"]]
    file = "funding_deribit_btc_perpetual_1h.csv.gz"
    files[file] = csv_gz_bytes(_fmt_time(frame, False))
    entries.append(_entry("funding_deribit_btc_perpetual_1h", "funding", "BTC", "1h", frame, "time",
                          "Deribit BTC-PERPETUAL funding history (public API)",
                          "no licence stated; Deribit data", fname, file,
                          "interest_1h accrued per hour, fraction; one 2h gap (2020-08-27)"))
    # Binance daily means
    fname = FUNDING_FILES["binance"]
    bn = _read_raw_csv(raw / fname)
    _require_columns(bn, ["date", "funding_mean", "funding_abs"], fname)
    lines = _lines(bn)
    frame = pd.DataFrame({"time": _raw_times(bn["date"], fname, "date"),
                          "funding_mean": _numeric(bn["funding_mean"], fname, "funding_mean", lines),
                          "funding_abs": _numeric(bn["funding_abs"], fname, "funding_abs", lines)})
    frame = sort_by_time(frame, fname, log)
    file = "funding_binance_btcusdt_1d.csv.gz"
    files[file] = csv_gz_bytes(_fmt_time(frame, True))
    entries.append(_entry("funding_binance_btcusdt_1d", "funding", "BTC", "1d", frame, "time",
                          "Binance BTCUSDT perpetual funding, daily mean (lukmol/gamlss-btc-VaR)",
                          "MIT (aggregation, (c) 2026 Lucas Mol); underlying Binance data",
                          fname, file, "mean of the day's 8h prints; daily accrual ~ 3 x mean"))
    return entries, files


OPTION_COLUMNS = {
    "QUOTE_UNIXTIME": "quote_unix", "INSTRUMENT_NAME": "instrument",
    "UNDERLYING_PRICE": "underlying_price", "EXPIRY_UNIX": "expiry_unix", "DTE": "dte",
    "OPTION_RIGHT": "kind", "STRIKE": "strike", "BID_PRICE": "bid_btc", "ASK_PRICE": "ask_btc",
    "OPEN_INTEREST": "open_interest", "VOLUME": "volume", "DELTA": "delta", "GAMMA": "gamma",
    "VEGA": "vega", "THETA": "theta", "MARK_IV": "mark_iv_pct",
}


def build_options(raw: Path, log: BuildLog) -> tuple[list[dict], dict[str, bytes]]:
    """Build one compact option-chain file from the six OptionsDX months."""
    parts = []
    for fname in OPTION_FILES:
        chain = _read_raw_csv(raw / fname, skipinitialspace=True)
        chain.columns = [str(c).strip().strip("[]") for c in chain.columns]
        _require_columns(chain, list(OPTION_COLUMNS), fname)
        chain = chain[list(OPTION_COLUMNS)].rename(columns=OPTION_COLUMNS)
        for c in ("quote_unix", "expiry_unix", "strike"):
            chain[c] = _numeric(chain[c], fname, c, _lines(chain))
        log.add(fname, "local_time_text", "ignored", len(chain),
                "QUOTE_DATE/QUOTE_READTIME/EXPIRY_TIME are US/Eastern text; "
                "QUOTE_UNIXTIME and EXPIRY_UNIX are used")
        parts.append(chain)
    chain = pd.concat(parts, ignore_index=True)
    chain["quote_time"] = pd.to_datetime(chain["quote_unix"], unit="s", utc=True)
    chain["date"] = chain["quote_time"].dt.normalize()
    chain["expiry"] = pd.to_datetime(chain["expiry_unix"], unit="s", utc=True)
    chain["kind"] = chain["kind"].str.strip()
    dup = chain.duplicated(["date", "instrument"])
    if dup.any():
        raise DataError(f"option chains: duplicate (date, instrument) rows: "
                        f"{chain.loc[dup, ['date', 'instrument']].head().values.tolist()}")
    chain = chain.sort_values(["quote_time", "expiry", "strike", "kind"], kind="mergesort")
    frame = pd.DataFrame({
        "date": chain["date"].dt.strftime("%Y-%m-%d"),
        "quote_time": chain["quote_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "instrument": chain["instrument"], "expiry": chain["expiry"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kind": chain["kind"], "strike": chain["strike"], "underlying_price": chain["underlying_price"],
        "dte": chain["dte"], "bid_btc": chain["bid_btc"], "ask_btc": chain["ask_btc"],
        "mark_iv": chain["mark_iv_pct"] / 100.0, "delta": chain["delta"], "gamma": chain["gamma"],
        "vega": chain["vega"], "theta": chain["theta"], "open_interest": chain["open_interest"],
        "volume": chain["volume"],
    })
    file = "options_btc_deribit_eod.csv.gz"
    files = {file: csv_gz_bytes(frame)}
    t = pd.to_datetime(frame["date"], utc=True)
    entries = [{"name": "options_btc_deribit_eod", "kind": "options", "asset": "BTC",
                "frequency": "1d", "first": f"{t.min():%Y-%m-%d}", "last": f"{t.max():%Y-%m-%d}",
                "rows": int(len(frame)), "source": "OptionsDX / Deribit BTC option chains (EOD)",
                "licence": "no licence stated; redistribution rights not verified",
                "raw_file": ", ".join(OPTION_FILES), "file": file,
                "notes": "2021-06..07 and 2022-01..04 only; prices in BTC; mark_iv decimal"}]
    return entries, files


def cross_check_coinmetrics(raw: Path, log: BuildLog) -> None:
    """Compare Bitstamp daily closes with Coin Metrics reference rates (not shipped)."""
    for asset in ("BTC", "ETH"):
        cm_file = raw / f"{asset.lower()}_usd_daily_coinmetrics_community_2020snapshot.csv"
        if not cm_file.exists():
            continue
        cm = _read_raw_csv(cm_file)
        _require_columns(cm, ["time", "PriceUSD"], cm_file.name)
        cm = pd.Series(_numeric(cm["PriceUSD"], cm_file.name, "PriceUSD", _lines(cm)).to_numpy(),
                       index=_raw_times(cm["time"], cm_file.name, "time"))
        ours = clean_cdd(raw / DAILY_SOURCES[asset][0], BuildLog(), daily=True)
        ours = ours.set_index(ours["time"].dt.normalize())["close"]
        common = ours.index.intersection(cm.index)
        if not len(common):
            raise DataError(f"{DAILY_SOURCES[asset][0]}: no date in common with {cm_file.name} "
                            f"(its rows cover {ours.index[0]:%Y-%m-%d} .. {ours.index[-1]:%Y-%m-%d}; truncated file?)")
        rel = (ours[common] / cm[common] - 1).abs()
        log.add(DAILY_SOURCES[asset][0], "cross_check", "checked", len(common),
                f"closes vs Coin Metrics PriceUSD on {len(common)} days: median |rel diff| "
                f"{rel.median():.4%}, 99th pct {rel.quantile(0.99):.3%}, max {rel.max():.2%} "
                f"on {rel.idxmax():%Y-%m-%d}")
        if rel.median() > 0.01:
            raise DataError(f"{DAILY_SOURCES[asset][0]}: closes disagree with Coin Metrics "
                            f"(median |rel diff| {rel.median():.2%})")


def required_raw_files() -> list[str]:
    """The raw files every build reads (the Coin Metrics and second DVOL copies are optional checks)."""
    return ([f for f, *_ in DAILY_SOURCES.values()] + list(HOURLY_SOURCES.values()) + list(DVOL_SOURCES.values())
            + list(FUNDING_FILES.values()) + OPTION_FILES)


def validate_build(files: dict[str, bytes], catalog: list[dict]) -> None:
    """Check the built files before they replace anything.

    Every catalogue entry has its file and row count; prices and implied vols pass
    the loaders' checks (:func:`~marginlab.datasets.validate.validate_frame`).
    """
    for entry in catalog:
        name = entry["file"]
        if name not in files:
            raise DataError(f"build: catalogue entry {entry['name']!r} has no file {name}")
        frame = pd.read_csv(io.BytesIO(files[name]), compression="gzip")
        if len(frame) != entry["rows"] or not len(frame):
            raise DataError(f"build: {name} has {len(frame)} rows, the catalogue says {entry['rows']}")
        if entry["kind"] in ("prices", "implied_vol"):
            time_col = "date" if entry["frequency"] == "1d" else "time"
            frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop(time_col), utc=True), name="time")
            columns = ["open", "high", "low", "close"] if entry["kind"] == "prices" else ["dvol"]
            validate_frame(frame, source=f"build: {name}", freq=entry["frequency"],
                           max_gap=0 if entry["frequency"] == "1d" else None, columns=columns)


def build(raw: Path | str, out: Path | str = DATA_DIR) -> dict[str, str]:
    """Build every bundled dataset from ``raw`` into the folder ``out``; return file -> sha256.

    Nothing is written until every file is built and validated: the new folder is
    then written beside ``out`` and swapped in whole
    (:func:`~marginlab.datasets.folders.publish_folder`), so a build failing at any
    point leaves ``out`` as it was. ``out`` must not exist, be empty or be a
    previous build (recognised by its ``MANIFEST.sha256`` and ``BUILD_LOG.md``),
    with its files unchanged; this is checked before building.
    """
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise DataError(f"raw data folder not found: {raw}")
    missing = [f for f in required_raw_files() if not (raw / f).is_file()]
    if missing:
        raise DataError(f"{raw}: raw file(s) missing: {first_items(missing)}")
    check_output_folder(out, DATA_FOLDER)
    log = BuildLog()
    catalog, files = [], {}
    for step in (build_prices, build_dvol, build_funding, build_options):
        entries, built = step(raw, log)
        catalog += entries
        files.update(built)
    cross_check_coinmetrics(raw, log)
    validate_build(files, catalog)
    files["catalog.json"] = json.dumps(catalog, indent=1, sort_keys=True).encode() + b"\n"
    files["BUILD_LOG.md"] = log.to_markdown().encode()
    publish_folder(out, files, DATA_FOLDER)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``marginlab datasets build`` (same options, same error handling)."""
    from marginlab.validation.cli import main as cli_main  # the CLI owns argument parsing and error reporting

    return cli_main(["datasets", "build", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
