"""Feeds the matching engine: quotes and clock ticks from NATS, processed in arrival order."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from raxx.mbt.v1 import events_pb2
from services.conventions.quote import Quote
from services.orders.app import OrdersApp
from services.orders.convert import quote_from_pb
from services.platform.bus import CLOCK_SUBJECT, FEED_STATUS_SUBJECT, QUOTES_SUBJECT, Bus
from services.platform.wire import ts_from_wire


def quote_from_event(data: bytes) -> Quote:
    return quote_from_pb(events_pb2.QuoteEvent.FromString(data).quote)


async def run_market_feed(app: OrdersApp, bus: Bus) -> None:
    """Re-arm the book, then apply quotes and clock ticks one at a time, forever."""
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def enqueue(msg: Msg) -> None:
        queue.put_nowait(msg)

    await bus.nc.subscribe(f"{QUOTES_SUBJECT}.>", cb=enqueue, pending_msgs_limit=1_000_000)
    await bus.nc.subscribe(CLOCK_SUBJECT, cb=enqueue)

    async def on_status(msg: Msg) -> None:
        ev = events_pb2.FeedStatusEvent.FromString(msg.data)
        app.feed_stale_reason = ev.reason or "feed stale" if ev.stale else ""

    await bus.nc.subscribe(FEED_STATUS_SUBJECT, cb=on_status)
    await app.rearm()
    while True:
        msg = await queue.get()
        if msg.subject == CLOCK_SUBJECT:
            ev = events_pb2.ClockEvent.FromString(msg.data)
            await app.on_clock(ts_from_wire(ev.timestamp))
        else:
            await app.on_quote(quote_from_event(msg.data))
