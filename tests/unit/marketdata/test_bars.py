from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

from services.conventions.quote import Quote
from services.marketdata.domain.bars import TIMEFRAMES, mid, quote_bars
from services.marketdata.domain.recorded import RecordedArchive


def test_bars_aggregate_quote_mids_per_bucket() -> None:
    t = datetime(2013, 10, 7, 14, 0, 10, tzinfo=UTC)
    qs = [
        Quote("X", t, D("10.00"), D("10.10"), 1, 1),  # mid 10.05
        Quote("X", t + timedelta(seconds=20), D("10.20"), D("10.30"), 1, 1),  # 10.25
        Quote("X", t + timedelta(seconds=40), D("9.90"), D("10.00"), 1, 1),  # 9.95
        Quote("X", t + timedelta(minutes=2), D("0"), D("0.50"), 1, 1),  # no bid: the ask
    ]
    bars = quote_bars(qs, TIMEFRAMES["1Min"])
    assert [(b.start.minute, b.open, b.high, b.low, b.close, b.quotes) for b in bars] == [
        (0, D("10.05"), D("10.25"), D("9.95"), D("9.95"), 3),
        (2, D("0.50"), D("0.50"), D("0.50"), D("0.50"), 1),
    ]


def test_ibm_five_minute_bars_match_the_recording() -> None:
    quotes = RecordedArchive().load("IBM", date(2013, 10, 7))
    start = datetime(2013, 10, 7, 15, 0, tzinfo=UTC)
    window = [q for q in quotes if start <= q.ts < start + timedelta(minutes=5)]
    (bar,) = quote_bars(window, TIMEFRAMES["5Min"])
    mids = [mid(q) for q in window]
    assert (bar.open, bar.close, bar.high, bar.low, bar.quotes) == (
        mids[0],
        mids[-1],
        max(mids),
        min(mids),
        len(window),
    )
