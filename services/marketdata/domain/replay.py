"""The deterministic replay schedule of recorded quotes, and the simulated clock that paces it.

A ``ReplayPlan`` names recorded days and symbols. Its stream is every recorded quote of those
days, merged and ordered by ``(ts, symbol)`` (rows with equal keys keep their file order), and,
with ``session_only``, restricted to the regular session ``[open, close)`` of each day (early
closes included) as the ``MarketCalendar`` gives it.

Looping (the live demo replays a fixed set of days forever). Let ``W = ceil(span / 7 days)``
where ``span`` runs from the first day to the last inclusive. Loop ``k`` replays the same quotes
``k * 7 * W`` calendar days later, so weekdays line up and every loop starts after the previous
one ended: simulated time never goes backwards. The shift keeps the America/New_York wall-clock
time of each quote (a 09:30 ET quote replays at 09:30 ET across a DST change, so its UTC shift
differs from whole weeks by an hour then). A loop whose shifted days would not be full sessions
with the same local open and close as the recorded ones (a holiday, an early close) is skipped,
so replayed quotes always fall inside the real calendar's sessions; past the calendar's range
(where it knows no sessions) at most ``MAX_SKIPPED_LOOPS`` are skipped in a row, then the next
one is used anyway.

Pacing. Each ``ScheduledQuote`` carries its simulated timestamp (the shifted ``quote.ts``) and,
for the first quote after a closed period, ``gap = (closed_from, reopens_at)``. A ``SimClock``
maps wall (monotonic) time to simulated time at a speed; ``seconds_until_due`` lets the clock run
to the close, jumps it over the closed period, then says how long to wait for the quote.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Protocol
from zoneinfo import ZoneInfo

from services.conventions.quote import Quote
from services.marketdata.domain.recorded import RecordedArchive

__all__ = [
    "MAX_SKIPPED_LOOPS",
    "ReplayPlan",
    "ScheduledQuote",
    "SessionCalendar",
    "SimClock",
    "demo_start",
    "iter_replay",
    "iter_schedule",
    "seconds_until_due",
]

EXCHANGE_TZ: Final = ZoneInfo("America/New_York")
MAX_SKIPPED_LOOPS: Final = 8
_UTC = UTC
_EPSILON = 1e-6  # seconds: a wait shorter than this is float rounding, not a wait


class SessionCalendar(Protocol):
    def session_bounds(self, d: date) -> tuple[datetime, datetime] | None: ...


def demo_start(day: date, after_open: timedelta = timedelta(minutes=5)) -> datetime:
    """A simulated start inside ``day``'s regular session: 09:30 ET + ``after_open`` (09:35 ET)."""
    local_open = datetime.combine(day, time(9, 30), tzinfo=EXCHANGE_TZ)
    return (local_open + after_open).astimezone(_UTC)


def _ts(q: Quote) -> datetime:
    return q.ts


def _key(q: Quote) -> tuple[datetime, str]:
    return (q.ts, q.symbol)


class ReplayPlan:
    """Which recorded quotes to replay, in which order (see the module docstring)."""

    def __init__(
        self,
        archive: RecordedArchive,
        days: list[date],
        symbols: list[str] | None = None,
        session_only: bool = True,
        calendar: SessionCalendar | None = None,
    ) -> None:
        if not days:
            raise ValueError("a replay plan needs at least one day")
        recorded = set(archive.days())
        missing = [d.isoformat() for d in days if d not in recorded]
        if missing:
            raise ValueError(f"no recorded quotes on {', '.join(missing)}")
        if calendar is None:
            from services.conventions.calendar import MarketCalendar

            calendar = MarketCalendar()
        self.archive = archive
        self.days = sorted(set(days))
        self.symbols = sorted(set(symbols)) if symbols is not None else None
        self.session_only = session_only
        self.calendar = calendar
        span = (self.days[-1] - self.days[0]).days + 1
        self.period_days = 7 * math.ceil(span / 7)
        self._offsets: list[int] = [0]
        self._merged: dict[date, tuple[Quote, ...]] = {}
        self._day_symbols: dict[date, int] = {}

    def symbols_on(self, day: date) -> list[str]:
        recorded = self.archive.symbols(day)
        if self.symbols is None:
            return recorded
        on_day = set(recorded)
        return [s for s in self.symbols if s in on_day]

    def session(self, day: date) -> tuple[datetime, datetime] | None:
        """The regular session ``[open, close)`` of a recorded day; None if there was none."""
        return self.calendar.session_bounds(day)

    def day_quotes(self, day: date) -> tuple[Quote, ...]:
        """The day's merged, ordered, (session-filtered) quotes, unshifted."""
        merged = self._merged.get(day)
        if merged is None:
            bounds = self.session(day) if self.session_only else None
            streams: list[tuple[Quote, ...]] = []
            for sym in self.symbols_on(day):
                qs = self.archive.load_shared(sym, day)
                if self.session_only:
                    if bounds is None:
                        continue
                    i = bisect.bisect_left(qs, bounds[0], key=_ts)
                    qs = qs[i : bisect.bisect_left(qs, bounds[1], lo=i, key=_ts)]
                if qs:
                    streams.append(qs)
            merged = tuple(heapq.merge(*streams, key=_key))
            self._merged[day] = merged
            self._day_symbols[day] = len(streams)
        return merged

    def symbol_count(self, day: date) -> int:
        """How many symbols have quotes in ``day_quotes(day)``."""
        self.day_quotes(day)
        return self._day_symbols[day]

    def loop_offset(self, k: int) -> int:
        """Calendar days by which loop ``k`` is shifted (a multiple of ``period_days``)."""
        while len(self._offsets) <= k:
            self._offsets.append(self._next_offset(self._offsets[-1]))
        return self._offsets[k]

    def _next_offset(self, previous: int) -> int:
        candidate = previous + self.period_days
        for _ in range(MAX_SKIPPED_LOOPS):
            if self._fits(candidate):
                return candidate
            candidate += self.period_days
        return candidate

    def _fits(self, offset: int) -> bool:
        for day in self.days:
            recorded = self.session(day)
            if recorded is None:
                continue
            shifted = self.calendar.session_bounds(day + timedelta(days=offset))
            if shifted is None or _local_times(shifted) != _local_times(recorded):
                return False
        return True

    def shift(self, day: date, offset: int) -> timedelta:
        """The UTC shift of ``day``'s quotes when replayed ``offset`` days later.

        Computed at local noon: recorded quotes never straddle a DST change (2 a.m. on Sundays).
        """
        if offset == 0:
            return timedelta(0)
        noon = time(12)
        then = datetime.combine(day, noon, tzinfo=EXCHANGE_TZ).astimezone(_UTC)
        later = datetime.combine(day + timedelta(days=offset), noon, tzinfo=EXCHANGE_TZ)
        return later.astimezone(_UTC) - then

    def day_start(self, day: date, quotes: tuple[Quote, ...]) -> datetime:
        """When the replayed day opens (unshifted): the session open, or its first quote."""
        bounds = self.session(day) if self.session_only else None
        return bounds[0] if bounds is not None else quotes[0].ts

    def day_end(self, day: date, quotes: tuple[Quote, ...]) -> datetime:
        """When the replayed day closes (unshifted): the session close, or its last quote."""
        bounds = self.session(day) if self.session_only else None
        return bounds[1] if bounds is not None else quotes[-1].ts

    def __iter__(self) -> Iterator[Quote]:
        return iter_replay(self)


def _local_times(bounds: tuple[datetime, datetime]) -> tuple[time, time]:
    return (bounds[0].astimezone(EXCHANGE_TZ).time(), bounds[1].astimezone(EXCHANGE_TZ).time())


@dataclass(frozen=True, slots=True)
class ScheduledQuote:
    """A quote of the replay with its simulated timestamp already in ``quote.ts``.

    ``gap``: the closed period ``(from, to)`` just before this quote, which the clock may skip.
    ``primed``: an earlier quote re-sent at the start so caches begin with the market's state.
    """

    quote: Quote
    loop: int
    gap: tuple[datetime, datetime] | None = None
    primed: bool = False


def _shifted(q: Quote, delta: timedelta) -> Quote:
    if not delta:
        return q
    return Quote(q.symbol, q.ts + delta, q.bid, q.ask, q.bid_size, q.ask_size)


def iter_schedule(
    plan: ReplayPlan, start: datetime | None = None, loop: bool = False, prime: bool = True
) -> Iterator[ScheduledQuote]:
    """The replay as ``ScheduledQuote``s, timestamps non-decreasing.

    With ``start``, quotes stamped before it are not replayed; when ``prime``, the latest of them
    per symbol is sent first (``primed=True``, ordered by ``(ts, symbol)``). With ``loop``, the
    stream never ends (unless the plan holds no quote at all). Give the ``SimClock`` the same
    start, so that the first quotes are not all overdue.
    """
    if start is not None and start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if loop and not any(plan.day_quotes(d) for d in plan.days):
        return
    primes: dict[str, Quote] = {}
    started = start is None
    boundary = start  # where the current closed period began (previous close, or the start)
    k = 0
    while True:
        offset = plan.loop_offset(k)
        for day in plan.days:
            quotes = plan.day_quotes(day)
            if not quotes:
                continue
            delta = plan.shift(day, offset)
            first = 0
            if not started:
                assert start is not None
                first = bisect.bisect_left(quotes, start - delta, key=_ts)
                if prime:
                    primes.update(_latest_per_symbol(quotes, first, delta, plan.symbol_count(day)))
                if first == len(quotes):
                    continue
                started = True
                for q in sorted(primes.values(), key=_key):
                    yield ScheduledQuote(q, k, primed=True)
            opens = plan.day_start(day, quotes) + delta
            gap = (boundary, opens) if boundary is not None and boundary < opens else None
            for i in range(first, len(quotes)):
                yield ScheduledQuote(_shifted(quotes[i], delta), k, gap)
                gap = None
            boundary = plan.day_end(day, quotes) + delta
        if not loop:
            break
        k += 1
    if not started:
        for q in sorted(primes.values(), key=_key):
            yield ScheduledQuote(q, k, primed=True)


def _latest_per_symbol(
    quotes: tuple[Quote, ...], end: int, delta: timedelta, symbols: int
) -> dict[str, Quote]:
    """The last quote of each symbol among ``quotes[:end]``, shifted by ``delta``."""
    found: dict[str, Quote] = {}
    for i in range(end - 1, -1, -1):
        q = quotes[i]
        if q.symbol not in found:
            found[q.symbol] = _shifted(q, delta)
            if len(found) == symbols:
                break
    return found


def iter_replay(
    plan: ReplayPlan, start: datetime | None = None, loop: bool = False
) -> Iterator[Quote]:
    """The replayed quotes (timestamps shifted for loops); see ``iter_schedule``."""
    for sq in iter_schedule(plan, start, loop):
        yield sq.quote


class SimClock:
    """Simulated time = anchor + (wall - anchor wall) x speed; ``speed`` may be ``math.inf``.

    At infinite speed the clock stands still between ``jump_to``/``advance_to`` calls (the
    replay drives it). ``wall`` is a monotonic reading in seconds; without ``start_wall`` the
    clock is anchored at the first wall reading it is given. It never runs backwards.
    """

    def __init__(self, start_sim: datetime, speed: float, start_wall: float | None = None) -> None:
        if start_sim.tzinfo is None:
            raise ValueError("start_sim must be timezone-aware")
        if not speed > 0:
            raise ValueError(f"speed must be positive (or inf), got {speed}")
        self.speed = speed
        self._sim = start_sim.astimezone(_UTC)
        self._wall = start_wall

    def _anchor_wall(self, wall: float) -> float:
        if self._wall is None:
            self._wall = wall
        return self._wall

    def now(self, wall: float) -> datetime:
        anchor = self._anchor_wall(wall)
        if math.isinf(self.speed) or wall <= anchor:
            return self._sim
        return self._sim + timedelta(seconds=(wall - anchor) * self.speed)

    def wall_at(self, sim: datetime) -> float:
        """The wall reading at which the clock shows ``sim`` (in the past if already shown)."""
        if self._wall is None:
            raise ValueError("the clock has not been given a wall reading yet")
        if math.isinf(self.speed):
            return self._wall if sim > self._sim else -math.inf
        return self._wall + (sim - self._sim).total_seconds() / self.speed

    def jump_to(self, sim: datetime, wall: float) -> None:
        """Set the clock to ``sim`` at ``wall``; refuses to go backwards."""
        current = self.now(wall)
        if sim < current:
            raise ValueError(f"cannot jump back from {current.isoformat()} to {sim.isoformat()}")
        self._sim, self._wall = sim.astimezone(_UTC), wall

    def advance_to(self, sim: datetime, wall: float) -> None:
        """Move the clock forward to ``sim`` if it is behind; no-op otherwise."""
        if sim > self.now(wall):
            self._sim, self._wall = sim.astimezone(_UTC), wall


def seconds_until_due(clock: SimClock, sq: ScheduledQuote, wall: float) -> float:
    """How long to wait before publishing ``sq``; 0 means now (and the clock shows its time).

    Call again after waiting. Inside ``sq.gap`` the clock jumps to the reopening; before the gap
    starts the clock is left to run to it in real time (so the close is reached).
    """
    now = clock.now(wall)
    if sq.gap is not None:
        closed_from, reopens = sq.gap
        if now < closed_from:
            wait = clock.wall_at(closed_from) - wall
            if wait > _EPSILON:
                return wait
        if now < reopens:
            clock.jump_to(reopens, wall)
    due = sq.quote.ts
    wait = clock.wall_at(due) - wall
    if wait > 0 and not math.isinf(clock.speed):
        return wait
    clock.advance_to(due, wall)
    return 0.0
