"""Helpers for the matching-engine tests: builders for quotes and orders, a recorded-quote loader.

The loader is deliberately tiny and local to these tests (marketdata owns the real one).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from services.conventions.calendar import MarketCalendar
from services.orders.domain import (
    Event,
    MatchingEngine,
    Order,
    OrderFilled,
    OrderType,
    Quote,
    Side,
    TimeInForce,
)

QUOTES_ROOT = Path(__file__).resolve().parents[3] / "services" / "marketdata" / "data" / "quotes"


@cache
def shared_calendar() -> MarketCalendar:
    return MarketCalendar()


def ts(text: str) -> datetime:
    """'2013-10-07T14:00:00' (UTC) -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def D(text: str | int) -> Decimal:
    return Decimal(str(text))


def quote(
    when: str,
    bid: str,
    ask: str,
    symbol: str = "IBM",
    bid_size: int = 500,
    ask_size: int = 500,
) -> Quote:
    return Quote(symbol, ts(when), D(bid), D(ask), bid_size, ask_size)


_counter = iter(range(1, 10**9))


def order(
    side: str = "buy",
    order_type: str = "market",
    *,
    qty: str | int = 100,
    limit: str | None = None,
    stop: str | None = None,
    tif: str = "day",
    at: str = "2013-10-07T14:00:00",
    symbol: str = "IBM",
    oid: str | None = None,
    **extra: Any,
) -> Order:
    return Order(
        id=oid or f"o{next(_counter)}",
        account_id="acct-1",
        symbol=symbol,
        side=Side(side),
        qty=D(qty),
        order_type=OrderType(order_type),
        time_in_force=TimeInForce(tif),
        accepted_at=ts(at),
        limit_price=D(limit) if limit is not None else None,
        stop_price=D(stop) if stop is not None else None,
        **extra,
    )


@cache
def load_quotes(underlying: str, day: str, symbol: str) -> tuple[Quote, ...]:
    """The recorded quotes of one file (a tiny loader local to these tests)."""
    path = QUOTES_ROOT / underlying / day / f"{symbol}.csv.gz"
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "t,bp,bs,ap,as"
    out = []
    for line in lines[1:]:
        t, bp, bs, ap, asz = line.split(",")
        out.append(
            Quote(symbol, datetime.fromisoformat(t), Decimal(bp), Decimal(ap), int(bs), int(asz))
        )
    return tuple(out)


E = TypeVar("E")


def feed(engine: MatchingEngine, quotes: Iterable[Quote]) -> list[Event]:
    """Quotes in, then the last instant settled (its spreads evaluated): the end of input."""
    events: list[Event] = []
    for q in quotes:
        events += engine.on_quote(q)
    return events + engine.settle()


def only(events: Iterable[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def fills(events: Iterable[Event]) -> list[OrderFilled]:
    return only(events, OrderFilled)
