"""`python -m services.marketdata`: replays recorded quotes on the simulated clock."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

from raxx.mbt.v1 import events_pb2, marketdata_service_pb2, marketdata_service_pb2_grpc
from services.conventions.calendar import MarketCalendar
from services.conventions.quote import Quote
from services.marketdata.domain.recorded import RecordedArchive
from services.marketdata.domain.replay import ReplayPlan, demo_start, iter_schedule
from services.marketdata.feed import Publish, ReplayFeed
from services.marketdata.servicer import MarketDataServicer, quote_to_pb
from services.marketdata.watchdog import FeedWatchdog
from services.platform.bus import (
    CLOCK_SUBJECT,
    FEED_STATUS_SUBJECT,
    QUOTES_LVC_STREAM,
    QUOTES_SUBJECT,
)
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
    await rt.bus.ensure_stream(QUOTES_LVC_STREAM)

    async def publish(q: Quote) -> None:
        await nc.publish(
            f"{QUOTES_SUBJECT}.{q.symbol}",
            events_pb2.QuoteEvent(quote=quote_to_pb(q)).SerializeToString(),
        )

    provider = os.environ.get("MBT_MARKETDATA_PROVIDER", "replay")
    if provider == "alpaca":
        return await build_alpaca(rt, calendar, publish)
    if provider != "replay":
        raise SystemExit(f"MBT_MARKETDATA_PROVIDER must be replay or alpaca, not {provider!r}")
    feed = ReplayFeed(iter_schedule(plan, start, loop=True), start, speed, calendar, publish)
    open_at = demo_start(days[0], after_open=timedelta(0))
    history = sorted(
        (q for sym in symbols for q in archive.quotes_between(sym, open_at, start)),
        key=lambda q: (q.ts, q.symbol),
    )
    for q in history:
        feed.book.add(q)
        feed.cache.put(q)
    return host_for(rt, feed, calendar, symbols, [feed.run])


async def build_alpaca(rt: Runtime, calendar: MarketCalendar, publish: Publish) -> ServiceHost:
    """Live quotes from Alpaca through alpaca-py (one shared key), on the real clock."""
    from services.marketdata.providers import AlpacaQuoteProvider, AlpacaSettings

    symbols = [s.strip().upper() for s in os.environ.get("MBT_SYMBOLS", "SPY,IBM").split(",") if s]
    provider = AlpacaQuoteProvider(AlpacaSettings.from_env(), symbols)
    now = datetime.now(UTC)
    feed = ReplayFeed((), now, 1.0, calendar, publish)
    for q in (await provider.latest_quotes(symbols)).values():
        feed.cache.put(q)
        feed.book.add(q)

    async def stream() -> None:
        await provider.run(feed.ingest)

    return host_for(rt, feed, calendar, symbols, [stream], provider="alpaca")


def host_for(
    rt: Runtime,
    feed: ReplayFeed,
    calendar: MarketCalendar,
    symbols: list[str],
    sources: list[Callable[[], Awaitable[None]]],
    provider: str = "replay",
) -> ServiceHost:
    s = rt.settings
    nc = rt.bus.nc
    servicer = MarketDataServicer(feed, symbols)
    servicer.provider = provider

    async def tick_clock() -> None:
        while True:
            now = feed.clock.now()
            ev = events_pb2.ClockEvent(timestamp=ts_to_wire(now), is_open=calendar.is_open(now))
            await nc.publish(CLOCK_SUBJECT, ev.SerializeToString())
            await asyncio.sleep(0.25)

    watchdog = FeedWatchdog(stale_after_s=float(os.environ.get("MBT_STALE_AFTER_S", "60")))
    servicer.watchdog = watchdog
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
        public_methods=frozenset({"GetClock", "ListSymbols", "ListCalendar", "GetFeedStatus"}),
        background=[*sources, tick_clock, watch_feed],
        extra_health=[FEED_HEALTH],
    )
    host_ref.append(host)
    return host


if __name__ == "__main__":
    main("marketdata", None, build)
