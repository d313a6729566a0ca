"""Recent quotes per symbol, and what each tier may see of them.

Tier gating lives here, at the market-data boundary: a Free caller sees the market as it was
15 minutes ago (on the market clock) by every route, latest quote and stream alike; Pro and
Pro+ see it in real time. Services (the matching engine) always see real time.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import datetime, timedelta

from services.conventions.quote import Quote

FREE_DELAY = timedelta(minutes=15)
TIER_DELAY: dict[str, timedelta] = {
    "free": FREE_DELAY,
    "pro": timedelta(0),
    "pro_plus": timedelta(0),
    "service": timedelta(0),
}
KEEP = timedelta(hours=8)


def delay_for(tier: str) -> timedelta:
    """Unknown tiers get the most restrictive view."""
    return TIER_DELAY.get(tier, FREE_DELAY)


class QuoteBook:
    """Per-symbol quotes in time order (what the feed published), trimmed to `keep`."""

    def __init__(self, keep: timedelta = KEEP) -> None:
        self.keep = keep
        self._ts: dict[str, list[datetime]] = defaultdict(list)
        self._quotes: dict[str, list[Quote]] = defaultdict(list)

    def add(self, q: Quote) -> None:
        ts, qs = self._ts[q.symbol], self._quotes[q.symbol]
        if ts and q.ts < ts[-1]:
            return  # never let time run backwards in the book
        ts.append(q.ts)
        qs.append(q)
        if len(ts) > 4096 and ts[0] < q.ts - self.keep:
            cut = bisect.bisect_left(ts, q.ts - self.keep)
            del ts[:cut]
            del qs[:cut]

    def latest(self, symbol: str, as_of: datetime) -> Quote | None:
        """The last quote stamped at or before `as_of`."""
        ts = self._ts.get(symbol)
        if not ts:
            return None
        i = bisect.bisect_right(ts, as_of)
        return self._quotes[symbol][i - 1] if i else None

    def between(self, symbol: str, start: datetime, end: datetime) -> list[Quote]:
        """Quotes with start <= ts < end, oldest first."""
        ts = self._ts.get(symbol, [])
        lo, hi = bisect.bisect_left(ts, start), bisect.bisect_left(ts, end)
        return self._quotes[symbol][lo:hi]

    def oldest(self, symbol: str) -> datetime | None:
        ts = self._ts.get(symbol)
        return ts[0] if ts else None
