"""The rate limiter on real NATS JetStream counters, shared by several processes' limiters."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from services.platform.bus import Bus
from services.platform.ratelimit import RateLimiter

pytestmark = pytest.mark.anyio


async def test_two_replicas_share_one_limit(nats_server) -> None:  # type: ignore[no-untyped-def]
    buses = [await Bus.connect(nats_server.url, name=f"rl-{i}") for i in range(2)]
    try:
        await RateLimiter.ensure_stream(buses[0])
        a, b = (RateLimiter(bus) for bus in buses)
        key = f"u_{uuid.uuid4().hex}"
        # sequential, alternating replicas: exactly 60 allowed, the 61st refused wherever it lands
        results = []
        for i in range(70):
            results.append((await (a if i % 2 else b).hit(key, 60)).allowed)
        assert results == [True] * 60 + [False] * 10
        await a.close()
        await b.close()
    finally:
        for bus in buses:
            await bus.close()


async def test_concurrent_bursts_on_two_replicas_stay_within_the_documented_bound(
    nats_server,  # type: ignore[no-untyped-def]
) -> None:
    buses = [await Bus.connect(nats_server.url, name=f"rlc-{i}") for i in range(2)]
    try:
        await RateLimiter.ensure_stream(buses[0])
        a, b = (RateLimiter(bus) for bus in buses)
        key = f"u_{uuid.uuid4().hex}"
        if time.time() % 60 > 50:  # keep the burst inside one window
            await asyncio.sleep(61 - time.time() % 60)
        burst = await asyncio.gather(*[(a if i % 2 else b).hit(key, 600) for i in range(800)])
        allowed = sum(d.allowed for d in burst)
        # at most N replicas x max(1, 600 / 50) beyond the limit, never fewer than the limit
        assert 600 <= allowed <= 600 + 2 * 12, allowed
        await asyncio.sleep(0.2)  # the refusals' decrements land
        # refused requests are not counted: the shared total is what was allowed
        window = int(time.time() // 60)
        msg = await buses[0].js.get_last_msg("MBT_RATELIMIT", f"mbt.ratelimit.{key}.{window}")
        assert int(json.loads(msg.data)["val"]) == allowed
        await a.close()
        await b.close()
    finally:
        for bus in buses:
            await bus.close()
