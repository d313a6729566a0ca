"""`python -m services.marketdata`: replays recorded quotes on the simulated clock."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import date, timedelta

from raxx.mbt.v1 import events_pb2, marketdata_service_pb2, marketdata_service_pb2_grpc
from services.marketdata.domain.calendar import MarketCalendar
from services.marketdata.domain.recorded import RecordedArchive
from services.marketdata.domain.replay import ReplayPlan, demo_start, iter_replay
from services.marketdata.feed import ReplayFeed
from services.marketdata.servicer import MarketDataServicer, quote_to_pb
from services.marketdata.watchdog import FeedWatchdog
from services.orders.domain.model import Quote
from services.platform.bus import CLOCK_SUBJECT, FEED_STATUS_SUBJECT, QUOTES_SUBJECT
from services.platform.grpc_server import ServiceHost
from services.platform.runtime import Runtime, main
from services.platform.wire import ts_to_wire

FEED_HEALTH = "mbt.marketdata.feed"
SERVICE = marketdata_service_pb2.DESCRIPTOR.services_by_name["MarketDataService"].full_name
DEFAULT_DAYS = "2013-10-07,2013-10-08"


async def build(rt: Runtime) -> ServiceHost:
    s = rt.settings
    days = [date.fromisoformat(d.strip()) for d in (s.replay_days or DEFAULT_DAYS).split(",")]
    archive = RecordedArchive()
    calendar = MarketCalendar()
    plan = ReplayPlan(archive, days, None, session_only=True)
    # start half an hour into the first recorded session, with that half hour already in the
    # quote book, so even the 15-minute-delayed Free view has quotes from the first second
    start = demo_start(days[0], after_open=timedelta(minutes=30))
    symbols = sorted({sym for d in days for sym in archive.symbols(d)})
    speed = s.replay_speed if s.replay_speed > 0 else float("inf")
    nc = rt.bus.nc

    async def publish(q: Quote) -> None:
        await nc.publish(
            f"{QUOTES_SUBJECT}.{q.symbol}",
            events_pb2.QuoteEvent(quote=quote_to_pb(q)).SerializeToString(),
        )

    feed = ReplayFeed(iter_replay(plan, start, True), start, speed, calendar, publish)
    open_at = demo_start(days[0], after_open=timedelta(0))
    history = sorted(
        (q for sym in symbols for q in archive.quotes_between(sym, open_at, start)),
        key=lambda q: (q.ts, q.symbol),
    )
    for q in history:
        feed.book.add(q)
        feed.cache.put(q)
    servicer = MarketDataServicer(feed, symbols)

    async def tick_clock() -> None:
        while True:
            now = feed.clock.now()
            ev = events_pb2.ClockEvent(timestamp=ts_to_wire(now), is_open=calendar.is_open(now))
            await nc.publish(CLOCK_SUBJECT, ev.SerializeToString())
            await asyncio.sleep(0.25)

    watchdog = FeedWatchdog(stale_after_s=float(os.environ.get("MBT_STALE_AFTER_S", "60")))
    host_ref: list[ServiceHost] = []

    async def watch_feed() -> None:
        """Say so (health + event) when quotes stop while the market is open, and return."""
        seen = -1
        while True:
            await asyncio.sleep(1.0)
            wall = time.monotonic()
            changed = False
            if feed.published != seen:
                seen = feed.published
                changed = watchdog.on_quote(wall)
            elif watchdog.check(wall, calendar.is_open(feed.clock.now())):
                changed = True
            if changed:
                ev = events_pb2.FeedStatusEvent(
                    stale=watchdog.stale, reason=watchdog.reason, since=ts_to_wire(feed.clock.now())
                )
                await nc.publish(FEED_STATUS_SUBJECT, ev.SerializeToString())
                if host_ref:
                    await host_ref[0].set_serving(FEED_HEALTH, not watchdog.stale)

    host = ServiceHost(
        name="marketdata",
        port=s.port_of("marketdata"),
        secret=s.jwt_secret,
        registrars=[
            lambda srv: marketdata_service_pb2_grpc.add_MarketDataServiceServicer_to_server(
                servicer, srv
            )
        ],
        service_names=[SERVICE],
        public_methods=frozenset({"GetClock", "ListSymbols"}),
        background=[feed.run, tick_clock, watch_feed],
        extra_health=[FEED_HEALTH],
    )
    host_ref.append(host)
    return host


if __name__ == "__main__":
    main("marketdata", None, build)
