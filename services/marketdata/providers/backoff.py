"""Reconnect pacing for live streams: capped exponential backoff with bounded jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["ReconnectBackoff"]

# 2**64 × any sane initial delay is far past any cap; stops float overflow on long outages.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class ReconnectBackoff:
    """Delay before reconnect attempt ``n`` (1-based) after a stream drops or fails to connect.

    ``min(cap, initial × factor**(n-1))`` scaled by a random factor in ``[1 - jitter, 1]``, so
    many clients dropped together do not reconnect in step. Pass a seeded ``rng`` for a
    reproducible sequence.
    """

    initial: float = 1.0
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError("backoff needs 0 < initial <= cap")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter <= 1")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay of ``attempt``: the most it can wait."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        return min(self.cap, self.initial * self.factor ** min(attempt - 1, _MAX_EXPONENT))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before ``attempt``, in ``[(1 - jitter) × ceiling, ceiling]``."""
        return self.ceiling(attempt) * (1 - self.jitter * self.rng.random())
