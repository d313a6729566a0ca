"""Transactional outbox: events are rows written with the state change, relayed to JetStream.

The relay publishes unpublished rows in order with `Nats-Msg-Id = row id`, and marks them
published only after the PubAck; a crash in between re-publishes, and JetStream's duplicate
window absorbs it. One relay per service keeps per-account order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

import nats
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.platform.bus import Bus

log = logging.getLogger("mbt.outbox")


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(), primary_key=True),
        Column("msg_id", String(80), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index("outbox_unpublished", "seq", postgresql_where="published_at IS NULL"),
    )


class Outbox:
    """Writes events inside a transaction and relays them to the bus afterwards."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._wake = asyncio.Event()

    async def write(self, conn: AsyncConnection, rows: Sequence[tuple[str, bytes, str]]) -> None:
        await conn.execute(
            self.table.insert(),
            [{"subject": s, "payload": p, "msg_id": m or uuid.uuid4().hex} for s, p, m in rows],
        )

    def wake(self) -> None:
        self._wake.set()

    async def relay_forever(self, engine: AsyncEngine, bus: Bus, poll_s: float = 0.5) -> None:
        """Publish unpublished rows, oldest first; wake on commit or every `poll_s`."""
        while True:
            try:
                sent = await self.relay_once(engine, bus)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                # the bus is down: rows stay unpublished and go out when it returns
                log.warning("outbox relay cannot publish (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if sent == 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=poll_s)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def relay_once(self, engine: AsyncEngine, bus: Bus, batch: int = 200) -> int:
        t = self.table
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(t.c.seq, t.c.msg_id, t.c.subject, t.c.payload)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.seq)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            # pipelined: written to the connection in order (JetStream keeps that order), acks
            # awaited together - one round trip per batch instead of one per row
            await asyncio.gather(
                *(bus.js_publish(row.subject, row.payload, msg_id=row.msg_id) for row in rows)
            )
            await conn.execute(
                update(t).where(t.c.seq.in_([r.seq for r in rows])).values(published_at=func.now())
            )
        return len(rows)
