"""Single-leg fill rules (BRIEF §4 rules 2-4) as pure functions of an order and one valid quote.

- Market: buy at the ask, sell at the bid; a sell with bid 0 has no price (it waits).
- Limit on its first valid quote ("arriving"): marketable when buy ask <= limit / sell
  bid >= limit, and then fills at that ask / bid (price improvement, never beyond the limit).
- Limit that has rested: fills at its limit on a quote that touches it (buy ask <= limit, sell
  bid >= limit); queue-pessimistic mode needs a strict cross (ask < limit, bid > limit).
- Stop: a buy triggers on ask >= stop, a sell on bid <= stop.
- Size: the whole remainder, or with the cap at most the displayed size on the order's side.

The resting-order heaps (`book`) apply the same comparisons inline on their keys, for speed.
"""

from __future__ import annotations

from decimal import Decimal

from services.orders.domain.model import Order, Quote, Side

__all__ = [
    "market_price",
    "marketable_on_arrival",
    "stop_triggered",
    "take_qty",
    "touches_resting",
]

_ZERO = Decimal(0)


def market_price(side: Side, quote: Quote) -> Decimal | None:
    """The price a market order takes: the ask for a buy, the bid for a sell (None if bid is 0)."""
    if side is Side.BUY:
        return quote.ask
    return quote.bid if quote.bid > _ZERO else None


def marketable_on_arrival(side: Side, limit: Decimal, quote: Quote) -> bool:
    if side is Side.BUY:
        return quote.ask <= limit
    return quote.bid >= limit and quote.bid > _ZERO


def touches_resting(side: Side, limit: Decimal, quote: Quote, strict: bool) -> bool:
    if side is Side.BUY:
        return quote.ask < limit if strict else quote.ask <= limit
    return quote.bid > limit if strict else quote.bid >= limit


def stop_triggered(side: Side, stop: Decimal, quote: Quote) -> bool:
    if side is Side.BUY:
        return quote.ask >= stop
    return quote.bid <= stop


def take_qty(order: Order, quote: Quote, cap_at_displayed_size: bool) -> tuple[Decimal, int | None]:
    """(how much this quote fills, the displayed size if it capped the fill, else None)."""
    remaining = order.qty - order.filled_qty
    if not cap_at_displayed_size:
        return remaining, None
    size = quote.ask_size if order.side is Side.BUY else quote.bid_size
    if size >= remaining:
        return remaining, None
    return Decimal(size), size
