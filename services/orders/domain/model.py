"""Orders and quotes as the matching engine sees them: plain dataclasses, Decimal prices.

Enum values are Alpaca's lowercase names, so they travel unchanged to the `/v2` surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from services.conventions.quote import Quote

__all__ = [
    "FillPreference",
    "Leg",
    "Order",
    "OrderStatus",
    "OrderType",
    "Quote",
    "Side",
    "TERMINAL_STATUSES",
    "TimeInForce",
]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    REJECTED = "rejected"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"


TERMINAL_STATUSES = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REPLACED,
        OrderStatus.REJECTED,
    }
)


class FillPreference(StrEnum):
    """How a multi-leg order is priced against its legs' quotes (see `multileg`).

    Single-leg orders ignore it: they follow the market/limit/stop rules.
    """

    CONSERVATIVE = "conservative"
    MID = "mid"
    AGGRESSIVE = "aggressive"


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg of a multi-leg order, as written: buy or sell ``ratio`` contracts per spread."""

    symbol: str
    side: Side
    ratio: int


@dataclass(slots=True)
class Order:
    """An order and its fill state.

    Multi-leg: ``symbol`` is a label (e.g. the underlying), ``legs`` holds 2-4 legs, ``qty`` is the
    number of spreads and ``limit_price`` the net per spread as written (debit positive, credit
    negative). ``side`` BUY trades the legs as written; SELL trades every leg on the opposite side
    (closing the spread), and its limit is then the least net it accepts.

    The engine keeps its own copy of an accepted order and updates it in place; treat what
    `MatchingEngine.get` returns as read-only.
    """

    id: str
    account_id: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    time_in_force: TimeInForce
    accepted_at: datetime
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    legs: tuple[Leg, ...] = ()
    fill_preference: FillPreference = FillPreference.AGGRESSIVE
    filled_qty: Decimal = Decimal(0)
    status: OrderStatus = OrderStatus.ACCEPTED
    triggered: bool = False  # a stop / stop-limit whose stop has been reached (sticky)
    rested: bool = False  # saw a valid quote without filling at it: later fills are "resting"
    filled_notional: Decimal = Decimal(0)  # sum of qty x price over fills (net price, multi-leg)
    fill_count: int = 0  # fills so far; the n-th fill's execution id is f"{id}:{n}"
    expires_at: datetime | None = None  # set by the engine for day orders
    deferral_reason: str | None = None  # the last reason stated in a FillDeferred

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_multileg(self) -> bool:
        return bool(self.legs)

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL_STATUSES

    @property
    def filled_avg_price(self) -> Decimal | None:
        """Average fill price (net per spread for multi-leg), or None before the first fill."""
        if not self.filled_qty:
            return None
        return self.filled_notional / self.filled_qty
