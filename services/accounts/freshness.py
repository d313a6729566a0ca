"""Reads of an account that see its newest fill: wait for the ledger to apply what JetStream has.

The ledger applies an account's fills and order ends a moment after orders commits them. A
strategy that sees its order filled and reads its positions (or `DELETE /v2/positions`, which
sells what the read finds) must see that fill. Before an account's balances, positions or
activities are read, the newest event on each of its ledger subjects is looked up in the stream (two
last-message requests), and the read waits until the ledger's inbox (`applied_events`) has
both, for at most `WAIT_S`; then it reads what is there, and later reads do not wait for those
events again.

What this does not cover: an event orders has committed but its outbox relay has not published
yet (the relay publishes on the commit, so that is a millisecond or two).
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats.js.errors
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts.adapters.tables import applied_events
from services.platform.bus import FILLS_SUBJECT, ORDERS_SUBJECT, Bus
from services.platform.metrics import LEDGER_READ_WAITS

log = logging.getLogger("mbt.accounts.freshness")
WAIT_S = 2.0
POLL_S = (0.002, 0.05)  # the first poll's delay, doubling up to the second
ASK_S = 0.5  # at most this long for the stream's answer (a reconnecting client buffers)
MAX_GIVEN_UP = 10_000


class LedgerFreshness:
    def __init__(
        self,
        engine: AsyncEngine,
        bus: Bus,
        stream: str,
        subjects: tuple[str, ...] = (FILLS_SUBJECT, ORDERS_SUBJECT),
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.stream = stream
        self.subjects = subjects
        # per account, the events a read waited for in vain (the ledger is stuck on them): the
        # next reads do not wait for them again (bounded; forgotten all at once when full)
        self._given_up: dict[str, tuple[str, ...]] = {}

    async def _newest(self, subject: str) -> str | None:
        try:
            msg = await self.bus.js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        return (msg.headers or {}).get("Nats-Msg-Id")

    async def wait(self, account_id: str) -> bool:
        """Until the ledger has applied the account's newest fill and order end (or WAIT_S);
        whether it was behind when asked (what was read before is out of date)."""
        try:
            newest = await asyncio.wait_for(
                asyncio.gather(*(self._newest(f"{s}.{account_id}") for s in self.subjects)),
                ASK_S,
            )
        except (nats.errors.Error, TimeoutError) as exc:  # the bus is down: read what is here
            log.warning("cannot ask the stream for the newest events (%s)", exc)
            LEDGER_READ_WAITS.labels("unknown").inc()
            return False
        ids = tuple(i for i in newest if i)
        if not ids or self._given_up.get(account_id) == ids:
            return False
        deadline = time.monotonic() + WAIT_S
        waited = False
        delay, most = POLL_S
        while True:
            async with self.engine.connect() as conn:
                applied = (
                    await conn.execute(
                        select(func.count()).where(applied_events.c.event_id.in_(list(ids)))
                    )
                ).scalar_one()
            if applied == len(ids):
                if waited:
                    LEDGER_READ_WAITS.labels("waited").inc()
                return waited
            if time.monotonic() >= deadline:
                LEDGER_READ_WAITS.labels("gave_up").inc()
                if len(self._given_up) >= MAX_GIVEN_UP:
                    self._given_up.clear()
                self._given_up[account_id] = ids
                return True
            waited = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)
