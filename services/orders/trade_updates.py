"""Trade updates at the source: the order and fill events orders commits through its outbox,
read back from JetStream per account and shaped as Alpaca's trade_updates.

The sequence is the event's JetStream stream sequence: it only grows, it is the same on every
replica, and a subscriber that comes back with the last one it saw is served from exactly the
next event of its account (the stream keeps 30 days), so nothing is missed or repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from raxx.mbt.v1 import events_pb2
from raxx.mbt.v1 import orders_service_pb2 as pb
from services.platform.bus import TRADES_STREAM, Bus, subject_token

__all__ = [
    "ALPACA_EVENT",
    "TradeUpdateSubscription",
    "to_trade_update",
]

# our OrderEvent names -> Alpaca's trade_updates events (fills are "fill" / "partial_fill")
ALPACA_EVENT = {
    "accepted": "new",
    "rejected": "rejected",
    "canceled": "canceled",
    "expired": "expired",
    "replaced": "replaced",
}
MAX_BUFFERED = 10_000


def to_trade_update(subject: str, data: bytes, sequence: int) -> pb.TradeUpdate | None:
    """One outbox event as a trade update; None for events that are not one."""
    if subject.startswith("mbt.fills."):
        fe = events_pb2.FillEvent.FromString(data)
        return pb.TradeUpdate(
            sequence=sequence,
            event="fill" if fe.order.status == "filled" else "partial_fill",
            order=fe.order,
            timestamp=fe.fill.filled_at,
            execution_id=fe.fill.id,
            price=fe.fill.price,
            qty=fe.fill.qty,
            position_qty=fe.position_qty,
            fill=fe.fill,
            recorded_at=fe.recorded_at,
        )
    oe = events_pb2.OrderEvent.FromString(data)
    event = ALPACA_EVENT.get(oe.event)
    if event is None:
        return None
    return pb.TradeUpdate(
        sequence=sequence,
        event=event,
        order=oe.order,
        timestamp=oe.timestamp,
        recorded_at=oe.timestamp,
    )


class TradeUpdateSubscription:
    """An account's trade updates after a sequence, subscribed on `open` (so a caller can say
    "listening" before it hands out the first update)."""

    def __init__(self, bus: Bus, account_id: str, after_sequence: int | None) -> None:
        self._bus = bus
        self._subject = f"mbt.*.{subject_token(account_id)}"
        self._after = after_sequence
        self._queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=MAX_BUFFERED)
        self._sub: Any = None

    async def open(self) -> None:
        async def on_msg(msg: Msg) -> None:
            await self._queue.put(msg)

        if self._after is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._after + 1
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        self._sub = await self._bus.js.subscribe(
            self._subject,
            stream=TRADES_STREAM.name,
            cb=on_msg,
            ordered_consumer=True,
            config=config,
        )

    async def updates(self) -> AsyncIterator[pb.TradeUpdate]:
        """Every update, forever (until the caller stops iterating; then `close`)."""
        while True:
            msg = await self._queue.get()
            update = to_trade_update(msg.subject, msg.data, msg.metadata.sequence.stream)
            if update is not None:
                yield update

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
