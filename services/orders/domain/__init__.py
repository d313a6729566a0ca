"""The orders context's pure domain: the order model, the fill rules and the matching engine.

No I/O, no wall clock, no randomness; prices and quantities are `Decimal`.
"""

from services.orders.domain.engine import EngineConfig, MatchingEngine, replay
from services.orders.domain.errors import DuplicateOrderError, InvalidOrderError, OrderError
from services.orders.domain.events import (
    Event,
    FillDeferred,
    LegFill,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    StopTriggered,
)
from services.orders.domain.model import (
    TERMINAL_STATUSES,
    FillPreference,
    Leg,
    Order,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    TimeInForce,
)

__all__ = [
    "DuplicateOrderError",
    "EngineConfig",
    "Event",
    "FillDeferred",
    "FillPreference",
    "InvalidOrderError",
    "Leg",
    "LegFill",
    "MatchingEngine",
    "Order",
    "OrderCanceled",
    "OrderError",
    "OrderExpired",
    "OrderFilled",
    "OrderStatus",
    "OrderType",
    "Quote",
    "Side",
    "StopTriggered",
    "TERMINAL_STATUSES",
    "TimeInForce",
    "replay",
]
