"""The matching engine: order lifecycle, time in force and events over the per-symbol books.

Pure and deterministic (BRIEF §4): its only inputs are orders, quotes and the simulated time
passed to `on_time`; it reads no clock, does no I/O and draws no random numbers. The same engine
serves live paper trading (the service feeds it quotes and its clock) and `replay`.

Per quote, in this order: day orders whose close has passed expire; resting limits the quote
touches fill at their limits (price priority, then time); orders awaiting their first usable
quote ("arriving") are evaluated (market fills, limits fill with price improvement or rest,
stops trigger or rest); resting stops the quote reaches trigger and fill (or rest as limits);
multi-leg orders with a leg on the quote's symbol are re-priced on the latest snapshot.

A quote that reaches no resting order costs a dict lookup, the validity checks and one
comparison per non-empty heap (see `book`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.conventions.calendar import MarketCalendar
from services.orders.domain.book import HeapEntry, SymbolBook, reached
from services.orders.domain.errors import DuplicateOrderError, InvalidOrderError
from services.orders.domain.events import (
    Event,
    FillDeferred,
    LegFill,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    StopTriggered,
)
from services.orders.domain.explain import (
    arrival_text,
    describe_order,
    fmt_ts,
    quote_text,
    rested_fill_text,
    size_note,
    spread_fill_text,
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
    TERMINAL_STATUSES,
    Order,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    TimeInForce,
)
from services.orders.domain.multileg import (
    allocate_leg_prices,
    spread_capacity,
    spread_price,
    spread_quote,
)
from services.orders.domain.quotes import (
    REASON_CLOSED,
    REASON_CROSSED,
    REASON_NEGATIVE_BID,
    REASON_NO_ASK,
    REASON_NO_BID,
    REASON_NO_SIZE,
    REASON_NOT_AFTER_ACCEPTANCE,
    SessionGate,
    quote_defect,
    stale_reason,
)
from services.orders.domain.validation import validate_order

__all__ = ["EngineConfig", "MatchingEngine", "replay"]

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


class MatchingEngine:
    """Fills accepted orders against quotes per BRIEF §4 rules 1-6 (see the module doc)."""

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

    # ----------------------------------------------------------------- public API

    @property
    def config(self) -> EngineConfig:
        return self._config

    def accept(self, order: Order) -> list[Event]:
        """Add an accepted order. It never fills here: only on a quote stamped after acceptance.

        The engine keeps a copy (``accepted_at`` in UTC; status ACCEPTED, or PARTIALLY_FILLED for
        an order re-armed with fills). A re-armed order keeps its fill state; with ``rested``
        set, a limit is treated as resting from its first quote (fills at its limit on touch).
        Returns a `FillDeferred` when accepted outside the regular session (or an `OrderExpired`
        for a re-armed day order whose close has passed), else nothing.
        Raises `InvalidOrderError` or `DuplicateOrderError`.
        """
        validate_order(order)
        if order.id in self._orders:
            raise DuplicateOrderError(f"order {order.id!r} is already in the engine")
        accepted_at = order.accepted_at.astimezone(_UTC)
        expires_at: datetime | None = None
        if order.time_in_force is TimeInForce.DAY:
            try:
                expires_at = self._calendar.day_order_expiry(accepted_at)
            except ValueError as exc:
                raise InvalidOrderError("accepted_at", str(exc)) from exc
        status = OrderStatus.PARTIALLY_FILLED if order.filled_qty else OrderStatus.ACCEPTED
        order = replace(order, status=status, accepted_at=accepted_at, expires_at=expires_at)
        self._seq += 1
        seq = self._seq
        self._seq_of[order.id] = seq
        self._orders[order.id] = order
        self._open[order.id] = order
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, seq, order))
        if order.legs:
            for leg in order.legs:
                self._book(leg.symbol).multileg[order.id] = order
        else:
            self._book(order.symbol).add_arriving(order)
        events: list[Event] = []
        if expires_at is not None and expires_at <= self._now:
            self._expire_due(self._now, events)  # re-armed after its close: it expires now
        elif not self._gate.is_open(accepted_at):
            order.deferral_reason = REASON_CLOSED
            events.append(FillDeferred(order.id, REASON_CLOSED, accepted_at))
        return events

    def on_quote(self, quote: Quote) -> list[Event]:
        """Advance to the quote's time and evaluate the orders this quote can affect.

        A quote older than the symbol's latest is superseded and ignored.
        """
        events: list[Event] = []
        ts = quote.ts
        now = self._now
        if ts > now:
            self._now = now = ts
            if self._expiries and self._expiries[0][0] <= ts:
                self._expire_due(ts, events)
            stale = False
        else:
            stale = now - ts > self._max_age
        symbol = quote.symbol
        latest = self._latest
        prev = latest.get(symbol)
        if prev is not None and ts < prev.ts:
            return events
        latest[symbol] = quote
        book = self._books.get(symbol)
        if book is None:
            return events

        bid = quote.bid
        ask = quote.ask
        well_formed = False
        reason: str | None
        if ask <= _ZERO:
            reason = REASON_NO_ASK
        elif bid < _ZERO:
            reason = REASON_NEGATIVE_BID
        elif bid > ask:
            reason = REASON_CROSSED
        else:
            well_formed = True
            gate = self._gate
            if not (gate.lo <= ts < gate.hi):
                gate.is_open(ts)
            if not gate.open:
                reason = REASON_CLOSED
            elif stale:
                reason = self._stale_reason
            else:
                reason = None

        if reason is None:
            strict = self._strict
            heap = book.buy_limits
            if heap:
                bound = -ask
                key = heap[0][0]
                if key < bound or (key == bound and not strict):
                    self._fire_limits(book, heap, bound, quote, events)
            heap = book.sell_limits
            if heap:
                key = heap[0][0]
                if key < bid or (key == bid and not strict):
                    self._fire_limits(book, heap, bid, quote, events)
            if book.arriving:
                self._process_arrivals(book, quote, events)
            heap = book.buy_stops
            if heap and heap[0][0] <= ask:
                self._fire_stops(book, heap, ask, quote, events)
            heap = book.sell_stops
            if heap and heap[0][0] <= -bid:
                self._fire_stops(book, heap, -bid, quote, events)
        else:
            if book.arriving:
                self._defer_arrivals(book, reason, ts, events)
            if well_formed:
                self._defer_resting(book, quote, reason, events)
        if book.multileg:
            self._match_spreads(book, quote, events)
        return events

    def on_time(self, now: datetime) -> list[Event]:
        """Advance the simulated clock: day orders expire at their session's close.

        An expiry is stamped with the close itself, whenever `on_time` (or a later quote)
        reveals it, so the events do not depend on how often the clock ticks.
        """
        if now.tzinfo is None:
            raise ValueError("on_time needs a timezone-aware datetime")
        now = now.astimezone(_UTC)
        if now > self._now:
            self._now = now
        events: list[Event] = []
        if self._expiries and self._expiries[0][0] <= self._now:
            self._expire_due(self._now, events)
        return events

    def cancel(self, order_id: str, now: datetime) -> list[Event]:
        """Cancel an open order. Idempotent: an unknown or finished order gives []."""
        order = self._open.get(order_id)
        if order is None:
            return []
        self._finish(order, OrderStatus.CANCELED)
        return [OrderCanceled(order_id, "canceled by request", now)]

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def open_orders(self) -> list[Order]:
        """Open orders in acceptance order."""
        return list(self._open.values())

    def latest_quote(self, symbol: str) -> Quote | None:
        return self._latest.get(symbol)

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

    # ----------------------------------------------------------------- multi-leg matching

    def _match_spreads(self, book: SymbolBook, quote: Quote, events: list[Event]) -> None:
        for order in list(book.multileg.values()):
            if order.status not in _TERMINAL:
                self._match_spread(order, quote, events)

    def _match_spread(self, order: Order, quote: Quote, events: list[Event]) -> None:
        now = self._now
        ts = quote.ts
        if not self._gate.is_open(now):
            self._defer(order, REASON_CLOSED, ts, events)
            return
        quotes: list[Quote] = []
        for leg in order.legs:
            leg_quote = self._latest.get(leg.symbol)
            defect = quote_defect(leg_quote, order.accepted_at, now, self._max_age, self._gate)
            if defect is not None:
                self._defer(order, f"leg {leg.symbol}: {defect}", ts, events)
                return
            assert leg_quote is not None
            quotes.append(leg_quote)
        sq = spread_quote(order.legs, quotes)
        decision = spread_price(
            order.side, order.fill_preference, order.limit_price, sq, order.rested
        )
        tif = order.time_in_force
        if decision is None:
            if tif in _IMMEDIATE:
                self._cancel_now(
                    order, f"{tif}: not marketable on its first usable snapshot", ts, events
                )
            else:
                order.rested = True
            return
        remaining = order.qty - order.filled_qty
        qty = remaining
        note = ""
        if self._cap:
            capacity = spread_capacity(order.legs, quotes, order.side)
            if capacity < remaining:
                qty = Decimal(capacity)
                note = f"; {qty} of the remaining {remaining} (capped at displayed leg sizes)"
        if qty <= 0:
            if tif in _IMMEDIATE:
                self._cancel_now(
                    order, f"{tif}: no displayed size on its first usable snapshot", ts, events
                )
            else:
                self._defer(order, REASON_NO_SIZE, ts, events)
            return
        if tif is TimeInForce.FOK and qty < remaining:
            self._cancel_now(
                order, f"fok: only {qty} spreads displayed for {remaining}", ts, events
            )
            return
        prices = allocate_leg_prices(order.legs, quotes, decision.price)
        leg_fills = tuple(
            LegFill(
                symbol=leg.symbol,
                side=leg.side if order.side is Side.BUY else leg.side.opposite,
                ratio=leg.ratio,
                qty=qty * leg.ratio,
                price=price,
                quote=q,
            )
            for leg, price, q in zip(order.legs, prices, quotes, strict=True)
        )
        explanation = spread_fill_text(
            order, sq.bid, sq.mid, sq.ask, decision.basis, decision.price, note, leg_fills
        )
        self._fill(order, qty, decision.price, quote, explanation, events, leg_fills)
        if order.status is OrderStatus.FILLED:
            for leg in order.legs:
                self._books[leg.symbol].multileg.pop(order.id, None)
        elif tif is TimeInForce.IOC:
            self._cancel_now(
                order, "ioc: remainder canceled after its first usable snapshot", ts, events
            )


def replay(
    orders: Iterable[Order],
    quotes: Iterable[Quote],
    calendar: MarketCalendar,
    config: EngineConfig = EngineConfig(),
) -> list[Event]:
    """Run a fresh engine over orders and time-ordered quotes; same inputs, same events.

    Each order is accepted at its ``accepted_at`` (before any quote with the same timestamp, which
    therefore cannot fill it); the clock then runs to the last timestamp seen. The inputs are not
    modified.
    """
    engine = MatchingEngine(calendar, config)
    pending = sorted(orders, key=lambda o: o.accepted_at)
    events: list[Event] = []
    i = 0
    last: datetime | None = None
    for quote in quotes:
        while i < len(pending) and pending[i].accepted_at <= quote.ts:
            events += engine.on_time(pending[i].accepted_at)
            events += engine.accept(pending[i])
            i += 1
        events += engine.on_quote(quote)
        last = quote.ts
    for order in pending[i:]:
        events += engine.on_time(order.accepted_at)
        events += engine.accept(order)
        last = order.accepted_at
    if last is not None:
        events += engine.on_time(last)
    return events
