"""The quote a hold is priced at (`services.orders.quotes.QuoteSource`): the engine's latest
once it has one, else market data's answer, asked once per `REUSE_S` however many orders come."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.orders.domain.model import Quote
from services.orders.quotes import REUSE_S, QuoteSource
from services.platform.errors import NotFound

T0 = datetime(2013, 10, 7, 14, 0, tzinfo=UTC)


def quote(symbol: str, ask: str, seconds: int = 0) -> Quote:
    return Quote(
        symbol=symbol,
        ts=T0 + timedelta(seconds=seconds),
        bid=Decimal(ask) - Decimal("0.02"),
        ask=Decimal(ask),
        bid_size=100,
        ask_size=100,
    )


class World:
    """The engine's latest quotes, market data's answers, and a clock the test moves."""

    def __init__(self) -> None:
        self.engine: dict[str, Quote] = {}
        self.market: dict[str, Quote] = {}
        self.asked: list[str] = []
        self.now = 100.0

    async def ask(self, symbol: str) -> Quote:
        self.asked.append(symbol)
        await asyncio.sleep(0.01)  # a call takes a while
        if symbol not in self.market:
            raise NotFound(f"unknown symbol {symbol}")
        return self.market[symbol]

    def source(self) -> QuoteSource:
        return QuoteSource(self.engine.get, self.ask, clock=lambda: self.now)


def test_a_burst_for_a_quiet_symbol_asks_market_data_once_per_reuse_window() -> None:
    w = World()
    w.market["SPY"] = quote("SPY", "169.50")
    src = w.source()

    async def burst(n: int) -> list[Decimal]:
        return [(await src.current("SPY")).ask for _ in range(n)]

    assert asyncio.run(burst(10)) == [Decimal("169.50")] * 10
    assert w.asked == ["SPY"]  # one call for ten orders (it was ten)
    w.now += REUSE_S / 2
    w.market["SPY"] = quote("SPY", "169.60", 30)
    assert asyncio.run(burst(3)) == [Decimal("169.50")] * 3  # still within the window
    w.now += REUSE_S
    assert asyncio.run(burst(3)) == [Decimal("169.60")] * 3  # asked again, once
    assert w.asked == ["SPY", "SPY"]


def test_orders_that_come_together_share_one_answer() -> None:
    w = World()
    w.market["SPY"] = quote("SPY", "169.50")
    src = w.source()

    async def together(n: int, symbol: str) -> list[Decimal | str]:
        got = await asyncio.gather(*(src.current(symbol) for _ in range(n)), return_exceptions=True)
        return [q.ask if isinstance(q, Quote) else type(q).__name__ for q in got]

    assert asyncio.run(together(10, "SPY")) == [Decimal("169.50")] * 10
    assert asyncio.run(together(3, "NOPE")) == ["NotFound"] * 3  # the refusal is shared too
    assert w.asked == ["SPY", "NOPE"]


def test_the_engines_quote_wins_once_it_has_one() -> None:
    w = World()
    w.market["IBM"] = quote("IBM", "185.00")
    src = w.source()
    assert asyncio.run(src.current("IBM")).ask == Decimal("185.00")
    w.engine["IBM"] = quote("IBM", "185.10", 1)  # the feed's next quote reached the engine
    for _ in range(3):
        assert asyncio.run(src.current("IBM")).ask == Decimal("185.10")
    w.now += 10 * REUSE_S
    assert asyncio.run(src.current("IBM")).ask == Decimal("185.10")
    assert w.asked == ["IBM"]


def test_an_unknown_symbol_is_asked_every_time_and_refused() -> None:
    w = World()
    w.engine["ZZZZ"] = quote("ZZZZ", "1.00")  # even with a quote: never confirmed as a symbol
    src = w.source()
    for _ in range(2):
        with pytest.raises(NotFound):
            asyncio.run(src.current("ZZZZ"))
    assert w.asked == ["ZZZZ", "ZZZZ"]
