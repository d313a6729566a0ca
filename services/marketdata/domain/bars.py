"""Bars from quotes: OHLC of the NBBO mid per time bucket (the recordings have no trades).

A bucket [t, t + size) holds the quotes stamped in it; open is the first mid, close the last,
high/low the extremes; `quotes` counts them. Empty buckets produce no bar. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.conventions.quote import Quote

TIMEFRAMES: dict[str, timedelta] = {
    "1Min": timedelta(minutes=1),
    "5Min": timedelta(minutes=5),
    "15Min": timedelta(minutes=15),
    "1Hour": timedelta(hours=1),
    "1Day": timedelta(days=1),
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Bar:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    quotes: int


def mid(q: Quote) -> Decimal:
    return (q.bid + q.ask) / 2 if q.bid > 0 else q.ask


def bucket_start(ts: datetime, size: timedelta) -> datetime:
    return EPOCH + ((ts - EPOCH) // size) * size


def quote_bars(quotes: Iterable[Quote], size: timedelta) -> list[Bar]:
    """Time-ordered quotes -> bars of `size` (a day bucket is a UTC day)."""
    bars: list[Bar] = []
    for q in quotes:
        m, start = mid(q), bucket_start(q.ts, size)
        if bars and bars[-1].start == start:
            b = bars[-1]
            bars[-1] = Bar(start, b.open, max(b.high, m), min(b.low, m), m, b.quotes + 1)
        else:
            bars.append(Bar(start, m, m, m, m, 1))
    return bars
