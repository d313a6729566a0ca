"""The live feed: paces scheduled quotes on the market clock and publishes them.

The market clock is the recording's clock (`domain.replay.SimClock`, paced by
`seconds_until_due`): quotes go out at `speed` × real time and a closed stretch (overnight,
weekend, the jump between loops) is skipped at once, so the demo market is open while it runs.
Live providers feed quotes through `ingest` on a real-time clock. The last-value cache answers
"latest NBBO of X".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from services.conventions.calendar import MarketCalendar
from services.conventions.quote import Quote
from services.marketdata.domain.hygiene import QuoteFilter
from services.marketdata.domain.replay import ScheduledQuote, SimClock, seconds_until_due
from services.marketdata.quote_book import QuoteBook
from services.platform.metrics import FEED_LAG

log = logging.getLogger("mbt.marketdata.feed")


class MarketClock:
    """The service's clock: a `SimClock` read against this process's monotonic clock."""

    def __init__(self, start: datetime, speed: float) -> None:
        self.sim = SimClock(start, speed, start_wall=time.monotonic())

    @property
    def speed(self) -> float:
        return self.sim.speed

    def now(self) -> datetime:
        return self.sim.now(time.monotonic())

    def jump_to(self, sim: datetime) -> None:
        self.sim.jump_to(sim, time.monotonic())


class LastValueCache:
    def __init__(self) -> None:
        self.quotes: dict[str, Quote] = {}

    def put(self, q: Quote) -> None:
        self.quotes[q.symbol] = q

    def get(self, symbol: str) -> Quote | None:
        return self.quotes.get(symbol)


Publish = Callable[[Quote], Awaitable[None]]


class ReplayFeed:
    def __init__(
        self,
        schedule: Iterable[ScheduledQuote],
        start: datetime,
        speed: float,
        calendar: MarketCalendar,
        publish: Publish,
    ) -> None:
        self.schedule = schedule
        self.clock = MarketClock(start, speed)
        self.calendar = calendar
        self.publish = publish
        self.cache = LastValueCache()
        self.book = QuoteBook()
        self.hygiene = QuoteFilter()
        self.published = 0
        self.subscribers: set[asyncio.Queue[Quote]] = set()

    async def run(self) -> None:
        last_ts = None
        since_yield = 0
        for sq in self.schedule:
            while (wait := seconds_until_due(self.clock.sim, sq, time.monotonic())) > 0:
                await asyncio.sleep(wait)
                since_yield = 0
            # at full speed, let the service answer calls - but only between instants, so the
            # quotes of one timestamp go out together (no clock tick between them: subscribers
            # price spreads on whole instants)
            if since_yield >= 500 and sq.quote.ts != last_ts:
                await asyncio.sleep(0)
                since_yield = 0
            await self.ingest(sq.quote)
            last_ts = sq.quote.ts
            since_yield += 1
        log.info("replay finished after %d quotes", self.published)

    async def ingest(self, q: Quote) -> None:
        """One quote from any provider: hygiene, caches, the bus and the stream subscribers."""
        if self.hygiene.check(q) is not None:
            return
        self.cache.put(q)
        self.book.add(q)
        FEED_LAG.set(max((self.clock.now() - q.ts).total_seconds(), 0.0))
        await self.publish(q)
        for sub in list(self.subscribers):
            if sub.qsize() < 10_000:
                sub.put_nowait(q)
        self.published += 1
