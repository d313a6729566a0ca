"""Quote validity (BRIEF §4 rule 1) and the reasons a fill is deferred.

A reason is a fixed string per kind of defect, so "emit a deferral only when the reason changes"
is a string comparison. Order-independent defects (prices, session, age) are checked once per
quote; the order-dependent one (quote not after acceptance) per order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.conventions.calendar import MarketCalendar
from services.conventions.quote import Quote

__all__ = [
    "REASON_CLOSED",
    "REASON_CROSSED",
    "REASON_NEGATIVE_BID",
    "REASON_NO_ASK",
    "REASON_NO_BID",
    "REASON_NO_QUOTE",
    "REASON_NO_SIZE",
    "REASON_NOT_AFTER_ACCEPTANCE",
    "SessionGate",
    "price_defect",
    "quote_defect",
    "stale_reason",
]

ZERO = Decimal(0)

REASON_NO_ASK = "no ask (ask is 0 or below): the quote is not usable"
REASON_NEGATIVE_BID = "bid below 0: the quote is not usable"
REASON_CROSSED = "crossed quote (bid above ask): the quote is not usable"
REASON_CLOSED = "market closed: waiting for a quote inside the regular session"
REASON_NOT_AFTER_ACCEPTANCE = "quote not after the order's acceptance"
REASON_NO_BID = "no bid (bid is 0): a market sell waits for a bid"
REASON_NO_SIZE = "no displayed size on the quote's side"
REASON_NO_QUOTE = "no quote yet"


def stale_reason(max_age: timedelta) -> str:
    return f"stale quote (older than {max_age.total_seconds():g} s)"


def price_defect(quote: Quote) -> str | None:
    """Why the quote's prices are unusable (ask > 0, bid >= 0, bid <= ask), or None.

    A locked quote (bid == ask) is valid; a zero bid is valid (options with no bid).
    """
    if quote.ask <= ZERO:
        return REASON_NO_ASK
    if quote.bid < ZERO:
        return REASON_NEGATIVE_BID
    if quote.bid > quote.ask:
        return REASON_CROSSED
    return None


class SessionGate:
    """`MarketCalendar.is_open` with the current open-or-closed window cached.

    A timestamp inside the cached window costs two comparisons; leaving it costs one bisect.
    """

    __slots__ = ("_calendar", "lo", "hi", "open")

    def __init__(self, calendar: MarketCalendar) -> None:
        self._calendar = calendar
        self.lo, self.hi, self.open = calendar.session_window(datetime(2000, 1, 1, tzinfo=UTC))

    def is_open(self, ts: datetime) -> bool:
        if not (self.lo <= ts < self.hi):
            self.lo, self.hi, self.open = self._calendar.session_window(ts)
        return self.open


def quote_defect(
    quote: Quote | None,
    accepted_at: datetime,
    now: datetime,
    max_age: timedelta,
    gate: SessionGate,
) -> str | None:
    """Every rule-1 check of one quote for one order evaluated at ``now``; None if usable."""
    if quote is None:
        return REASON_NO_QUOTE
    defect = price_defect(quote)
    if defect is not None:
        return defect
    if quote.ts <= accepted_at:
        return REASON_NOT_AFTER_ACCEPTANCE
    if now - quote.ts > max_age:
        return stale_reason(max_age)
    if not gate.is_open(now):
        return REASON_CLOSED
    return None
