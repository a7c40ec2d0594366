"""Instruments and positions.

All quantities are in units of the underlying (1.0 = one BTC); values in the
quote currency (USD or USDT, as the market data). ``Perpetual`` and ``Future``
are linear (USD-margined) contracts priced at the spot: zero basis unless a
``basis`` is given (the bundled data has no dated-futures curve). Options are
European, priced by Black-76 with forward = spot and zero rates
(:mod:`marginlab.models.pricing`), expiring at the expiry given, as UTC (a bare date is 00:00 UTC;
:func:`~marginlab.datasets.read_positions` and the reference strategies set Deribit's 08:00 UTC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from marginlab.datasets.conventions import utc

__all__ = ["Instrument", "Spot", "Perpetual", "Future", "Option", "Position", "LINEAR", "OPTION"]

LINEAR = "linear"
OPTION = "option"


@dataclass(frozen=True)
class Instrument:
    """Base class: every instrument refers to one underlying ``asset``."""

    asset: str

    def __post_init__(self) -> None:
        if not isinstance(self.asset, str) or not self.asset:
            raise ValueError(f"{type(self).__name__}: asset must be a non-empty string, got {self.asset!r}")

    @property
    def family(self) -> str:
        """``"linear"`` or ``"option"``."""
        return LINEAR

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``BTC-PERP``."""
        return f"{self.asset}-{type(self).__name__.upper()}"


@dataclass(frozen=True)
class Spot(Instrument):
    """Spot holding of ``asset`` (value = quantity x price)."""

    @property
    def label(self) -> str:
        """Return e.g. ``BTC``."""
        return self.asset


@dataclass(frozen=True)
class Perpetual(Instrument):
    """Linear perpetual swap; P&L = quantity x price change (- funding when enabled)."""

    @property
    def label(self) -> str:
        """Return e.g. ``BTC-PERP``."""
        return f"{self.asset}-PERP"


@dataclass(frozen=True)
class Future(Instrument):
    """Linear dated future, priced at spot x (1 + basis) (zero basis by default) while it lives.

    Cash-settled at ``expiry`` on the spot close of the last observation at or before it: the basis is
    paid back at settlement (:mod:`marginlab.models.revaluation`, "Settlement").
    """

    expiry: pd.Timestamp | str | None = None
    basis: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expiry is None:
            raise ValueError("Future: expiry is required")
        object.__setattr__(self, "expiry", utc(self.expiry))
        if not math.isfinite(self.basis):
            raise ValueError("Future: basis must be finite")

    @property
    def label(self) -> str:
        """Return e.g. ``BTC-25JUN21``."""
        return f"{self.asset}-{self.expiry:%d%b%y}".upper()


@dataclass(frozen=True)
class Option(Instrument):
    """European option on ``asset``; ``kind`` is ``"call"`` or ``"put"``."""

    expiry: pd.Timestamp | str | None = None
    strike: float = float("nan")
    kind: str = "call"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expiry is None:
            raise ValueError("Option: expiry is required")
        object.__setattr__(self, "expiry", utc(self.expiry))
        if not (isinstance(self.strike, int | float) and math.isfinite(self.strike) and self.strike > 0):
            raise ValueError(f"Option: strike must be a positive number, got {self.strike!r}")
        if self.kind not in ("call", "put"):
            raise ValueError(f"Option: kind must be 'call' or 'put', got {self.kind!r}")

    @property
    def family(self) -> str:
        """Return ``"option"``."""
        return OPTION

    @property
    def is_call(self) -> bool:
        """True for a call."""
        return self.kind == "call"

    @property
    def label(self) -> str:
        """Deribit-style name, e.g. ``BTC-25JUN21-40000-C``."""
        return f"{self.asset}-{self.expiry:%d%b%y}-{self.strike:g}-{self.kind[0]}".upper()


@dataclass(frozen=True)
class Position:
    """A quantity (units of the underlying, negative = short) of one instrument."""

    instrument: Instrument
    quantity: float

    def __post_init__(self) -> None:
        if not isinstance(self.instrument, Instrument):
            raise ValueError(f"Position: unknown instrument {self.instrument!r} (expected Spot, Perpetual, "
                             "Future or Option)")
        q = self.quantity
        if not isinstance(q, int | float) or not math.isfinite(q):
            raise ValueError(f"Position {self.instrument.label}: quantity must be a finite number, got {q!r}")

    def held_at(self, observed_ns: int) -> bool:
        """Whether the position is still held at ``observed_ns`` (an observation time, ns since the epoch, UTC).

        False once an option or dated future has expired at or before it (settled into cash); spot and
        perpetuals are always held.
        """
        inst = self.instrument
        return not isinstance(inst, Option | Future) or inst.expiry.value > observed_ns
