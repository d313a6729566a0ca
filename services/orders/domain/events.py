"""What the matching engine reports. Every event is an immutable fact with its simulated time.

An `OrderFilled` carries the quote that produced it (for a multi-leg, each `LegFill` carries its
leg's quote too), so "why did this fill at $X" stays answerable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.orders.domain.model import Quote, Side

__all__ = [
    "Event",
    "FillDeferred",
    "LegFill",
    "OrderCanceled",
    "OrderExpired",
    "OrderFilled",
    "StopTriggered",
]


@dataclass(frozen=True, slots=True)
class LegFill:
    """One leg's share of a multi-leg fill. ``side`` is the side actually traded."""

    symbol: str
    side: Side
    ratio: int
    qty: Decimal
    price: Decimal
    quote: Quote


@dataclass(frozen=True, slots=True)
class OrderFilled:
    """A (possibly partial) fill. ``execution_id`` is ``f"{order_id}:{n}"``, n counting from 1.

    For a multi-leg order ``qty`` counts spreads, ``price`` is the net per spread as written
    (debit positive) and ``quote`` is the quote whose arrival completed the snapshot.
    """

    order_id: str
    account_id: str
    execution_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    quote: Quote
    ts: datetime
    explanation: str
    cumulative_qty: Decimal
    remaining_qty: Decimal
    leg_fills: tuple[LegFill, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    order_id: str
    reason: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class OrderExpired:
    order_id: str
    reason: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class FillDeferred:
    """A quote that could have filled the order was not usable. Stated once per change of reason."""

    order_id: str
    reason: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class StopTriggered:
    order_id: str
    quote: Quote
    ts: datetime


Event = OrderFilled | OrderCanceled | OrderExpired | FillDeferred | StopTriggered
