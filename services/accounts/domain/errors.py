"""Ledger errors. The service maps each to a gRPC status in one place.

LedgerError (ValueError)
├── InsufficientBuyingPower   an order needs more buying power than is available
├── InsufficientQuantity      a cash account would sell more than it owns (no shorting)
└── MissingMark               a valuation needs a price that was not supplied
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "InsufficientBuyingPower",
    "InsufficientQuantity",
    "LedgerError",
    "MissingMark",
]


class LedgerError(ValueError):
    """Base of the accounts ledger's domain errors."""


class InsufficientBuyingPower(LedgerError):
    def __init__(self, required: Decimal, available: Decimal) -> None:
        super().__init__(
            f"insufficient buying power: order needs ${required:.2f}, "
            f"available ${max(available, Decimal(0)):.2f}"
        )
        self.required = required
        self.available = available


class InsufficientQuantity(LedgerError):
    def __init__(self, symbol: str, requested: Decimal, available: Decimal) -> None:
        free = max(available, Decimal(0)).normalize()
        super().__init__(
            f"insufficient qty: selling {requested.normalize():f} {symbol} but {free:f} "
            "available (cash accounts cannot sell short)"
        )
        self.symbol = symbol
        self.requested = requested
        self.available = available


class MissingMark(LedgerError):
    def __init__(self, symbol: str) -> None:
        super().__init__(f"no price for {symbol}: a valuation needs a mark for every position")
        self.symbol = symbol
