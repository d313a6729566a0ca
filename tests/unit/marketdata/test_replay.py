"""The replay schedule over real recorded days, its looping, and the simulated clock.

Counts and quotes are worked out from the gzip files in the test, independently of the archive.
2013-10-07 is a Monday in daylight time: the regular session 09:30-16:00 EDT is 13:30-20:00 UTC.
"""

from __future__ import annotations

import csv
import functools
import gzip
import itertools
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from services.conventions.calendar import MarketCalendar
from services.conventions.quote import Quote
from services.marketdata.domain.recorded import RecordedArchive, default_archive_root
from services.marketdata.domain.replay import (
    ReplayPlan,
    ScheduledQuote,
    SimClock,
    demo_start,
    iter_replay,
    iter_schedule,
    seconds_until_due,
)

QUOTES = default_archive_root() / "quotes"
MON, TUE = date(2013, 10, 7), date(2013, 10, 8)
OPEN_MON = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)
CLOSE_MON = datetime(2013, 10, 7, 20, 0, tzinfo=UTC)


@functools.cache
def raw_rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["t", "bp", "bs", "ap", "as"]
    return rows[1:]


def ts(t: str) -> datetime:
    assert len(t) == 24 and t[10] == "T" and t[-1] == "Z"
    ymd = int(t[0:4]), int(t[5:7]), int(t[8:10])
    hms = int(t[11:13]), int(t[14:16]), int(t[17:19])
    return datetime(*ymd, *hms, int(t[20:23]) * 1000, tzinfo=UTC)


def as_quote(symbol: str, row: list[str]) -> Quote:
    t, bp, bs, ap, asz = row
    return Quote(symbol, ts(t), Decimal(bp), Decimal(ap), int(bs), int(asz))


def as_row(q: Quote) -> list[str]:
    """A quote written back as the file's text (Decimal keeps the digits it was given)."""
    t = q.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [t, str(q.bid), str(q.bid_size), str(q.ask), str(q.ask_size)]


def ibm_rows(day: str = "2013-10-07") -> list[list[str]]:
    return raw_rows(QUOTES / "IBM" / day / "IBM.csv.gz")


def between(rows: list[list[str]], lo: str, hi: str) -> list[list[str]]:
    """Rows with lo <= t < hi: the fixed-width timestamps sort as text."""
    return [r for r in rows if lo <= r[0] < hi]


# Monday's regular session as text, for filtering rows without parsing them
MON_OPEN, MON_CLOSE = "2013-10-07T13:30:00.000Z", "2013-10-07T20:00:00.000Z"


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar()


@pytest.fixture(scope="module")
def archive() -> RecordedArchive:
    return RecordedArchive()


@pytest.fixture(scope="module")
def ibm_mon(archive: RecordedArchive, calendar: MarketCalendar) -> ReplayPlan:
    return ReplayPlan(archive, [MON], ["IBM"], session_only=True, calendar=calendar)


def test_ibm_whole_day_is_every_row_in_file_order(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    plan = ReplayPlan(archive, [MON], ["IBM"], session_only=False, calendar=calendar)
    got = list(iter_replay(plan))
    assert len(got) == len(ibm_rows()) == 46112
    assert {q.symbol for q in got} == {"IBM"}
    assert [as_row(q) for q in got] == ibm_rows()


def test_session_only_keeps_exactly_the_regular_session(ibm_mon: ReplayPlan) -> None:
    in_session = between(ibm_rows(), MON_OPEN, MON_CLOSE)
    pre = between(ibm_rows(), "", MON_OPEN)
    after = between(ibm_rows(), MON_CLOSE, "9")
    assert pre and after  # the file holds pre-market (from 04:00 ET) and after-hours rows
    got = list(iter_replay(ibm_mon))
    assert len(got) == len(in_session) == len(ibm_rows()) - len(pre) - len(after)
    assert OPEN_MON <= got[0].ts and got[-1].ts < CLOSE_MON
    # exact quotes at known timestamps: the first and last of the session, straight from the file
    assert got[0] == as_quote("IBM", in_session[0])
    assert got[-1] == as_quote("IBM", in_session[-1])
    assert got[0].ts == ts(in_session[0][0]) and got[0].ts < OPEN_MON + timedelta(seconds=5)
    # and one in the middle: the first quote at or after 15:00 ET
    three_pm = datetime(2013, 10, 7, 19, 0, tzinfo=UTC)
    row = next(r for r in in_session if ts(r[0]) >= three_pm)
    assert next(q for q in got if q.ts >= three_pm) == as_quote("IBM", row)


def test_early_close_is_respected(archive: RecordedArchive, calendar: MarketCalendar) -> None:
    # 2015-12-24 closed at 13:00 EST = 18:00 UTC; GOOG's file goes on after that
    day = date(2015, 12, 24)
    rows = raw_rows(QUOTES / "GOOG" / "2015-12-24" / "GOOG.csv.gz")
    close = datetime(2015, 12, 24, 18, 0, tzinfo=UTC)
    assert any(ts(r[0]) >= close for r in rows)
    expected = between(rows, "2015-12-24T14:30:00.000Z", "2015-12-24T18:00:00.000Z")
    got = list(iter_replay(ReplayPlan(archive, [day], ["GOOG"], calendar=calendar)))
    assert got == [as_quote("GOOG", r) for r in expected]


def test_two_symbols_two_days_are_merged_in_order(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    plan = ReplayPlan(archive, [TUE, MON], ["SPY", "IBM"], calendar=calendar)
    assert plan.days == [MON, TUE]
    got = list(iter_replay(plan))
    keys = [(q.ts, q.symbol) for q in got]
    assert keys == sorted(keys)
    for sym in ("IBM", "SPY"):
        per_file = [
            r
            for day in ("2013-10-07", "2013-10-08")
            for r in between(
                raw_rows(QUOTES / sym / day / f"{sym}.csv.gz"),
                f"{day}T13:30:00.000Z",
                f"{day}T20:00:00.000Z",
            )
        ]
        assert [as_row(q) for q in got if q.symbol == sym] == per_file


def _write(root: Path, sym: str, day: str, rows: list[str]) -> None:
    d = root / "quotes" / sym / day
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / f"{sym}.csv.gz", "wt") as fh:
        fh.write("t,bp,bs,ap,as\n" + "".join(r + "\n" for r in rows))


def test_ties_are_broken_by_symbol_then_file_order(
    tmp_path: Path, calendar: MarketCalendar
) -> None:
    t = "2013-10-07T14:00:00.000Z"
    _write(tmp_path, "ZZZ", "2013-10-07", [f"{t},1,1,2,1", f"{t},1,1,3,1"])
    _write(tmp_path, "AAA", "2013-10-07", [f"{t},5,1,6,1", "2013-10-07T14:00:00.001Z,5,1,7,1"])
    plan = ReplayPlan(RecordedArchive(tmp_path), [MON], calendar=calendar)
    got = [(q.symbol, str(q.ask)) for q in iter_replay(plan)]
    assert got == [("AAA", "6"), ("ZZZ", "2"), ("ZZZ", "3"), ("AAA", "7")]


def test_unknown_days_are_refused(archive: RecordedArchive, calendar: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="2013-10-12"):
        ReplayPlan(archive, [MON, date(2013, 10, 12)], calendar=calendar)
    with pytest.raises(ValueError, match="at least one day"):
        ReplayPlan(archive, [], calendar=calendar)
    with pytest.raises(ValueError, match="aware"):
        next(iter_replay(ReplayPlan(archive, [MON], calendar=calendar), datetime(2013, 10, 7)))


def test_an_empty_plan_ends_even_when_looping(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    plan = ReplayPlan(archive, [MON], ["MSFT"], calendar=calendar)
    assert list(iter_replay(plan, loop=True)) == []


# -- looping ------------------------------------------------------------------------------------


def test_each_loop_shifts_by_whole_weeks_and_time_never_decreases(ibm_mon: ReplayPlan) -> None:
    one_day = list(iter_replay(ibm_mon))
    n = len(one_day)
    stream = list(itertools.islice(iter_replay(ibm_mon, loop=True), 3 * n + 1))
    assert all(a.ts <= b.ts for a, b in zip(stream, stream[1:], strict=False))
    for k in (1, 2, 3):
        # span of one day -> W = 1 week: loop k is k weeks later, still a Monday in EDT
        shift = timedelta(weeks=k)
        first = stream[k * n]
        assert first.ts == one_day[0].ts + shift and first.ts.weekday() == 0
        assert first.bid == one_day[0].bid and first.ask == one_day[0].ask
    assert stream[2 * n - 1].ts == one_day[-1].ts + timedelta(weeks=1)
    assert [ibm_mon.loop_offset(k) for k in range(4)] == [0, 7, 14, 21]


def test_loop_period_is_whole_weeks_covering_the_span(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    week = [date(2013, 10, d) for d in range(7, 12)]  # Mon..Fri: span 5 days -> 1 week
    assert ReplayPlan(archive, week, ["SPY"], calendar=calendar).period_days == 7
    # 2013-10-07 .. 2014-06-09 spans 246 days -> 36 weeks (252 days)
    far = ReplayPlan(archive, [MON, date(2014, 6, 9)], calendar=calendar)
    assert far.period_days == 7 * math.ceil(246 / 7) == 252


def test_loops_skip_holidays_and_early_closes_and_keep_new_york_time(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    plan = ReplayPlan(archive, [MON, TUE], ["SPY"], calendar=calendar)
    offsets = [plan.loop_offset(k) for k in range(12)]
    # +77 days is Mon 2013-12-23 / Tue 2013-12-24, an early close (13:00): that loop is skipped
    assert offsets == [0, 7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 84]
    # +28 days is 2013-11-04, after the switch to EST: 09:30 ET is now 14:30 UTC
    assert plan.shift(MON, 28) == timedelta(days=28, hours=1)
    first_of_loop_4 = next(sq.quote for sq in iter_schedule(plan, loop=True) if sq.loop == 4)
    assert first_of_loop_4.ts == datetime(2013, 11, 4, 14, 30, tzinfo=UTC)


# -- start, gaps and the clock -----------------------------------------------------------------


def test_demo_start_is_inside_the_first_session(calendar: MarketCalendar) -> None:
    start = demo_start(MON)
    assert start == datetime(2013, 10, 7, 13, 35, tzinfo=UTC)  # 09:35 EDT
    assert calendar.is_open(start)
    assert demo_start(date(2013, 11, 4)) == datetime(2013, 11, 4, 14, 35, tzinfo=UTC)  # EST


def test_start_primes_with_the_latest_quote_then_resumes(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    plan = ReplayPlan(archive, [MON], ["IBM", "SPY"], calendar=calendar)
    start = demo_start(MON)
    sched = list(iter_schedule(plan, start=start))
    primed = [sq.quote for sq in sched if sq.primed]
    rest = [sq.quote for sq in sched if not sq.primed]
    assert not any(sq.primed for sq in sched[len(primed) :])
    ibm_before = between(ibm_rows(), MON_OPEN, "2013-10-07T13:35:00.000Z")
    spy_rows = raw_rows(QUOTES / "SPY" / "2013-10-07" / "SPY.csv.gz")
    spy_before = between(spy_rows, MON_OPEN, "2013-10-07T13:35:00.000Z")
    assert spy_before[-1][0] == "2013-10-07T13:34:00.000Z"
    assert sorted(primed, key=lambda q: q.ts) == [
        as_quote("SPY", spy_before[-1]),
        as_quote("IBM", ibm_before[-1]),
    ]
    assert rest[0].ts >= start
    assert rest == [q for q in iter_replay(plan) if q.ts >= start]
    assert sched[len(primed)].gap is None  # the session is already open at the start


def test_first_quote_after_a_closed_period_carries_the_gap(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    plan = ReplayPlan(archive, [MON, TUE], ["IBM"], calendar=calendar)
    early = datetime(2013, 10, 7, 12, 0, tzinfo=UTC)  # 08:00 EDT, before the open
    gaps = [(sq.quote.ts.date(), sq.gap) for sq in iter_schedule(plan, start=early) if sq.gap]
    close_tue = datetime(2013, 10, 8, 20, 0, tzinfo=UTC)
    assert gaps == [
        (MON, (early, OPEN_MON)),
        (TUE, (CLOSE_MON, OPEN_MON + timedelta(days=1))),
    ]
    looped = (sq for sq in iter_schedule(plan, loop=True) if sq.loop == 1)
    assert next(looped).gap == (close_tue, OPEN_MON + timedelta(weeks=1))


def test_sim_clock_speeds() -> None:
    t0 = datetime(2013, 10, 7, 13, 35, tzinfo=UTC)
    real = SimClock(t0, 1.0, start_wall=100.0)
    assert real.now(100.0) == t0 and real.now(160.5) == t0 + timedelta(seconds=60.5)
    assert real.now(50.0) == t0  # never before its start
    fast = SimClock(t0, 10.0)  # anchored at the first reading
    assert fast.now(7.0) == t0 and fast.now(8.0) == t0 + timedelta(seconds=10)
    assert fast.wall_at(t0 + timedelta(minutes=1)) == pytest.approx(13.0)
    fast.jump_to(t0 + timedelta(days=1), 9.0)
    assert fast.now(10.0) == t0 + timedelta(days=1, seconds=10)
    with pytest.raises(ValueError, match="back"):
        fast.jump_to(t0, 11.0)
    flat_out = SimClock(t0, math.inf, start_wall=0.0)
    assert flat_out.now(1e6) == t0  # stands still until the replay advances it
    flat_out.advance_to(t0 + timedelta(hours=1), 1.0)
    flat_out.advance_to(t0, 2.0)  # no-op: never backwards
    assert flat_out.now(3.0) == t0 + timedelta(hours=1)
    with pytest.raises(ValueError, match="speed"):
        SimClock(t0, 0.0)
    with pytest.raises(ValueError, match="aware"):
        SimClock(t0.replace(tzinfo=None), 1.0)


def _drive(clock: SimClock, sched: Iterator[ScheduledQuote], wall: float) -> tuple[float, int]:
    """Run a replay against a fake wall clock; returns the wall time at the end and the count."""
    n = 0
    for sq in sched:
        while (wait := seconds_until_due(clock, sq, wall)) > 0:
            wall += wait
        assert clock.now(wall) >= sq.quote.ts or sq.primed
        n += 1
    return wall, n


def test_pacing_runs_sessions_in_scaled_time_and_skips_the_night(
    archive: RecordedArchive, calendar: MarketCalendar
) -> None:
    plan = ReplayPlan(archive, [MON, TUE], ["IBM"], calendar=calendar)
    start = demo_start(MON)
    speed = 3600.0  # one simulated hour per wall second
    clock = SimClock(start, speed, start_wall=0.0)
    sched = list(iter_schedule(plan, start=start))
    wall, n = _drive(clock, iter(sched), 0.0)
    last = sched[-1].quote.ts
    # Monday 09:35 -> 16:00 is 6h25m; the night is jumped; Tuesday runs 09:30 -> its last quote
    expected_sim = (CLOSE_MON - start) + (last - (OPEN_MON + timedelta(days=1)))
    assert wall == pytest.approx(expected_sim.total_seconds() / speed, abs=1e-3)
    assert abs(clock.now(wall) - last) < timedelta(milliseconds=5)
    assert n == len(sched)


def test_pacing_at_infinite_speed_never_waits(ibm_mon: ReplayPlan) -> None:
    clock = SimClock(OPEN_MON, math.inf, start_wall=0.0)
    wall, n = _drive(clock, iter_schedule(ibm_mon), 0.0)
    assert wall == 0.0
    assert clock.now(wall) == ts(between(ibm_rows(), MON_OPEN, MON_CLOSE)[-1][0])
