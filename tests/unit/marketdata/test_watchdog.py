from __future__ import annotations

from services.marketdata.watchdog import FeedWatchdog


def test_goes_stale_only_while_open_and_recovers_on_the_next_quote() -> None:
    w = FeedWatchdog(stale_after_s=10)
    assert w.check(0.0, market_open=True) is False  # no quote seen yet: nothing to judge
    w.on_quote(100.0)
    assert w.check(109.0, market_open=True) is False
    assert w.check(111.0, market_open=False) is False  # a closed market is quiet, not stale
    assert w.check(111.0, market_open=True) is True
    assert w.stale and "no quotes for 11 s" in w.reason
    assert w.check(120.0, market_open=True) is False  # reported once
    assert w.on_quote(121.0) is True and not w.stale
    assert w.on_quote(122.0) is False
