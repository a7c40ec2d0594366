"""Member account positions read from a file (CSV or Parquet), validated like prices.

A position file has one row per account x date x position::

    date, account, instrument, asset, quantity[, expiry, strike, kind]

* ``date``: the margin date the row set is held at (ISO 8601 day, ``YYYY-MM-DD``;
  on hourly data ``YYYY-MM-DD HH:MM``). A daily row set dated D is the book held
  at D's close (D 24:00 UTC), like a price row labelled D.
* ``account``: the member account's identifier (text; integers are read as
  their decimal text).
* ``instrument``: ``spot``, ``perpetual``, ``future`` (dated, linear) or ``option``
  (European); ``asset`` its underlying as in the catalogue (``BTC``).
* ``quantity``: signed units of the underlying (negative = short); a row set
  whose quantities are all zero says the account is flat from that date.
* ``expiry``: futures and options only (ISO 8601; a day without a time, as text
  or a Parquet date32, is at 08:00 UTC, Deribit's expiry hour; a Parquet datetime
  keeps its time, and one at exactly 00:00 UTC is refused as ambiguous); ``strike`` (> 0) and ``kind`` (``call`` or
  ``put``): options only. The columns are left empty for other instruments.

**Semantics.** The rows of one (account, date) are the account's whole book
from that date's close until its next row set (``carry_forward=True``, the
default: a file lists a book when it changes), or on that date only
(``carry_forward=False``: a file of daily snapshots; the account has no book on
dates without rows). A carried book loses its options and futures at their
expiry (they settle); rows never hold an instrument past its expiry.

:func:`read_positions` returns a :class:`PositionTable`; the portfolio type that
serves an account's book per date from it is
:class:`marginlab.models.AccountBook` (``account_books(table)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .conventions import date_format, iso_text
from .errors import DataError
from .loaders import _catalog_records, _read_table, known_assets
from .market import MarketData
from .validate import frequency_delta

__all__ = ["read_positions", "PositionTable", "POSITION_COLUMNS", "INSTRUMENT_KINDS", "EXPIRY_HOUR"]

#: Columns of a position file (the last three for futures and options only).
POSITION_COLUMNS = ["date", "account", "instrument", "asset", "quantity", "expiry", "strike", "kind"]
#: Accepted values of the ``instrument`` column.
INSTRUMENT_KINDS = ("spot", "perpetual", "future", "option")
#: Hour (UTC) of an expiry given as a day without a time: Deribit's 08:00.
EXPIRY_HOUR = 8
_REQUIRED = POSITION_COLUMNS[:5]
_DATED = ("future", "option")


@dataclass(frozen=True)
class PositionTable:
    """A validated position file (see the module docstring).

    Attributes
    ----------
    frame : DataFrame
        One row per position, sorted by account, date and file row: ``date`` (UTC), ``account`` (str),
        ``instrument``, ``asset`` (str), ``quantity`` (float), ``expiry`` (UTC, NaT when none), ``strike``
        (float, NaN when none), ``kind`` (``call``/``put`` or empty), ``row`` (the file's data row, 1-based).
    carry_forward : bool
        Whether a row set holds until the account's next row set (True) or on its date only.
    source : str
        The file read (for messages).
    freq : str
        ``"1d"`` or ``"1h"``: the step from a row's date to its observation time.
    """

    frame: pd.DataFrame
    carry_forward: bool = True
    source: str = "<table>"
    freq: str = "1d"

    @property
    def accounts(self) -> list[str]:
        """Account identifiers in first-seen (sorted) order."""
        return list(dict.fromkeys(self.frame["account"]))

    @property
    def assets(self) -> list[str]:
        """Underlying assets held by any account."""
        return sorted(set(self.frame["asset"]))

    def __len__(self) -> int:
        return len(self.frame)

    def to_file(self, path: str | Path) -> Path:
        """Write the table in the file format :func:`read_positions` reads (``.csv``, ``.csv.gz``, ``.parquet``)."""
        path = Path(path)
        f = self.frame
        fmt = date_format(self.freq)
        out = pd.DataFrame({
            "date": f["date"].dt.strftime(fmt), "account": f["account"], "instrument": f["instrument"],
            "asset": f["asset"], "quantity": f["quantity"],
            "expiry": f["expiry"].dt.strftime("%Y-%m-%d %H:%M").fillna(""),
            "strike": f["strike"], "kind": f["kind"]})
        if "".join(path.suffixes).lower().endswith(".parquet"):
            out.to_parquet(path, index=False)
        else:
            out.to_csv(path, index=False, float_format="%.10g")
        return path


def _where(path, frame: pd.DataFrame, mask, column: str) -> str:
    """``file: data row N (account A), column C`` of the first row in ``mask``."""
    k = int(np.flatnonzero(np.asarray(mask))[0])
    row = int(frame["row"].iloc[k])
    account = frame["account"].iloc[k] if "account" in frame else None
    more = int(np.asarray(mask).sum()) - 1
    also = f" (and {more} more row(s))" if more > 0 else ""
    who = "no account" if account is None or pd.isna(account) or not str(account).strip() else f"account {account!r}"
    return f"{path}: data row {row} ({who}), column {column!r}{also}"


def _text(frame: pd.DataFrame, column: str, path, allow_empty: bool = False) -> pd.Series:
    """A text column as str (integers as their decimal text); missing values raise unless ``allow_empty``."""
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        raise DataError(f"{_where(path, frame, np.ones(len(raw), bool), column)}: holds true/false values, not text")
    if pd.api.types.is_float_dtype(raw):  # a column of numbers with blanks: not an identifier
        if raw.notna().any():
            raise DataError(f"{_where(path, frame, raw.notna(), column)}: holds numbers, expected text")
        raw = raw.astype(object)
    missing = raw.isna() | (raw.astype(str).str.strip() == "")
    if missing.any() and not allow_empty:
        raise DataError(f"{_where(path, frame, missing, column)}: missing value")
    out = raw.where(~missing, "").astype(str)
    _refuse_padded(path, frame, column, out, ~missing.to_numpy())  # ' A1' and 'A1': two accounts, or one?
    return out


def _refuse_padded(path, frame: pd.DataFrame, column: str, text: pd.Series, present: np.ndarray) -> None:
    """DataError naming the first value of ``text`` (where ``present``) with leading or trailing spaces.

    Text and numbers alike: the file should say exactly what it means, not what it means once stripped.
    """
    padded = present & (text != text.str.strip()).to_numpy()
    if padded.any():
        raise DataError(f"{_where(path, frame, padded, column)}: {text.to_numpy()[padded][0]!r} has leading or "
                        "trailing spaces")


def read_positions(path, carry_forward: bool = True, *, market: MarketData | None = None,
                   freq: str | None = None) -> PositionTable:
    """Read and validate a member position file (CSV, CSV.gz or Parquet); see the module docstring.

    Parameters
    ----------
    path : str or Path
    carry_forward : bool
        True (default): a row set is the account's book from its date until the account's next row set;
        False: on its date only.
    market : MarketData, optional
        The market the positions will be replayed on: assets must be among its assets and dates among its
        row labels (no later than its last row). Without it, assets must be bundled and dates inside the
        bundled history of their asset.
    freq : {"1d", "1h"}, optional
        The data frequency (default: the market's, else daily).

    Returns
    -------
    PositionTable

    Raises
    ------
    DataError
        One line naming the file, the data row, the account and the column: an unreadable, empty or binary
        file; missing or unknown columns; missing or non-ISO dates, dates off the frequency's grid,
        outside the market data, or missing from it with ``carry_forward=False`` (a carried row set dated at
        a missing hour is the book from the next row on); a text or number with leading or trailing spaces; a
        missing account; an unknown instrument kind or asset; a true/false, non-numeric, missing or
        infinite quantity, a non-zero one reading as 0 (``1e-400``), or (with ``market``) one whose
        |quantity| x price is above :data:`MAX_POSITION_NOTIONAL`; an expiry missing (futures, options) or given where
        there is none; a missing, non-numeric or non-positive strike; a kind other than call/put; an
        instrument held at or after its expiry; the same position twice in one row set.
    ValueError
        ``carry_forward`` other than True or False.
    """
    path = Path(path)
    if not isinstance(carry_forward, bool):
        raise ValueError(f"read_positions: carry_forward must be True or False, got {carry_forward!r}")
    freq = market.freq if market is not None and freq is None else (freq or "1d")
    step = frequency_delta(freq)
    # every CSV cell as its text (numbers too: ' 2 ' would be read as 2, while ' A1' is refused)
    frame = _read_table(path, time_column="date", dtype={c: str for c in POSITION_COLUMNS})
    if frame.empty or not len(frame.columns):
        raise DataError(f"{path}: no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; a position file has the columns {POSITION_COLUMNS}")
    unknown = [c for c in frame.columns if c not in POSITION_COLUMNS]
    if unknown:
        raise DataError(f"{path}: unknown column(s) {unknown}; a position file has the columns {POSITION_COLUMNS}")
    for c in ("expiry", "strike", "kind"):
        if c not in frame.columns:
            frame[c] = np.nan
    frame = frame.reset_index(drop=True)
    frame["row"] = np.arange(1, len(frame) + 1)
    frame["account"] = _text(frame, "account", path)
    out = pd.DataFrame({"account": frame["account"], "row": frame["row"]})
    out["date"] = _times(frame["date"], out, "date", path, np.ones(len(frame), bool))
    off = out["date"] != out["date"].dt.floor(step)
    if off.any():
        raise DataError(f"{_where(path, out, off, 'date')}: {out['date'][off].iloc[0]} is not on the {freq} grid "
                        f"({'midnight UTC' if freq == '1d' else 'the full hour'})")
    inst = _text(frame, "instrument", path)
    bad = ~inst.isin(INSTRUMENT_KINDS)
    if bad.any():
        raise DataError(f"{_where(path, out, bad, 'instrument')}: unknown instrument {inst[bad].iloc[0]!r}; "
                        f"known: {list(INSTRUMENT_KINDS)}")
    out["instrument"] = inst
    asset = _text(frame, "asset", path)
    known = list(market.assets) if market is not None else known_assets("prices", freq)
    bad = ~asset.isin(known)
    if bad.any():
        raise DataError(f"{_where(path, out, bad, 'asset')}: unknown asset {asset[bad].iloc[0]!r}; "
                        f"{'the market data has' if market is not None else 'known assets:'} {known}")
    out["asset"] = asset
    out["quantity"] = _numbers(frame, out, "quantity", path, required=np.ones(len(frame), bool))
    dated = inst.isin(_DATED).to_numpy()
    is_option = (inst == "option").to_numpy()
    # expiry: required for futures and options, empty for the others
    raw_exp = frame["expiry"]
    has_exp = raw_exp.notna().to_numpy() & (raw_exp.astype(str).str.strip() != "").to_numpy()
    if (dated & ~has_exp).any():
        kind = inst[dated & ~has_exp].iloc[0]
        raise DataError(f"{_where(path, out, dated & ~has_exp, 'expiry')}: missing expiry for "
                        f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if (~dated & has_exp).any():
        raise DataError(f"{_where(path, out, ~dated & has_exp, 'expiry')}: a {inst[~dated & has_exp].iloc[0]} has "
                        "no expiry; leave the column empty")
    expiry = _times(raw_exp, out, "expiry", path, has_exp)
    if pd.api.types.is_datetime64_any_dtype(raw_exp):
        # a datetime column (Parquet) keeps its time; at exactly 00:00 UTC it may be a day exported as a datetime
        # (pandas writes a day so) or a deliberate midnight: refused rather than guessed
        midnight = has_exp & (expiry == expiry.dt.floor("D")).to_numpy()
        if midnight.any():
            k = int(np.flatnonzero(midnight)[0])
            raise DataError(f"{_where(path, out, midnight, 'expiry')}: {expiry.iloc[k]:%Y-%m-%d %H:%M} UTC in a "
                            "datetime column is ambiguous (a day without its time, or midnight?); write the expiry "
                            f"as text, e.g. '{expiry.iloc[k]:%Y-%m-%d} 08:00' (a day without a time is 08:00 UTC)")
    else:  # a day without a time (text, or a Parquet date32): the 08:00 UTC expiry
        day_only = has_exp & ~raw_exp.astype(str).str.contains(":").to_numpy()
        expiry = expiry.where(~day_only, expiry + pd.Timedelta(hours=EXPIRY_HOUR))
    out["expiry"] = expiry
    # strike and kind: options only
    raw_k = frame["strike"]
    has_k = raw_k.notna().to_numpy() & (raw_k.astype(str).str.strip() != "").to_numpy()
    if (~is_option & has_k).any():
        raise DataError(f"{_where(path, out, ~is_option & has_k, 'strike')}: only options have a strike; leave "
                        "the column empty")
    out["strike"] = _numbers(frame, out, "strike", path, required=is_option)
    bad = is_option & ~(out["strike"].to_numpy() > 0)
    if bad.any():
        raise DataError(f"{_where(path, out, bad, 'strike')}: strike must be positive, got "
                        f"{out['strike'][bad].iloc[0]}")
    kind = _text(frame, "kind", path, allow_empty=True)
    bad = is_option & ~kind.isin(["call", "put"]).to_numpy()
    if bad.any():
        raise DataError(f"{_where(path, out, bad, 'kind')}: an option's kind must be 'call' or 'put', got "
                        f"{kind[bad].iloc[0]!r}")
    bad = ~is_option & (kind != "").to_numpy()
    if bad.any():
        raise DataError(f"{_where(path, out, bad, 'kind')}: only options have a kind; leave the column empty")
    out["kind"] = kind
    # dates inside the market data (or the asset's bundled history)
    first = _check_dates(out, path, market, freq, carry_forward)
    # an instrument held at or after its expiry: the close (+ step) of the first row the set is margined on must
    # be before the expiry; that row is the date's own, or the next market row for a carried set dated in a gap,
    # unless the account's next set, dated in the same gap, replaces it before that row (it is never in force)
    day = date_format(freq)  # a row's date as the file writes it
    sets = out[["account", "date"]].drop_duplicates().sort_values(["account", "date"], kind="stable")
    sets["next"] = sets.groupby("account", sort=False)["date"].shift(-1)
    following = out[["account", "date"]].merge(sets, on=["account", "date"], how="left")["next"].to_numpy()
    superseded = ~pd.isna(following) & (following <= first.to_numpy())
    held_after = dated & ~superseded & ((first + step).to_numpy() >= out["expiry"].to_numpy())
    if held_after.any():
        k = int(np.flatnonzero(held_after)[0])
        later = first.iloc[k] != out["date"].iloc[k]
        gap = (f", a time missing from the market data: in force from its next row {first.iloc[k].strftime(day)}"
               if later else "")
        raise DataError(f"{_where(path, out, held_after, 'expiry')}: {out['instrument'].iloc[k]} expiring "
                        f"{out['expiry'].iloc[k]:%Y-%m-%d %H:%M} UTC is held on {out['date'].iloc[k].strftime(day)}"
                        f"{gap} (observed at its close, {first.iloc[k] + step:%Y-%m-%d %H:%M} UTC), at or after "
                        "its expiry" + ("; it would never be margined" if later else ""))
    keys = ["account", "date", "instrument", "asset", "expiry", "strike", "kind"]
    dup = out.duplicated(keys, keep=False).to_numpy()
    if dup.any():
        first = out[dup].iloc[0]
        same = out[dup & (out["account"] == first["account"]).to_numpy() & (out["date"] == first["date"]).to_numpy()
                   & (out["instrument"] == first["instrument"]).to_numpy()
                   & (out["asset"] == first["asset"]).to_numpy()]
        raise DataError(f"{path}: data rows {same['row'].iloc[0]} and {same['row'].iloc[1]} (account "
                        f"{first['account']!r}), columns {keys[1:]}: the same position twice on "
                        f"{first['date'].strftime(day)}; give one row per position (sum the quantities)")
    out = out.sort_values(["account", "date", "row"], kind="stable").reset_index(drop=True)
    columns = ["date", "account", "instrument", "asset", "quantity", "expiry", "strike", "kind", "row"]
    return PositionTable(frame=out[columns], carry_forward=carry_forward, source=str(path), freq=freq)


def _times(raw: pd.Series, out: pd.DataFrame, column: str, path, present: np.ndarray) -> pd.Series:
    """UTC times of a column where ``present`` (NaT elsewhere): ISO 8601 text or a datetime column."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        values = pd.Series(pd.DatetimeIndex(raw).tz_localize("UTC") if pd.DatetimeIndex(raw).tz is None
                           else pd.DatetimeIndex(raw).tz_convert("UTC"), index=raw.index)
    else:
        if (pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw)) and present.any():
            # an empty column (absent, or every cell blank) reads as float NaN: no number to refuse
            raise DataError(f"{_where(path, out, present, column)}: holds numbers, expected ISO 8601 dates "
                            "(YYYY-MM-DD)")
        text = raw.where(present, None).astype(object)
        values = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        bad = present & (values.isna().to_numpy() | ~iso_text(text))
        if bad.any():
            shown = raw[bad].iloc[0]
            what = "missing value" if shown is None or (isinstance(shown, float) and np.isnan(shown)) or \
                not str(shown).strip() else f"{shown!r} is not an ISO 8601 date or time (YYYY-MM-DD[ HH:MM])"
            raise DataError(f"{_where(path, out, bad, column)}: {what}")
    return values.astype("datetime64[ns, UTC]")


#: a number written as zero ("0", "-0.0", ".0", "0e5"): any other text reading as 0 underflowed
_ZERO = r"[+-]?(0+\.?0*|\.0+)([eE][+-]?[0-9]+)?"
#: the largest |quantity| x price a position may have (quote currency): above it, a typo or a unit error
MAX_POSITION_NOTIONAL = 1e13


def _numbers(frame: pd.DataFrame, out: pd.DataFrame, column: str, path, required: np.ndarray) -> pd.Series:
    """A numeric column as float: no true/false, no text, finite where ``required`` (NaN elsewhere)."""
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        flags = np.ones(len(raw), dtype=bool)  # every row a true/false
    elif pd.api.types.is_numeric_dtype(raw):
        flags = np.zeros(len(raw), dtype=bool)
    else:  # the rows holding one, e.g. 'false' among numbers in a CSV
        flags = raw.map(lambda v: isinstance(v, bool | np.bool_) or (
            isinstance(v, str) and v.strip().lower() in ("true", "false"))).to_numpy(dtype=bool)
    if flags.any():
        raise DataError(f"{_where(path, out, flags, column)}: holds true/false values, not numbers")
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=float)
    else:
        shown = raw.astype(str)
        text = raw.notna().to_numpy() & (shown.str.strip() != "").to_numpy()
        _refuse_padded(path, out, column, shown, text)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = text & np.isnan(values)
        if bad.any():
            raise DataError(f"{_where(path, out, bad, column)}: {raw[bad].iloc[0]!r} is not a number")
        # a non-zero text read as 0 (1e-400 underflows): an account silently flat, a strike of 0
        lost = text & (values == 0) & ~shown.str.fullmatch(_ZERO).to_numpy(dtype=bool)
        if lost.any():
            raise DataError(f"{_where(path, out, lost, column)}: {raw[lost].iloc[0]!r} is not zero but too small "
                            "for a double (it would read as 0)")
    missing = required & np.isnan(values)
    if missing.any():
        raise DataError(f"{_where(path, out, missing, column)}: missing value")
    inf = np.isinf(values)
    if inf.any():
        raise DataError(f"{_where(path, out, inf, column)}: {values[inf][0]} is not a finite number")
    return pd.Series(values, index=frame.index)


def _check_dates(out: pd.DataFrame, path, market: MarketData | None, freq: str, carry_forward: bool) -> pd.Series:
    """Check that every row's date is a row of the market (or inside its asset's bundled history).

    Returns each row's first margined row: its date, or the next market row for a carried date in a gap.
    Carried forward, a date inside the market's range that is not one of its rows (one of the hours missing
    from the hourly panel) is accepted: the row set is the book from the next row on
    (:meth:`AccountBook.positions_at <marginlab.models.AccountBook.positions_at>`), whose price is checked.
    A snapshot (``carry_forward=False``) there would never be margined and is refused.
    """
    first = out["date"]
    if market is not None:
        index = market.index
        bad = ~out["date"].isin(index).to_numpy()
        inside = ((out["date"] >= index[0]) & (out["date"] <= index[-1])).to_numpy()
        if carry_forward:
            bad &= ~inside  # a gap inside the panel: in force from the next row
        if bad.any():
            d = out["date"][bad].iloc[0]
            span = f"{index[0]:%Y-%m-%d} .. {index[-1]:%Y-%m-%d}, {market.freq}"
            if index[0] <= d <= index[-1]:  # e.g. one of the hours missing from the hourly panel (maintenance)
                raise DataError(f"{_where(path, out, bad, 'date')}: {d:%Y-%m-%d %H:%M} is missing from the market "
                                f"data (a gap inside {span}); with carry_forward=False no book can be margined "
                                "there")
            raise DataError(f"{_where(path, out, bad, 'date')}: {d:%Y-%m-%d %H:%M} is outside the market data "
                            f"({span})")
        a = out["asset"].map(market.asset_index).to_numpy()
        rows = index.searchsorted(out["date"], side="left")  # the row itself, or the next one in a gap
        first = _first_rows(index, out)
        price = market.price_array[rows, a]
        no_price = np.isnan(price)
        if no_price.any():
            k = int(np.flatnonzero(no_price)[0])
            raise DataError(f"{_where(path, out, no_price, 'date')}: no {out['asset'].iloc[k]} price on "
                            f"{out['date'].iloc[k]:%Y-%m-%d %H:%M} in the market data")
        huge = np.abs(out["quantity"].to_numpy(dtype=float)) * price > MAX_POSITION_NOTIONAL
        if huge.any():
            k = int(np.flatnonzero(huge)[0])
            q = out["quantity"].iloc[k]
            raise DataError(f"{_where(path, out, huge, 'quantity')}: {q:g} {out['asset'].iloc[k]} at {price[k]:,.6g} "
                            f"is a position of {abs(q) * price[k]:.3g} (above {MAX_POSITION_NOTIONAL:.0e} in the quote "
                            "currency: a unit or typing error?)")
        return first
    ranges = {r["asset"]: (pd.Timestamp(r["first"], tz="UTC"), pd.Timestamp(r["last"], tz="UTC"))
              for r in _catalog_records() if r["kind"] == "prices" and r["frequency"] == freq}
    start = out["asset"].map(lambda a: ranges[a][0])
    last = out["asset"].map(lambda a: ranges[a][1])
    bad = ((out["date"] < start) | (out["date"] > last)).to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        a = out["asset"].iloc[k]
        raise DataError(f"{_where(path, out, bad, 'date')}: {out['date'].iloc[k]:%Y-%m-%d %H:%M} is outside the "
                        f"bundled {a} data ({ranges[a][0]:%Y-%m-%d} .. {ranges[a][1]:%Y-%m-%d})")
    if not carry_forward:  # a snapshot dated in a gap is refused when replayed (AccountBook.held)
        return first
    # the bundled panel's rows: a carried date in one of its gaps (e.g. an hour missing from the hourly data) is
    # margined from the next row on, as with a market
    from .loaders import load_market

    return _first_rows(load_market(sorted(set(out["asset"])), freq=freq).index, out)


def _first_rows(index: pd.DatetimeIndex, out: pd.DataFrame) -> pd.Series:
    """Each row's first margined row of ``index``: its date, or the next row when the date is in a gap."""
    rows = np.minimum(index.searchsorted(out["date"], side="left"), len(index) - 1)
    return pd.Series(index[rows], index=out.index)
