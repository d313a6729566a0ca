"""Never silently stale: notice when the feed stops while the market is open, and when it returns.

Pure state machine over (wall time of the last quote, now, market open?); the service turns its
transitions into a health status and a `mbt.marketdata.status` event.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FeedWatchdog:
    stale_after_s: float = 10.0
    last_quote_at: float | None = None
    stale: bool = False
    reason: str = ""

    def on_quote(self, wall: float) -> bool:
        """Record a quote; True when this ends a stale period."""
        self.last_quote_at = wall
        if self.stale:
            self.stale, self.reason = False, ""
            return True
        return False

    def check(self, wall: float, market_open: bool) -> bool:
        """True when the feed has just gone stale."""
        if self.stale or not market_open:
            return False
        silent = wall - (self.last_quote_at if self.last_quote_at is not None else wall)
        if self.last_quote_at is not None and silent > self.stale_after_s:
            self.stale = True
            self.reason = f"no quotes for {silent:.0f} s while the market is open"
            return True
        return False
