"""What the engine requires of an order before it accepts it. Errors name the field."""

from __future__ import annotations

from decimal import Decimal
from math import gcd

from services.orders.domain.errors import InvalidOrderError
from services.orders.domain.model import Order, OrderStatus, OrderType

__all__ = ["validate_order"]

_NEEDS_LIMIT = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_NEEDS_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
# NEW / ACCEPTED for a fresh order; PARTIALLY_FILLED when the service re-arms one after a restart.
_ACCEPTABLE = frozenset({OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


def _finite(field: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidOrderError(field, f"must be a finite Decimal, got {value!r}")


def validate_order(order: Order) -> None:
    """Raise `InvalidOrderError` unless the engine can work the order as given.

    An order being re-armed (after a restart) may carry its fill state: ``filled_qty`` below
    ``qty``, ``filled_notional``, ``fill_count``, ``triggered``, ``rested``.
    """
    if not order.id:
        raise InvalidOrderError("id", "must not be empty")
    if order.accepted_at.tzinfo is None:
        raise InvalidOrderError("accepted_at", "must be timezone-aware")
    if order.status not in _ACCEPTABLE:
        raise InvalidOrderError("status", f"an open order is expected, got {order.status}")
    _finite("qty", order.qty)
    if order.qty <= 0:
        raise InvalidOrderError("qty", "must be positive")
    _finite("filled_qty", order.filled_qty)
    if not 0 <= order.filled_qty < order.qty:
        raise InvalidOrderError("filled_qty", "must be at least 0 and below qty")
    if order.order_type in _NEEDS_LIMIT:
        if order.limit_price is None:
            raise InvalidOrderError("limit_price", f"required for a {order.order_type} order")
        _finite("limit_price", order.limit_price)
    elif order.limit_price is not None:
        raise InvalidOrderError("limit_price", f"not allowed on a {order.order_type} order")
    if order.order_type in _NEEDS_STOP:
        if order.stop_price is None:
            raise InvalidOrderError("stop_price", f"required for a {order.order_type} order")
        _finite("stop_price", order.stop_price)
        if order.stop_price <= 0:
            raise InvalidOrderError("stop_price", "must be positive")
    elif order.stop_price is not None:
        raise InvalidOrderError("stop_price", f"not allowed on a {order.order_type} order")
    if order.legs:
        _validate_legs(order)
    elif order.limit_price is not None and order.limit_price <= 0:
        raise InvalidOrderError("limit_price", "must be positive")


def _validate_legs(order: Order) -> None:
    legs = order.legs
    if not 2 <= len(legs) <= 4:
        raise InvalidOrderError("legs", f"a multi-leg order has 2 to 4 legs, got {len(legs)}")
    if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
        raise InvalidOrderError("order_type", "a multi-leg order is market or limit")
    if order.qty != order.qty.to_integral_value():
        raise InvalidOrderError("qty", "a multi-leg order trades whole spreads")
    symbols = [leg.symbol for leg in legs]
    if len(set(symbols)) != len(symbols):
        raise InvalidOrderError("legs", "each leg must be on a different symbol")
    for i, leg in enumerate(legs):
        if not isinstance(leg.ratio, int) or leg.ratio < 1:
            raise InvalidOrderError(f"legs[{i}].ratio", "must be a positive integer")
    g = 0
    for leg in legs:
        g = gcd(g, leg.ratio)
    if g != 1:
        raise InvalidOrderError("legs", f"leg ratios must have GCD 1, got {g}")
