"""Applies fill and order events from JetStream, exactly once, acking after the commit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

from nats.aio.msg import Msg
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from raxx.mbt.v1 import events_pb2
from services.accounts import handlers
from services.accounts.adapters.tables import accounts
from services.accounts.ledger_batch import FillApplied, apply_fills
from services.platform.bus import ENDS_WITHOUT_FILL
from services.platform.wire import ts_from_wire

log = logging.getLogger("mbt.accounts.consumer")
# an order event on the ledger's subjects (services.platform.bus) whose order ended without
# (more) fills releases its hold; any other is acknowledged and ignored
DONE_WITHOUT_FILL = ENDS_WITHOUT_FILL


class TradeEventConsumer:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.applied = 0

    async def handle_batch(self, msgs: list[Msg]) -> None:
        """Apply a fetched batch in one transaction (one commit), then ack every message.

        If anything in the batch fails, fall back to one transaction per message, so one bad
        event cannot hold the others back. Acks only follow the commit: a crash before it
        redelivers the batch, and the inbox makes the second application a no-op.
        """
        changes = [_changes_ledger(m) for m in msgs]
        work = [m for m, c in zip(msgs, changes, strict=True) if c]
        try:
            outcomes: Iterator[str] = iter(())
            if work:  # an order accepted or working changes nothing here: no transaction
                async with self.engine.begin() as conn:
                    outcomes = iter(await self._apply_many(conn, work))
        except Exception:
            log.warning("batch of %d failed; applying one by one", len(work), exc_info=True)
            for msg, c in zip(msgs, changes, strict=True):
                await (self.handle(msg) if c else msg.ack())
            return
        for msg, c in zip(msgs, changes, strict=True):
            await msg.ack()
            self._count(next(outcomes) if c else "ignored", msg)

    async def handle(self, msg: Msg) -> None:
        async with self.engine.begin() as conn:
            (outcome,) = await self._apply_many(conn, [msg])
        await msg.ack()
        self._count(outcome, msg)

    def _count(self, outcome: str, msg: Msg) -> None:
        if outcome == "applied":
            self.applied += 1
        elif outcome == "parked":
            log.warning("parked event on %s: unknown account", msg.subject)

    async def _apply_many(self, conn: AsyncConnection, msgs: list[Msg]) -> list[str]:
        """Fills are applied together (set-based); an order event first flushes the fills
        before it, so a hold is released only after the fills that used it."""
        outcomes: list[str] = [""] * len(msgs)
        pending: list[tuple[int, tuple[str, FillApplied]]] = []
        await _lock_accounts(conn, msgs)

        async def flush() -> None:
            results = await apply_fills(conn, [item for _, item in pending])
            for (i, _), r in zip(pending, results, strict=True):
                outcomes[i] = r
            pending.clear()

        for i, msg in enumerate(msgs):
            headers = msg.headers or {}
            event_id = headers.get("Nats-Msg-Id") or f"{msg.subject}:{msg.metadata.sequence.stream}"
            if msg.subject.startswith("mbt.fills."):
                pending.append((i, (event_id, fill_from_event(msg.data))))
                continue
            await flush()
            oe = events_pb2.OrderEvent.FromString(msg.data)
            outcomes[i] = "ignored"
            if oe.order.status in DONE_WITHOUT_FILL:
                outcomes[i] = await handlers.apply_order_done(conn, event_id, oe.order.id)
        await flush()
        return outcomes


def _changes_ledger(msg: Msg) -> bool:
    """A fill, or an order done without (more) fills: its hold is released."""
    if msg.subject.startswith("mbt.fills."):
        return True
    return events_pb2.OrderEvent.FromString(msg.data).order.status in DONE_WITHOUT_FILL


async def _lock_accounts(conn: AsyncConnection, msgs: list[Msg]) -> None:
    """Lock every account the batch touches, in id order, before anything else: each
    transaction that writes several accounts (holds keep a total on their account's row) takes
    their locks in one order, so two of them cannot deadlock."""
    users: set[str] = set()
    ids: set[str] = set()
    for msg in msgs:
        if msg.subject.startswith("mbt.fills."):
            users.add(events_pb2.FillEvent.FromString(msg.data).user_id)
        else:
            ids.add(events_pb2.OrderEvent.FromString(msg.data).order.account_id)
    if len(users) + len(ids) > 1:
        await conn.execute(
            select(accounts.c.id)
            .where(or_(accounts.c.user_id.in_(sorted(users)), accounts.c.id.in_(sorted(ids))))
            .order_by(accounts.c.id)
            .with_for_update()
        )


def fill_from_event(data: bytes) -> FillApplied:
    ev = events_pb2.FillEvent.FromString(data)
    f = ev.fill
    return FillApplied(
        execution_id=f.id,
        order_id=f.order_id,
        user_id=ev.user_id,
        symbol=f.symbol,
        side=f.side,
        qty=Decimal(f.qty),
        price=Decimal(f.price),
        filled_at=ts_from_wire(f.filled_at),
        order_status=ev.order.status,
        explanation=f.explanation,
    )
