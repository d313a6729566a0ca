"""Multi-leg matching (BRIEF §4 rule 6): a spread fills on one snapshot of its legs."""

from __future__ import annotations

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
