"""The live replay feed: paces recorded quotes on a simulated clock and publishes them.

The market clock is the recording's clock. Quotes go out at `speed` × real time; a closed
stretch (overnight, weekend, the jump between loops) is skipped at once, so the demo market is
always open while it runs. The last-value cache answers "latest NBBO of X".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta

from services.marketdata.domain.calendar import MarketCalendar
from services.marketdata.domain.hygiene import QuoteFilter
from services.marketdata.quote_book import QuoteBook
from services.orders.domain.model import Quote

log = logging.getLogger("mbt.marketdata.feed")

# A gap in the recording longer than this, across a closed market, is skipped, not waited.
SKIP_GAP = timedelta(minutes=5)


class SimulatedClock:
    """Simulated time anchored to the monotonic wall clock at a speed, with jumps."""

    def __init__(self, start: datetime, speed: float) -> None:
        self.speed = speed
        self._sim = start
        self._wall = time.monotonic()

    def now(self) -> datetime:
        if self.speed == float("inf"):
            return self._sim
        return self._sim + timedelta(seconds=(time.monotonic() - self._wall) * self.speed)

    def jump_to(self, sim: datetime) -> None:
        self._sim, self._wall = sim, time.monotonic()

    def wall_delay_until(self, sim: datetime) -> float:
        if self.speed == float("inf"):
            return 0.0
        return (sim - self._sim).total_seconds() / self.speed - (time.monotonic() - self._wall)


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
        quotes: Iterator[Quote],
        start: datetime,
        speed: float,
        calendar: MarketCalendar,
        publish: Publish,
    ) -> None:
        self.quotes = quotes
        self.clock = SimulatedClock(start, speed)
        self.calendar = calendar
        self.publish = publish
        self.cache = LastValueCache()
        self.book = QuoteBook()
        self.hygiene = QuoteFilter()
        self.published = 0
        self.subscribers: set[asyncio.Queue[Quote]] = set()

    async def run(self) -> None:
        for q in self.quotes:
            if self.clock.speed != float("inf"):
                now = self.clock.now()
                if q.ts - now > SKIP_GAP and not self.calendar.is_open(now + SKIP_GAP):
                    self.clock.jump_to(q.ts - timedelta(seconds=1))
                delay = self.clock.wall_delay_until(q.ts)
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                self.clock.jump_to(q.ts)
                if self.published % 500 == 0:
                    await asyncio.sleep(0)
            await self.ingest(q)
        log.info("replay finished after %d quotes", self.published)

    async def ingest(self, q: Quote) -> None:
        """One quote from any provider: hygiene, caches, the bus and the stream subscribers."""
        if self.hygiene.check(q) is not None:
            return
        self.cache.put(q)
        self.book.add(q)
        await self.publish(q)
        for sub in list(self.subscribers):
            if sub.qsize() < 10_000:
                sub.put_nowait(q)
        self.published += 1
