"""What a position is in: an equity (multiplier 1) or a listed option (multiplier 100).

The accounts context keeps only what its arithmetic needs; the service builds these from the
OCC symbol (marketdata's ``parse_occ``) so this module imports nothing from another context.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

__all__ = ["Equity", "Instrument", "MarkedPosition", "OptionContract", "OptionRight"]


class OptionRight(StrEnum):
    CALL = "call"
    PUT = "put"


@dataclass(frozen=True)
class Equity:
    symbol: str

    @property
    def multiplier(self) -> int:
        return 1


@dataclass(frozen=True)
class OptionContract:
    symbol: str  # the OCC symbol, e.g. GOOG151224C00600000
    underlying: str
    right: OptionRight
    strike: Decimal
    expiry: date
    multiplier: int = 100


Instrument = Equity | OptionContract


@dataclass(frozen=True)
class MarkedPosition:
    """A position valued at a mark (per share, or per option share before the multiplier)."""

    instrument: Instrument
    qty: Decimal  # signed: shares or contracts
    mark: Decimal

    @property
    def market_value(self) -> Decimal:
        return self.qty * self.mark * self.instrument.multiplier
