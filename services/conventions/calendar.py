"""The NYSE regular-session calendar (XNYS), holiday- and early-close-aware.

`exchange_calendars` (pandas) is consulted once, when a `MarketCalendar` is built; every session
is then held as a pair of plain UTC-aware `datetime`s, so the per-quote questions (`is_open`,
`session_window`) are a dict lookup or a bisect and a few comparisons, never a pandas call.

A session is the half-open interval ``[open, close)``: a timestamp equal to the close is outside
it (the same convention as `exchange_calendars`' default ``side="left"``). Early closes are at
13:00 America/New_York (18:00 UTC in winter).
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime

__all__ = ["MarketCalendar", "SessionWindow"]

_UTC = UTC

# A stretch of time that is uniformly open or closed: (start, end, is_open), start <= t < end.
SessionWindow = tuple[datetime, datetime, bool]


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} must be timezone-aware")
    return ts if ts.tzinfo is _UTC else ts.astimezone(_UTC)


class MarketCalendar:
    """Regular sessions of one exchange between ``start`` and ``end`` (inclusive dates).

    The range is explicit (no wall clock). Timestamps outside it behave as non-trading time.
    """

    def __init__(
        self,
        exchange: str = "XNYS",
        start: date = date(2006, 1, 1),
        end: date = date(2030, 12, 31),
    ) -> None:
        import exchange_calendars  # deferred: pandas is only needed to build the cache

        cal = exchange_calendars.get_calendar(
            exchange, start=start.isoformat(), end=end.isoformat()
        )
        schedule = cal.schedule
        self.exchange = exchange
        self._bounds: dict[date, tuple[datetime, datetime]] = {}
        opens: list[datetime] = []
        closes: list[datetime] = []
        for day, open_, close in zip(
            schedule.index, schedule["open"], schedule["close"], strict=True
        ):
            o = open_.to_pydatetime().astimezone(_UTC)
            c = close.to_pydatetime().astimezone(_UTC)
            self._bounds[day.date()] = (o, c)
            opens.append(o)
            closes.append(c)
        self._opens = opens
        self._closes = closes
        if not opens:
            raise ValueError(f"{exchange} has no sessions between {start} and {end}")

    def session_bounds(self, d: date) -> tuple[datetime, datetime] | None:
        """UTC open and close of the regular session on exchange date ``d``; None if no session."""
        return self._bounds.get(d)

    def is_open(self, ts: datetime) -> bool:
        """True when ``ts`` falls in a regular session (open <= ts < close)."""
        ts = _utc(ts)
        # An NYSE session (09:30-16:00 ET) lies within one UTC calendar day, its exchange date.
        bounds = self._bounds.get(ts.date())
        return bounds is not None and bounds[0] <= ts < bounds[1]

    def session_close_after(self, ts: datetime) -> datetime | None:
        """Close of the session containing ``ts``, or None when ``ts`` is outside every session."""
        ts = _utc(ts)
        bounds = self._bounds.get(ts.date())
        if bounds is not None and bounds[0] <= ts < bounds[1]:
            return bounds[1]
        return None

    def next_open(self, ts: datetime) -> datetime:
        """The earliest session open at or after ``ts``.

        Raises ValueError past the calendar's range.
        """
        ts = _utc(ts)
        i = bisect.bisect_left(self._opens, ts)
        if i == len(self._opens):
            raise ValueError(f"no session opens at or after {ts.isoformat()} in this calendar")
        return self._opens[i]

    def session_window(self, ts: datetime) -> SessionWindow:
        """The maximal stretch around ``ts`` that is uniformly open or closed.

        In a session: ``(open, close, True)``; otherwise ``(previous close, next open, False)``
        (bounded by the calendar's range). Callers cache it and re-ask only when a timestamp
        leaves the window, which makes the hot-path session check two comparisons.
        """
        ts = _utc(ts)
        i = bisect.bisect_right(self._opens, ts) - 1  # last session opened at or before ts
        if i >= 0 and ts < self._closes[i]:
            return (self._opens[i], self._closes[i], True)
        lo = self._closes[i] if i >= 0 else datetime.min.replace(tzinfo=_UTC)
        hi = self._opens[i + 1] if i + 1 < len(self._opens) else datetime.max.replace(tzinfo=_UTC)
        return (lo, hi, False)

    def day_order_expiry(self, accepted_at: datetime) -> datetime:
        """When a day order accepted at ``accepted_at`` expires.

        The close of the session it was accepted in; accepted outside a session, the close of
        the next session (the order waits for that session's first quote).
        """
        close = self.session_close_after(accepted_at)
        if close is not None:
            return close
        nxt = self.next_open(accepted_at)
        bounds = self._bounds[nxt.date()]
        return bounds[1]
