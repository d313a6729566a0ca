"""The quote value type every context shares: one NBBO with its displayed sizes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = ["Quote"]


@dataclass(frozen=True, slots=True)
class Quote:
    """One NBBO: best bid and ask with their displayed sizes (shares, or contracts)."""

    symbol: str
    ts: datetime  # UTC-aware
    bid: Decimal
    ask: Decimal
    bid_size: int
    ask_size: int
