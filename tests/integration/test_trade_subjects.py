"""Trade events' subjects on real JetStream: the ledger's durable consumer is sent fills and the
order events it acts on, not every order update, and an existing durable with the old filter
(`mbt.>`) is moved to the new ones in place, keeping its position."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, StreamConfig

from services.platform.bus import (
    LEDGER_SUBJECTS,
    TRADES_STREAM,
    Bus,
    order_subject,
    trade_subjects,
)

pytestmark = pytest.mark.anyio


def test_an_order_event_s_subject_follows_what_the_ledger_does_with_it() -> None:
    assert order_subject("accepted", "a1") == "mbt.updates.a1"
    assert order_subject("partially_filled", "a1") == "mbt.updates.a1"
    assert order_subject("filled", "a1") == "mbt.updates.a1"  # the fills carry the money
    for ended in ("canceled", "expired", "rejected", "replaced"):
        assert order_subject(ended, "a1") == "mbt.orders.a1"
    assert set(trade_subjects("a1")) == {"mbt.fills.a1", "mbt.orders.a1", "mbt.updates.a1"}
    # every trade subject is in the stream, and the ledger's are a part of them
    assert TRADES_STREAM.subjects is not None
    assert set(LEDGER_SUBJECTS) < set(TRADES_STREAM.subjects)


async def test_an_old_durable_is_refiltered_in_place_and_keeps_its_position(nats_server) -> None:  # type: ignore[no-untyped-def]
    bus = await Bus.connect(nats_server.url, name="subjects-test")
    name = f"T_{uuid.uuid4().hex[:8]}"
    durable = "ledger"
    try:
        # a stream as an earlier version declared it, and its durable with the old filter
        await bus.js.add_stream(StreamConfig(name=name, subjects=["mbt.fills.>", "mbt.orders.>"]))
        await bus.js.add_consumer(
            name, ConsumerConfig(durable_name=durable, filter_subject="mbt.>", ack_wait=30)
        )
        await bus.js.publish("mbt.fills.a1", b"old-fill")
        await bus.js.publish("mbt.orders.a1", b"old-accepted")
        old = await bus.js.pull_subscribe("mbt.>", durable=durable, stream=name)
        for m in await old.fetch(2, timeout=2):
            await m.ack()  # the earlier version acknowledged both
        await old.unsubscribe()

        # the new version: the stream gains the updates subject, the durable the new filters
        await bus.js.update_stream(
            StreamConfig(name=name, subjects=[*LEDGER_SUBJECTS, "mbt.updates.>"])
        )
        for subject, data in (
            ("mbt.updates.a1", b"accepted"),
            ("mbt.fills.a1", b"fill"),
            ("mbt.orders.a1", b"canceled"),
            ("mbt.updates.a1", b"filled"),
        ):
            await bus.js.publish(subject, data)
        seen: list[bytes] = []
        got = asyncio.Event()

        async def handler(msgs: list[Msg]) -> None:
            for m in msgs:
                seen.append(m.data)
                await m.ack()
            if len(seen) >= 2:
                got.set()

        task = asyncio.create_task(
            bus.consume_batches(LEDGER_SUBJECTS, durable, handler, stream=name)
        )
        try:
            await asyncio.wait_for(got.wait(), 10)
            await asyncio.sleep(0.3)  # anything else it would be sent arrives meanwhile
        finally:
            task.cancel()
        # only the new fill and cancel: nothing acknowledged before, no order update
        assert seen == [b"fill", b"canceled"]
        info = await bus.js.consumer_info(name, durable)
        assert sorted(info.config.filter_subjects or []) == sorted(LEDGER_SUBJECTS)
    finally:
        await bus.js.delete_stream(name)
        await bus.close()
