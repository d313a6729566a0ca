"""Quote hygiene: drop quotes no fill could ever use before they reach the bus.

Rules (brief §4.1): ask > 0; bid >= 0 (0 means "no bid", legal for options); bid <= ask (a locked
quote, bid == ask, passes: real markets lock now and then); and per symbol the timestamps never go
backwards (equal timestamps pass: the feed sends several changes within one millisecond).
Staleness and session checks depend on the consumer's clock, so they live with the consumer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Final

from services.conventions.quote import Quote

__all__ = [
    "ASK_NOT_POSITIVE",
    "BID_NEGATIVE",
    "CROSSED",
    "REASONS",
    "TS_BACKWARDS",
    "QuoteFilter",
]

ASK_NOT_POSITIVE: Final = "ask_not_positive"
BID_NEGATIVE: Final = "bid_negative"
CROSSED: Final = "crossed"
TS_BACKWARDS: Final = "ts_backwards"
REASONS: Final = (ASK_NOT_POSITIVE, BID_NEGATIVE, CROSSED, TS_BACKWARDS)


class QuoteFilter:
    """Stateful per-stream filter; ``counts`` tallies rejections by reason (all reasons present)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.accepted = 0
        self._last_ts: dict[str, datetime] = {}

    def check(self, quote: Quote) -> str | None:
        """The rejection reason for ``quote``, or None if it is accepted (and then remembered).

        Rejected quotes do not move the symbol's last timestamp.
        """
        reason = self._reason(quote)
        if reason is None:
            self._last_ts[quote.symbol] = quote.ts
            self.accepted += 1
        else:
            self.counts[reason] += 1
        return reason

    def _reason(self, q: Quote) -> str | None:
        if q.ask <= 0:
            return ASK_NOT_POSITIVE
        if q.bid < 0:
            return BID_NEGATIVE
        if q.bid > q.ask:
            return CROSSED
        last = self._last_ts.get(q.symbol)
        if last is not None and q.ts < last:
            return TS_BACKWARDS
        return None

    def filter(self, quotes: Iterable[Quote]) -> Iterator[Quote]:
        """Yield only the accepted quotes, counting the rest."""
        for q in quotes:
            if self.check(q) is None:
                yield q

    @property
    def rejected(self) -> int:
        return sum(self.counts.values())

    def last_ts(self, symbol: str) -> datetime | None:
        return self._last_ts.get(symbol)
