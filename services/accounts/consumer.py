"""Applies fill and order events from JetStream, exactly once, acking after the commit."""

from __future__ import annotations

import logging
from decimal import Decimal

from nats.aio.msg import Msg
from raxx.mbt.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import handlers
from services.platform.wire import ts_from_wire

log = logging.getLogger("mbt.accounts.consumer")
DONE_WITHOUT_FILL = {"canceled", "expired", "rejected", "replaced"}


class TradeEventConsumer:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.applied = 0

    async def handle(self, msg: Msg) -> None:
        event_id = (msg.headers or {}).get(
            "Nats-Msg-Id"
        ) or f"{msg.subject}:{msg.metadata.sequence.stream}"
        async with self.engine.begin() as conn:
            if msg.subject.startswith("mbt.fills."):
                ev = events_pb2.FillEvent.FromString(msg.data)
                f = ev.fill
                outcome = await handlers.apply_fill_event(
                    conn,
                    event_id,
                    handlers.FillApplied(
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
                    ),
                )
            else:
                oe = events_pb2.OrderEvent.FromString(msg.data)
                outcome = "ignored"
                if oe.order.status in DONE_WITHOUT_FILL:
                    outcome = await handlers.apply_order_done(conn, event_id, oe.order.id)
        await msg.ack()
        if outcome == "applied":
            self.applied += 1
        elif outcome == "parked":
            log.warning("parked event %s on %s: unknown account", event_id, msg.subject)
