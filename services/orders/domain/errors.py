"""Errors the matching domain raises. The service layer maps them to gRPC status in one place.

ValueError
 └── OrderError
      ├── InvalidOrderError     an order the engine cannot accept (names the field)
      └── DuplicateOrderError   an order id the engine already holds
"""

from __future__ import annotations

__all__ = ["DuplicateOrderError", "InvalidOrderError", "OrderError"]


class OrderError(ValueError):
    """Base of the matching domain's errors."""


class InvalidOrderError(OrderError):
    """The order breaks a rule of its type; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DuplicateOrderError(OrderError):
    """The engine already holds an order with this id."""
