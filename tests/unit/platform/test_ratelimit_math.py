"""The sliding-window counter's arithmetic (pure), and the per-process fallback."""

from __future__ import annotations

import pytest

from services.platform.ratelimit import (
    RateLimiter,
    parse_tier_limits,
    retry_after,
    sliding_estimate,
)

pytestmark = pytest.mark.anyio


def test_estimate_weights_the_previous_window_by_what_is_left_of_it() -> None:
    # 40 last minute, 10 so far, 15 s into this one: 40 x 45/60 + 10 = 40
    assert sliding_estimate(40, 10, 15, 60) == 40
    assert sliding_estimate(40, 10, 60, 60) == 10
    assert sliding_estimate(0, 61, 0, 60) == 61


def test_retry_after_is_when_one_more_request_fits() -> None:
    # limit 60, 60 this window, none before: next window, then 60 x (1 - t/60) + 1 <= 60
    # -> t >= 1 s; 30 s into this window: 30 + 1 = 31 s
    assert retry_after(0, 60, 30, 60, 60) == pytest.approx(31)
    # 59 this window leaves room for exactly one: no wait
    assert retry_after(0, 59, 30, 60, 60) == 0
    # previous 60, current 0, 10 s in: 60 x (1 - (10 + t)/60) <= 59 -> t >= 1 - 10 + ... = 0
    assert retry_after(60, 0, 10, 60, 60) == 0
    # previous 120, current 0, at the start: 120 x (1 - t/60) <= 59 -> t >= 30.5
    assert retry_after(120, 0, 0, 60, 60) == pytest.approx(30.5)


def test_tier_limits_from_settings() -> None:
    assert parse_tier_limits("") == {"free": 60, "pro": 600, "pro_plus": 3000, "ip": 300}
    assert parse_tier_limits("pro=900, ip=50")["pro"] == 900
    for bad in ("gold=5", "pro=0", "pro=x"):
        with pytest.raises(ValueError, match="not a tier limit"):
            parse_tier_limits(bad)


async def test_without_a_bus_the_limit_holds_per_process() -> None:
    now = [120.0]
    lim = RateLimiter(bus=None, clock=lambda: now[0])
    decisions = [await lim.hit("u_a", 60) for _ in range(61)]
    assert [d.allowed for d in decisions] == [True] * 60 + [False]
    assert decisions[59].remaining == 0 and decisions[0].remaining == 59
    assert decisions[60].retry_after_s == 61  # a whole window, then the 1 s decay
    # another key is independent
    assert (await lim.hit("u_b", 60)).allowed
    # 30 s into the next minute the old window weighs 60 x (1 - 30/60) = 30: 30 more fit
    now[0] = 210.0
    more = [await lim.hit("u_a", 60) for _ in range(31)]
    assert [d.allowed for d in more] == [True] * 30 + [False]
