"""Quote hygiene: what is dropped, why, and that real recorded data passes untouched."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from services.conventions.quote import Quote
from services.marketdata.domain.hygiene import (
    ASK_NOT_POSITIVE,
    BID_NEGATIVE,
    CROSSED,
    TS_BACKWARDS,
    QuoteFilter,
)
from services.marketdata.domain.recorded import RecordedArchive

T0 = datetime(2015, 12, 24, 15, 0, tzinfo=UTC)


def q(bid: str, ask: str, seconds: float = 0, symbol: str = "X") -> Quote:
    return Quote(symbol, T0 + timedelta(seconds=seconds), Decimal(bid), Decimal(ask), 1, 1)


def test_each_rule_and_its_count() -> None:
    f = QuoteFilter()
    assert f.check(q("1.00", "1.05", 0)) is None
    assert f.check(q("1.00", "0", 1)) == ASK_NOT_POSITIVE
    assert f.check(q("1.00", "-0.01", 1)) == ASK_NOT_POSITIVE
    assert f.check(q("-0.01", "1.05", 1)) == BID_NEGATIVE
    assert f.check(q("1.06", "1.05", 1)) == CROSSED
    assert f.check(q("1.00", "1.05", -1)) == TS_BACKWARDS
    assert f.counts == {ASK_NOT_POSITIVE: 2, BID_NEGATIVE: 1, CROSSED: 1, TS_BACKWARDS: 1}
    assert f.rejected == 5 and f.accepted == 1


def test_what_passes() -> None:
    f = QuoteFilter()
    assert f.check(q("0", "0.05", 0)) is None  # no bid: legal for a far OTM option
    assert f.check(q("1.05", "1.05", 0)) is None  # locked, and the same millisecond again
    assert f.check(q("1.00", "1.05", 0, symbol="Y")) is None
    assert f.check(q("1.00", "1.05", -5, symbol="Z")) is None  # each symbol has its own clock
    assert f.rejected == 0 and f.accepted == 4


def test_a_rejected_quote_does_not_move_the_clock() -> None:
    f = QuoteFilter()
    f.check(q("1", "2", 0))
    assert f.check(q("3", "2", 10)) == CROSSED
    assert f.last_ts("X") == T0
    assert f.check(q("1", "2", 5)) is None  # not "backwards": the crossed quote did not count
    assert f.last_ts("X") == T0 + timedelta(seconds=5)


def test_filter_yields_the_accepted() -> None:
    f = QuoteFilter()
    stream = [q("1", "2", 0), q("3", "2", 1), q("1", "2", 2), q("1", "2", 1)]
    assert list(f.filter(stream)) == [stream[0], stream[2]]
    assert f.counts[CROSSED] == 1 and f.counts[TS_BACKWARDS] == 1


def test_recorded_days_are_clean() -> None:
    # README: rows are sorted and none is crossed; SPY has locked rows (bid = ask), which pass
    archive = RecordedArchive()
    quotes = archive.load("IBM", date(2013, 10, 7)) + archive.load("SPY", date(2013, 10, 7))
    f = QuoteFilter()
    assert list(f.filter(quotes)) == quotes
    assert f.rejected == 0 and f.accepted == len(quotes)
    assert sum(1 for x in quotes if x.bid == x.ask) == 22  # zcat SPY.csv.gz | awk '$2==$4'
