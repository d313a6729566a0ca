"""The matching engine's state and the lifecycle steps every matcher shares.

`EngineCore` holds the books, the open orders and the latest quote per symbol, and knows how to
fill, defer, cancel, expire and finish an order; the matching rules themselves are in
`single_leg` (market, limit, stop, stop-limit) and `spread_matching` (multi-leg packages), and
the public API in `engine`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.conventions.calendar import MarketCalendar
from services.orders.domain.book import SymbolBook
from services.orders.domain.events import (
    Event,
    FillDeferred,
    LegFill,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
)
from services.orders.domain.explain import (
    fmt_ts,
)
from services.orders.domain.model import (
    TERMINAL_STATUSES,
    Order,
    OrderStatus,
    Quote,
    TimeInForce,
)
from services.orders.domain.quotes import (
    SessionGate,
    stale_reason,
)

__all__ = ["EngineConfig", "EngineCore"]

_UTC = UTC
_ZERO = Decimal(0)
_IMMEDIATE = frozenset({TimeInForce.IOC, TimeInForce.FOK})
_TERMINAL = TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Matching options.

    - ``max_quote_age``: a quote older than this at the evaluation time is stale. 90 s lets
      per-minute data (one quote per minute, stamped at the minute's end) stay usable.
    - ``queue_pessimistic``: a resting limit needs a strict cross (ask < limit / bid > limit)
      instead of a touch. Off by default (Alpaca paper fills on touch).
    - ``cap_at_displayed_size``: a fill takes at most the displayed size on its side of the
      quote; the rest waits for later quotes (partial fills). Off by default: full fills.
    """

    max_quote_age: timedelta = timedelta(seconds=90)
    queue_pessimistic: bool = False
    cap_at_displayed_size: bool = False


class EngineCore:
    """State and lifecycle shared by the matchers (see the module doc)."""

    def __init__(self, calendar: MarketCalendar, config: EngineConfig = EngineConfig()) -> None:
        self._calendar = calendar
        self._config = config
        self._max_age = config.max_quote_age
        self._stale_reason = stale_reason(config.max_quote_age)
        self._strict = config.queue_pessimistic
        self._cap = config.cap_at_displayed_size
        self._gate = SessionGate(calendar)
        self._orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        self._seq_of: dict[str, int] = {}
        self._seq = 0
        self._books: dict[str, SymbolBook] = {}
        self._latest: dict[str, Quote] = {}
        self._expiries: list[tuple[datetime, int, Order]] = []
        self._now = datetime.min.replace(tzinfo=_UTC)
        # spreads touched by quotes of the current instant, evaluated once it is complete
        self._pending_spreads: dict[str, Order] = {}
        self._pending_at: datetime | None = None

    # ----------------------------------------------------------------- lifecycle

    def _book(self, symbol: str) -> SymbolBook:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = SymbolBook(symbol)
        return book

    def _finish(self, order: Order, status: OrderStatus) -> None:
        """Close an order that may still sit in a book (cancel, expiry, ioc/fok)."""
        order.status = status
        self._open.pop(order.id, None)
        if order.legs:
            for leg in order.legs:
                self._books[leg.symbol].multileg.pop(order.id, None)
            return
        book = self._books[order.symbol]
        if book.arriving.pop(order.id, None) is None:  # then it rests in a heap
            book.note_removed()

    def _expire_due(self, now: datetime, events: list[Event]) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, _, order = heapq.heappop(heap)
            if order.status in _TERMINAL:
                continue
            self._finish(order, OrderStatus.EXPIRED)
            events.append(
                OrderExpired(
                    order.id,
                    f"day order expired at the session close {fmt_ts(expires_at)}",
                    expires_at,
                )
            )

    def _cancel_now(self, order: Order, reason: str, ts: datetime, events: list[Event]) -> None:
        """Cancel an order the engine is evaluating (it is in no heap at this moment)."""
        order.status = OrderStatus.CANCELED
        self._open.pop(order.id, None)
        if order.legs:
            for leg in order.legs:
                self._books[leg.symbol].multileg.pop(order.id, None)
        events.append(OrderCanceled(order.id, reason, ts))

    def _defer(self, order: Order, reason: str, ts: datetime, events: list[Event]) -> None:
        if order.deferral_reason != reason:
            order.deferral_reason = reason
            events.append(FillDeferred(order.id, reason, ts))

    def _fill(
        self,
        order: Order,
        qty: Decimal,
        price: Decimal,
        quote: Quote,
        explanation: str,
        events: list[Event],
        leg_fills: tuple[LegFill, ...] = (),
    ) -> None:
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.fill_count += 1
        order.deferral_reason = None
        remaining = order.qty - order.filled_qty
        if remaining:
            order.status = OrderStatus.PARTIALLY_FILLED
        else:
            order.status = OrderStatus.FILLED
            self._open.pop(order.id, None)
        events.append(
            OrderFilled(
                order_id=order.id,
                account_id=order.account_id,
                execution_id=f"{order.id}:{order.fill_count}",
                symbol=order.symbol,
                side=order.side,
                qty=qty,
                price=price,
                quote=quote,
                ts=quote.ts,
                explanation=explanation,
                cumulative_qty=order.filled_qty,
                remaining_qty=remaining,
                leg_fills=leg_fills,
            )
        )
