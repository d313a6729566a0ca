"""Multi-leg matching (BRIEF §4 rule 6): a spread fills on one snapshot of its legs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from services.orders.domain.book import SymbolBook
from services.orders.domain.engine_core import _IMMEDIATE, _TERMINAL, EngineCore
from services.orders.domain.events import (
    Event,
    LegFill,
)
from services.orders.domain.explain import (
    spread_fill_text,
)
from services.orders.domain.model import (
    Order,
    OrderStatus,
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
    REASON_NO_SIZE,
    quote_defect,
)

__all__ = ["SpreadMatching"]


class SpreadMatching(EngineCore):
    """Spreads of 2-4 legs priced on the latest quote of every leg."""

    # ----------------------------------------------------------------- multi-leg matching

    def _mark_spreads(self, book: SymbolBook, quote: Quote) -> None:
        """A leg quoted: its spreads are evaluated once every quote of this instant is in
        (BRIEF §4 rule 6: a snapshot is the latest quote of every leg as of one instant)."""
        self._pending_spreads.update(book.multileg)
        if self._pending_at is None or quote.ts > self._pending_at:
            self._pending_at = quote.ts

    def _settle_spreads(self, events: list[Event]) -> None:
        """Evaluate the spreads of the completed instant, once each, in acceptance order (so
        nothing depends on which leg's quote came first or on the legs' symbols)."""
        pending, self._pending_spreads, self._pending_at = self._pending_spreads, {}, None
        for order in sorted(pending.values(), key=lambda o: self._seq_of[o.id]):
            if order.status in _TERMINAL or order.id not in self._open:
                continue
            quoted = [self._latest[leg.symbol] for leg in order.legs if leg.symbol in self._latest]
            if quoted:  # the instant's own quote of a leg: its time stamps the snapshot
                self._match_spread(order, max(quoted, key=lambda q: (q.ts, q.symbol)), events)

    def _settle_before(self, ts: datetime, events: list[Event]) -> None:
        """Time moves past the pending instant: it is complete."""
        if self._pending_at is not None and ts > self._pending_at:
            self._settle_spreads(events)

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
