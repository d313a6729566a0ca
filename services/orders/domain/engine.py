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
from dataclasses import replace
from datetime import datetime

from services.conventions.calendar import MarketCalendar
from services.orders.domain.engine_core import _UTC, _ZERO, EngineConfig
from services.orders.domain.errors import DuplicateOrderError, InvalidOrderError
from services.orders.domain.events import (
    Event,
    FillDeferred,
    OrderCanceled,
)
from services.orders.domain.model import (
    Order,
    OrderStatus,
    Quote,
    TimeInForce,
)
from services.orders.domain.quotes import (
    REASON_CLOSED,
    REASON_CROSSED,
    REASON_NEGATIVE_BID,
    REASON_NO_ASK,
)
from services.orders.domain.single_leg import SingleLegMatching
from services.orders.domain.spread_matching import SpreadMatching
from services.orders.domain.validation import validate_order

__all__ = ["EngineConfig", "MatchingEngine", "replay"]


class MatchingEngine(SingleLegMatching, SpreadMatching):
    """Fills accepted orders against quotes per BRIEF §4 rules 1-6 (see the module doc)."""

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
        self._settle_before(ts, events)  # the instant before this quote is complete
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
            self._mark_spreads(book, quote)
        return events

    def on_time(self, now: datetime) -> list[Event]:
        """Advance the simulated clock: day orders expire at their session's close.

        An expiry is stamped with the close itself, whenever `on_time` (or a later quote)
        reveals it, so the events do not depend on how often the clock ticks.
        """
        if now.tzinfo is None:
            raise ValueError("on_time needs a timezone-aware datetime")
        now = now.astimezone(_UTC)
        events: list[Event] = []
        self._settle_before(now, events)
        if now > self._now:
            self._now = now
        if self._expiries and self._expiries[0][0] <= self._now:
            self._expire_due(self._now, events)
        return events

    def settle(self) -> list[Event]:
        """Evaluate the spreads quoted at the latest instant now, without waiting for time to
        move on (the end of a replay, or of a batch of quotes known to be complete)."""
        events: list[Event] = []
        if self._pending_at is not None:
            self._settle_spreads(events)
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


def replay(
    orders: Iterable[Order],
    quotes: Iterable[Quote],
    calendar: MarketCalendar,
    config: EngineConfig = EngineConfig(),  # noqa: B008 - frozen, immutable
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
    events += engine.settle()
    if last is not None:
        events += engine.on_time(last)
    return events
