"""Readable explanations: which rule fired, on which quote, at what price.

Example: "buy limit 185.10 rested; ask fell to 185.08 at 2013-10-07 10:03:07.412 ET; filled at
limit 185.10". Quote times are market time in New York, as traders read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from services.orders.domain.events import LegFill
from services.orders.domain.model import Order, OrderType, Quote, Side

_NEW_YORK = ZoneInfo("America/New_York")

__all__ = [
    "arrival_text",
    "describe_order",
    "fmt_ts",
    "quote_text",
    "rested_fill_text",
    "size_note",
    "spread_fill_text",
    "trigger_text",
]


def fmt_ts(ts: datetime) -> str:
    """A quote's time in New York with milliseconds and the zone: 2013-10-07 10:03:07.412 ET."""
    t = ts.astimezone(_NEW_YORK)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} ET"


def describe_order(order: Order) -> str:
    """E.g. "buy limit 185.10", "sell stop 184.00", "buy stop_limit 184.00/184.50"."""
    kind = order.order_type
    if kind is OrderType.MARKET:
        return f"{order.side} market"
    if kind is OrderType.LIMIT:
        return f"{order.side} limit {order.limit_price}"
    if kind is OrderType.STOP:
        return f"{order.side} stop {order.stop_price}"
    return f"{order.side} stop_limit {order.stop_price}/{order.limit_price}"


def quote_text(quote: Quote) -> str:
    return f"bid {quote.bid} / ask {quote.ask} at {fmt_ts(quote.ts)}"


def size_note(order: Order, qty: Decimal, size: int | None) -> str:
    """ "" for a fill of the whole remainder; else how much of it, and the cap that limited it."""
    remaining = order.qty - order.filled_qty
    if qty == remaining:
        return ""
    side = "ask" if order.side is Side.BUY else "bid"
    cap = f" (capped at displayed {side} size {size})" if size is not None else ""
    return f"; {qty} of the remaining {remaining}{cap}"


def trigger_text(order: Order, quote: Quote) -> str:
    if order.side is Side.BUY:
        how = f"ask {quote.ask} >= stop {order.stop_price}"
    else:
        how = f"bid {quote.bid} <= stop {order.stop_price}"
    return f"{describe_order(order)} triggered: {how} at {fmt_ts(quote.ts)}"


def arrival_text(order: Order, quote: Quote, price: Decimal, lead: str) -> str:
    """A limit taking the quote on arrival (``lead``: the stop trigger that made it arrive)."""
    limit = order.limit_price
    assert limit is not None
    if order.side is Side.BUY:
        how, side = f"ask {price} <= limit {limit}", "ask"
    else:
        how, side = f"bid {price} >= limit {limit}", "bid"
    head = f"{lead}; as an arriving limit" if lead else f"{describe_order(order)} on arrival"
    improvement = f" (price improvement {abs(limit - price)})" if price != limit else ""
    return f"{head}: {how} at {fmt_ts(quote.ts)}; filled at {side} {price}{improvement}"


def rested_fill_text(order: Order, quote: Quote) -> str:
    limit = order.limit_price
    if order.side is Side.BUY:
        moved = f"ask {'fell to' if quote.ask < limit else 'touched'} {quote.ask}"  # type: ignore[operator]
    else:
        moved = f"bid {'rose to' if quote.bid > limit else 'touched'} {quote.bid}"  # type: ignore[operator]
    return f"{describe_order(order)} rested; {moved} at {fmt_ts(quote.ts)}; filled at limit {limit}"


def spread_fill_text(
    order: Order,
    bid: Decimal,
    mid: Decimal,
    ask: Decimal,
    basis: str,
    price: Decimal,
    note: str,
    leg_fills: Sequence[LegFill],
) -> str:
    limit = "market" if order.limit_price is None else f"net limit {order.limit_price}"
    legs = ", ".join(
        f"{lf.side} {lf.ratio}x {lf.symbol} @ {lf.price} ({quote_text(lf.quote)})"
        for lf in leg_fills
    )
    when = "rested" if order.rested else "on arrival"
    return (
        f"{order.side} {len(order.legs)}-leg {order.symbol} {limit} ({order.fill_preference}, "
        f"{when}): spread bid {bid} / mid {mid} / ask {ask}; filled at {basis} {price}{note}; "
        f"legs: {legs}"
    )
