"""Single-leg matching (BRIEF §4 rules 1-5): resting limits, arrivals, stops."""

from __future__ import annotations

import heapq
from datetime import datetime
from decimal import Decimal

from services.orders.domain.book import HeapEntry, SymbolBook, reached
from services.orders.domain.engine_core import _IMMEDIATE, _TERMINAL, EngineCore
from services.orders.domain.events import (
    Event,
    StopTriggered,
)
from services.orders.domain.explain import (
    arrival_text,
    describe_order,
    quote_text,
    rested_fill_text,
    size_note,
    trigger_text,
)
from services.orders.domain.fill_models import (
    market_price,
    marketable_on_arrival,
    stop_triggered,
    take_qty,
    touches_resting,
)
from services.orders.domain.model import (
    Order,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    TimeInForce,
)
from services.orders.domain.quotes import (
    REASON_NO_BID,
    REASON_NO_SIZE,
    REASON_NOT_AFTER_ACCEPTANCE,
)

__all__ = ["SingleLegMatching"]


class SingleLegMatching(EngineCore):
    """Market, limit, stop and stop-limit orders against one symbol's quotes."""

    # ----------------------------------------------------------------- single-leg matching

    def _fire_limits(
        self,
        book: SymbolBook,
        heap: list[HeapEntry],
        bound: Decimal,
        quote: Quote,
        events: list[Event],
    ) -> None:
        strict = self._strict
        survivors: list[HeapEntry] = []
        book.forget_told()  # fills change what orders have been told
        while heap:
            key = heap[0][0]
            if key > bound or (key == bound and strict):
                break
            entry = heapq.heappop(heap)
            order = entry[2]
            if order.status in _TERMINAL:
                book.dead -= 1
                continue
            if not self._fill_rested(order, quote, events):
                survivors.append(entry)
        for entry in survivors:
            heapq.heappush(heap, entry)

    def _fill_rested(self, order: Order, quote: Quote, events: list[Event]) -> bool:
        """Fill a rested limit the quote touches, at its limit. True when fully filled."""
        limit = order.limit_price
        assert limit is not None
        qty, size = take_qty(order, quote, self._cap)
        if qty <= 0:
            self._defer(order, REASON_NO_SIZE, quote.ts, events)
            return False
        text = rested_fill_text(order, quote) + size_note(order, qty, size)
        self._fill(order, qty, limit, quote, text, events)
        return order.status is OrderStatus.FILLED

    def _fire_stops(
        self,
        book: SymbolBook,
        heap: list[HeapEntry],
        bound: Decimal,
        quote: Quote,
        events: list[Event],
    ) -> None:
        book.forget_told()
        while heap and heap[0][0] <= bound:
            order = heapq.heappop(heap)[2]
            if order.status in _TERMINAL:
                book.dead -= 1
                continue
            if not self._triggered(book, order, quote, events):
                book.add_arriving(order)  # waits as a market order (no bid, or size)

    def _triggered(self, book: SymbolBook, order: Order, quote: Quote, events: list[Event]) -> bool:
        """The stop is reached on this quote: a stop fills as market, a stop-limit arrives."""
        order.triggered = True
        events.append(StopTriggered(order.id, quote, quote.ts))
        lead = trigger_text(order, quote)
        if order.order_type is OrderType.STOP:
            return self._take_market(order, quote, events, lead)
        return self._arrive_limit(book, order, quote, events, lead)

    def _process_arrivals(self, book: SymbolBook, quote: Quote, events: list[Event]) -> None:
        book.arriving_reason = None
        ts = quote.ts
        arriving = book.arriving
        for order in list(arriving.values()):
            if order.accepted_at >= ts:
                self._defer(order, REASON_NOT_AFTER_ACCEPTANCE, ts, events)
            elif self._arrive(book, order, quote, events):
                del arriving[order.id]

    def _arrive(self, book: SymbolBook, order: Order, quote: Quote, events: list[Event]) -> bool:
        """Evaluate an order on a usable quote after acceptance. True when it leaves `arriving`."""
        kind = order.order_type
        if kind is OrderType.MARKET:
            return self._take_market(
                order, quote, events, f"{order.side} market on {quote_text(quote)}"
            )
        if kind is OrderType.LIMIT:
            if order.rested:  # re-armed after a restart: it rests, it does not arrive
                return self._arrive_rested(book, order, quote, events)
            return self._arrive_limit(book, order, quote, events, "")
        if order.triggered:  # triggered earlier: still waiting (no bid / no size), or re-armed
            if kind is OrderType.STOP_LIMIT:
                if order.rested:
                    return self._arrive_rested(book, order, quote, events)
                lead = f"{describe_order(order)} (triggered earlier) on {quote_text(quote)}"
                return self._arrive_limit(book, order, quote, events, lead)
            lead = f"{describe_order(order)} (triggered earlier) on {quote_text(quote)}"
            return self._take_market(order, quote, events, lead)
        assert order.stop_price is not None
        if stop_triggered(order.side, order.stop_price, quote):
            return self._triggered(book, order, quote, events)
        if order.time_in_force in _IMMEDIATE:
            reason = f"{order.time_in_force}: stop not reached on its first usable quote"
            self._cancel_now(order, f"{reason} ({quote_text(quote)})", quote.ts, events)
            return True
        order.deferral_reason = None
        book.rest_stop(order, self._seq_of[order.id])
        return True

    def _arrive_rested(
        self, book: SymbolBook, order: Order, quote: Quote, events: list[Event]
    ) -> bool:
        """A rested limit seen from `arriving` (re-armed): fill at its limit on touch, or rest."""
        assert order.limit_price is not None
        touched = touches_resting(order.side, order.limit_price, quote, self._strict)
        if not (touched and self._fill_rested(order, quote, events)):
            order.deferral_reason = None
            book.rest_limit(order, self._seq_of[order.id])
        return True

    def _take_market(self, order: Order, quote: Quote, events: list[Event], lead: str) -> bool:
        """Fill as a market order on this quote. True when done (filled or canceled)."""
        price = market_price(order.side, quote)
        if price is None:
            if order.time_in_force in _IMMEDIATE:
                reason = f"{order.time_in_force}: no bid on its first usable quote"
                self._cancel_now(order, reason, quote.ts, events)
                return True
            self._defer(order, REASON_NO_BID, quote.ts, events)
            return False
        side = "ask" if order.side is Side.BUY else "bid"
        as_market = "as market " if order.order_type is OrderType.STOP else ""
        return self._take(
            order, quote, price, events, f"{lead}; filled {as_market}at {side} {price}"
        )

    def _arrive_limit(
        self, book: SymbolBook, order: Order, quote: Quote, events: list[Event], lead: str
    ) -> bool:
        """A limit on its first usable quote (or on its stop's trigger quote). True when done."""
        limit = order.limit_price
        assert limit is not None
        if marketable_on_arrival(order.side, limit, quote):
            price = quote.ask if order.side is Side.BUY else quote.bid
            return self._take(order, quote, price, events, arrival_text(order, quote, price, lead))
        if order.time_in_force in _IMMEDIATE:
            reason = f"{order.time_in_force}: not marketable on its first usable quote"
            self._cancel_now(order, f"{reason} ({quote_text(quote)})", quote.ts, events)
            return True
        order.rested = True
        order.deferral_reason = None
        book.rest_limit(order, self._seq_of[order.id])
        return True

    def _take(
        self, order: Order, quote: Quote, price: Decimal, events: list[Event], explanation: str
    ) -> bool:
        """Take liquidity at ``price`` under ioc/fok/size rules. True when the order is done."""
        ts = quote.ts
        tif = order.time_in_force
        qty, size = take_qty(order, quote, self._cap)
        if qty <= 0:
            if tif in _IMMEDIATE:
                reason = f"{tif}: no displayed size on its first usable quote"
                self._cancel_now(order, reason, ts, events)
                return True
            self._defer(order, REASON_NO_SIZE, ts, events)
            return False
        remaining = order.qty - order.filled_qty
        if tif is TimeInForce.FOK and qty < remaining:
            reason = f"fok: only {size} displayed for {remaining} on its quote"
            self._cancel_now(order, reason, ts, events)
            return True
        self._fill(order, qty, price, quote, explanation + size_note(order, qty, size), events)
        if order.status is OrderStatus.FILLED:
            return True
        if tif is TimeInForce.IOC:
            reason = "ioc: remainder canceled after its first usable quote"
            self._cancel_now(order, reason, ts, events)
            return True
        return False

    def _defer_arrivals(
        self, book: SymbolBook, reason: str, ts: datetime, events: list[Event]
    ) -> None:
        if book.arriving_reason == reason:
            return
        for order in book.arriving.values():
            self._defer(order, reason, ts, events)
        book.arriving_reason = reason

    def _defer_resting(
        self, book: SymbolBook, quote: Quote, reason: str, events: list[Event]
    ) -> None:
        """A well-formed but unusable quote (closed / stale): tell the orders it would reach.

        Each heap remembers the widest bound it has already broadcast a reason to, so quotes
        wandering inside that region (after hours, say) cost a comparison, not a walk.
        """
        bounds = (-quote.ask, quote.bid, quote.ask, -quote.bid)
        strict = (self._strict, self._strict, False, False)
        for i, heap in enumerate(book.heaps()):
            bound = bounds[i]
            if not heap or heap[0][0] > bound:
                continue
            told = book.told[i]
            if told is not None and told[0] == reason and bound <= told[1]:
                continue
            for order in reached(heap, bound, strict[i]):
                self._defer(order, reason, quote.ts, events)
            book.told[i] = (reason, bound)
