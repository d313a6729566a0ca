"""Per-user request limits shared by every service and replica: a sliding-window counter on
NATS JetStream counters.

Why not a library: `limits` and `pyrate-limiter` implement the algorithms well but keep their
shared state in Redis, Memcached, MongoDB or (pyrate) a PostgreSQL table; MBT runs none of the
first three and no service may read another's tables. JetStream's distributed counters
(ADR-49, ``Nats-Incr``; nats-server >= 2.12) give an atomic, replicated increment whose
acknowledgement carries the new total, which is all a sliding-window counter needs.

The algorithm (Cloudflare's sliding-window counter): a window of ``period`` seconds is counted
per key in a counter subject ``mbt.ratelimit.<key>.<window index>``; the rate seen at time t
is ``previous × (1 − elapsed/period) + current``. A request is allowed while that is at most the
limit. It is exact for the 61st request of a Free user within one window and never lets
a steady client above the limit.

Speed: far from the limit a process decides from its own view (the last total JetStream
acknowledged plus its own increments still in flight) and sends the increment without waiting,
with at most ``max(1, limit / 50)`` such increments unacknowledged per key, and only while its
view is under a second old (a key's first request in a window always waits); within
``sync_margin`` of the limit every decision waits for the acknowledged global total. Each
acknowledgement refreshes the process's view, so across N processes a key can pass its limit
by at most N x max(1, limit / 50) requests, and never in steady state. Refused requests are
not counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from services.platform.bus import Bus

__all__ = [
    "IP_LIMIT_PER_MINUTE",
    "default_limits",
    "parse_tier_limits",
    "RATELIMIT_STREAM",
    "TIER_LIMITS",
    "Decision",
    "RateLimiter",
    "sliding_estimate",
]

log = logging.getLogger("mbt.ratelimit")

TIER_LIMITS = {"free": 60, "pro": 600, "pro_plus": 3000}
IP_LIMIT_PER_MINUTE = 300  # per client address: health, metrics, the login ceremony
ADDRESS = "ip"  # the limit key for calls with no credential
PERIOD_S = 60
SUBJECT_PREFIX = "mbt.ratelimit"
RATELIMIT_STREAM = StreamConfig(
    name="MBT_RATELIMIT",
    subjects=[f"{SUBJECT_PREFIX}.>"],
    storage=StorageType.MEMORY,
    allow_msg_counter=True,
    max_age=3.0 * PERIOD_S,  # a window is needed until the one after it ends
)


def default_limits() -> dict[str, int]:
    return {**TIER_LIMITS, ADDRESS: IP_LIMIT_PER_MINUTE}


def parse_tier_limits(raw: str) -> dict[str, int]:
    """``free=60,pro=600,pro_plus=3000,ip=300`` (any subset) over the defaults."""
    limits = default_limits()
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        tier, _, n = part.partition("=")
        if tier.strip() not in limits or not n.strip().isdigit() or int(n) < 1:
            raise ValueError(f"not a tier limit: {part!r} (e.g. pro=600)")
        limits[tier.strip()] = int(n)
    return limits


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the current window ends
    retry_after_s: int  # when refused: seconds until a request would be allowed


def sliding_estimate(previous: int, current: int, elapsed: float, period: float) -> float:
    """The request rate over the last ``period`` seconds, as the sliding-window counter sees it."""
    return previous * max(0.0, 1.0 - elapsed / period) + current


def retry_after(previous: int, current: int, elapsed: float, period: float, limit: int) -> float:
    """Seconds until one more request fits (``estimate + 1 <= limit``), assuming no others."""
    room = limit - 1 - current
    if room >= 0 and previous > 0:
        # previous × (1 − (elapsed + t)/period) <= room
        t = period * (1.0 - room / previous) - elapsed
        if t <= period - elapsed:
            return max(t, 0.0)
    elif room >= 0:
        return 0.0
    # not within this window: next window, where `current` becomes `previous`
    until_next = period - elapsed
    if current <= limit - 1:
        return until_next
    return until_next + period * (1.0 - (limit - 1) / current)


@dataclass
class _KeyState:
    window: int = -1
    known: int = 0  # the highest global total acknowledged for this window
    in_flight: int = 0  # our increments sent and not yet acknowledged
    previous: int = 0  # the previous window's total (as last seen)
    acked_at: float = -1.0  # when an acknowledgement last refreshed `known` in this window
    unsent: int = 0  # counted here, not yet sent to the shared counter (part of `in_flight`)
    flushing: bool = False  # an increment of the shared counter is on its way


@dataclass
class RateLimiter:
    """Shared limits over a `Bus`; without a bus (or when it fails) limits are per process."""

    bus: Bus | None
    tier_limits: dict[str, int] = field(default_factory=default_limits)
    period: float = PERIOD_S
    sync_margin: float = 0.2  # wait for the global total within 20% of the limit
    max_view_age: float = 1.0  # decide locally only on a total acknowledged this recently
    clock: Callable[[], float] = time.time
    _keys: dict[str, _KeyState] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def limit_for(self, tier: str) -> int:
        """Requests per period for a tier (an unknown tier gets Free's)."""
        return self.tier_limits.get(tier, self.tier_limits.get("free", TIER_LIMITS["free"]))

    @property
    def address_limit(self) -> int:
        """Requests per period per client address, for calls with no credential."""
        return self.tier_limits.get(ADDRESS, IP_LIMIT_PER_MINUTE)

    @staticmethod
    async def ensure_stream(bus: Bus) -> None:
        await bus.ensure_stream(RATELIMIT_STREAM)

    def _state(self, key: str, window: int) -> _KeyState:
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = _KeyState(window=window)
        elif st.window != window:
            st.previous = st.known if st.window == window - 1 else 0
            st.window, st.known, st.in_flight, st.acked_at = window, 0, 0, -1.0
            st.unsent = 0
        if len(self._keys) > 100_000:  # forget idle keys
            for k in [k for k, s in self._keys.items() if s.window < window - 1]:
                del self._keys[k]
        return st

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load_previous(self, key: str, st: _KeyState, window: int) -> None:
        """A process seeing a key for the first time learns the previous window's total."""
        assert self.bus is not None
        for w, attr in ((window - 1, "previous"), (window, "known")):
            try:
                msg = await self.bus.js.get_last_msg(
                    RATELIMIT_STREAM.name or "", f"{SUBJECT_PREFIX}.{key}.{w}"
                )
            except NotFoundError:
                continue
            except Exception as exc:
                log.debug("rate-limit window %s unavailable: %s", w, exc)
                continue
            total = _counter_value(msg.data or b"")
            if st.window == window:
                setattr(st, attr, max(getattr(st, attr), total))

    async def _increment(self, key: str, window: int, delta: int) -> int | None:
        """Add ``delta`` to the window's shared counter; the new global total, or None."""
        if self.bus is None:
            return None
        try:
            ack = await self.bus.js.publish(
                f"{SUBJECT_PREFIX}.{key}.{window}",
                b"",
                headers={"Nats-Incr": str(delta)},
                timeout=0.5,
            )
        except Exception as exc:  # the bus is away: fall back to this process's own count
            log.warning("rate-limit counter unavailable (%s); limiting per process", exc)
            return None
        return int(ack.val) if ack.val is not None else None

    async def _flush(self, key: str, st: _KeyState, window: int) -> None:
        """Send what was counted here to the shared counter, one increment at a time: the
        requests counted while one is on its way go out together in the next (one JetStream
        publish per round trip, not one per request)."""
        try:
            while st.unsent and st.window == window:
                delta, st.unsent = st.unsent, 0
                total = await self._increment(key, window, delta)
                if st.window != window:  # rolled over meanwhile: the new window starts afresh
                    return
                st.in_flight = max(0, st.in_flight - delta)
                if total is not None:
                    st.known = max(st.known, total)
                    st.acked_at = self.clock()
                else:
                    st.known += delta
        finally:
            st.flushing = False
            if st.unsent:  # counted in a window that began while this one was being sent
                st.flushing = True
                self._spawn(self._flush(key, st, st.window))

    async def hit(self, key: str, limit: int) -> Decision:
        """Count one request for ``key`` (a subject token) against ``limit`` per period."""
        now = self.clock()
        window = int(now // self.period)
        elapsed = now - window * self.period
        if key not in self._keys and self.bus is not None:
            # first sight of this key in this process: learn the shared totals first
            await self._load_previous(key, self._state(key, window), window)
        st = self._state(key, window)
        reset_s = math.ceil(self.period - elapsed)
        local = st.known + st.in_flight + 1
        near = sliding_estimate(st.previous, local, elapsed, self.period) > limit * (
            1 - self.sync_margin
        )
        fresh = st.acked_at >= 0 and now - st.acked_at < self.max_view_age
        if near or not fresh or st.in_flight >= max(1, limit // 50):
            # near the limit: decide on the acknowledged global total
            total = await self._increment(key, window, 1)
            if st.window != window:  # the window rolled over while we waited
                return await self.hit(key, limit)
            current = total if total is not None else st.known + st.in_flight + 1
            estimate = sliding_estimate(st.previous, current, elapsed, self.period)
            if estimate > limit:
                if total is not None:
                    self._spawn(self._increment(key, window, -1))  # refused: not counted
                wait = retry_after(st.previous, current - 1, elapsed, self.period, limit)
                st.known = max(st.known, current - 1)
                if total is not None:
                    st.acked_at = self.clock()
                return Decision(False, limit, 0, reset_s, max(1, math.ceil(wait)))
            st.known = max(st.known, current)
            if total is not None:
                st.acked_at = self.clock()
            remaining = max(0, math.floor(limit - estimate))
            return Decision(True, limit, remaining, reset_s, 0)
        st.in_flight += 1
        st.unsent += 1
        if not st.flushing:
            st.flushing = True
            self._spawn(self._flush(key, st, window))
        remaining = max(
            0, math.floor(limit - sliding_estimate(st.previous, local, elapsed, self.period))
        )
        return Decision(True, limit, remaining, reset_s, 0)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _counter_value(data: bytes) -> int:
    import json

    try:
        return int(json.loads(data or b"{}").get("val", 0))
    except (ValueError, TypeError, AttributeError):
        return 0
