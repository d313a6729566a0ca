"""The transactional outbox against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from nats.js.api import StreamConfig
from sqlalchemy import Column, MetaData, String, Table, func, select

from services.platform.bus import Bus
from services.platform.db import SchemaMigrations, UnitOfWork, create_tables, make_engine, migrate
from services.platform.hotpath import HotPath
from services.platform.outbox import Outbox, outbox_table

pytestmark = pytest.mark.anyio


@pytest.fixture
async def setup(database_url: str, nats_server):  # type: ignore[no-untyped-def]
    schema = f"t_{uuid.uuid4().hex[:8]}"
    md = MetaData(schema=schema)
    things = Table("things", md, Column("id", String(36), primary_key=True))
    box = Outbox(outbox_table(md))
    engine = make_engine(database_url, pool_size=4)
    await migrate(engine, SchemaMigrations(schema=schema, steps=[create_tables(md)]))
    bus = await Bus.connect(nats_server.url, name="outbox-test")
    stream = f"T_{schema.upper()}"
    subject = f"test.{schema}.events"
    await bus.ensure_stream(
        StreamConfig(name=stream, subjects=[f"test.{schema}.>"], duplicate_window=60.0)
    )
    yield engine, box, bus, things, stream, subject
    await bus.js.delete_stream(stream)
    await bus.close()
    await engine.dispose()


async def test_state_and_event_commit_together_and_relay_once(setup) -> None:  # type: ignore[no-untyped-def]
    engine, box, bus, things, stream, subject = setup
    async with UnitOfWork(engine, box) as uow:
        await uow.conn.execute(things.insert().values(id="a"))
        uow.publish(subject, b"thing a created", "evt-a")
    with pytest.raises(RuntimeError):
        async with UnitOfWork(engine, box) as uow:
            await uow.conn.execute(things.insert().values(id="b"))
            uow.publish(subject, b"thing b created", "evt-b")
            raise RuntimeError("crash before commit")
    async with engine.connect() as conn:
        assert (await conn.execute(select(things.c.id))).scalars().all() == ["a"]
        assert (await conn.execute(select(func.count()).select_from(box.table))).scalar_one() == 1
    assert await box.relay_once(engine, bus) == 1
    assert await box.relay_once(engine, bus) == 0  # marked published
    info = await bus.js.stream_info(stream)
    assert info.state.messages == 1


async def test_republish_after_crash_is_deduplicated(setup) -> None:  # type: ignore[no-untyped-def]
    engine, box, bus, things, stream, subject = setup
    # a relay that crashed after publishing but before marking: the same msg id goes out twice
    await bus.js_publish(subject, b"x", msg_id="evt-dup")
    await bus.js_publish(subject, b"x", msg_id="evt-dup")
    info = await bus.js.stream_info(stream)
    assert info.state.messages == 1


async def test_published_rows_are_deleted_and_earlier_marked_ones_purged(setup) -> None:  # type: ignore[no-untyped-def]
    engine, box, bus, things, stream, subject = setup
    # two rows an earlier version marked published, one it had not published yet
    then = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            box.table.insert(),
            [
                {"msg_id": m, "subject": subject, "payload": m.encode(), "published_at": at}
                for m, at in (("old-1", then), ("old-2", then), ("new-3", None))
            ],
        )
    hot = HotPath(engine.url.render_as_string(hide_password=False))
    try:
        assert await box.purge_published(hot, chunk=1) == 2
        async with engine.connect() as conn:
            left = (await conn.execute(select(box.table.c.msg_id))).scalars().all()
        assert left == ["new-3"]
        assert await box.relay_once(hot, bus) == 1
        async with engine.connect() as conn:  # acked: deleted by the next round, not before
            left = (await conn.execute(select(box.table.c.msg_id))).scalars().all()
        assert left == ["new-3"]
        assert await box.relay_once(hot, bus) == 0
    finally:
        await hot.close()
    async with engine.connect() as conn:  # published: gone from the table, kept by JetStream
        assert (await conn.execute(select(func.count()).select_from(box.table))).scalar_one() == 0
    info = await bus.js.stream_info(stream)
    assert info.state.messages == 1


async def test_a_row_no_stream_stores_stays_unpublished(setup) -> None:  # type: ignore[no-untyped-def]
    engine, box, bus, things, stream, subject = setup
    async with UnitOfWork(engine, box) as uow:
        uow.publish(subject, b"stored", "evt-ok")
        uow.publish("nowhere.no-stream.listens", b"lost?", "evt-nowhere")
    with pytest.raises(Exception) as err:  # noqa: PT011 - whichever error the bus gives
        await box.relay_once(engine, bus)
    assert "Error" in type(err.value).__name__
    # nothing of the failed batch is deleted: both go out again once they can be stored
    assert await box.relay_once(engine, bus, batch=1) == 1  # the stored one, again (deduped)
    async with engine.connect() as conn:
        left = (await conn.execute(select(box.table.c.msg_id))).scalars().all()
    assert sorted(left) == ["evt-nowhere", "evt-ok"]
    info = await bus.js.stream_info(stream)
    assert info.state.messages == 1


async def _until(check, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def test_the_relay_deletes_what_it_published_soon_and_when_it_stops(setup) -> None:  # type: ignore[no-untyped-def]
    engine, box, bus, things, stream, subject = setup

    async def rows() -> int:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(box.table))).scalar_one()
            )

    async def in_stream() -> int:
        return int((await bus.js.stream_info(stream)).state.messages)

    # idle after publishing: the delete comes delete_after_s later, without another commit (a
    # relay of its own on the same table: no commit of this test wakes it)
    async with UnitOfWork(engine, box) as uow:
        uow.publish(subject, b"one", "evt-one")
    relay = asyncio.create_task(
        Outbox(box.table).relay_forever(engine, bus, poll_s=30, delete_after_s=0.05)
    )
    await _until(lambda: _eq(in_stream, 1))
    await _until(lambda: _eq(rows, 0))
    relay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await relay

    # a relay stopped before its next round deletes what it published on the way out (a relay
    # of its own on the same table, so no commit of this test wakes it into another round)
    async with UnitOfWork(engine, box) as uow:
        uow.publish(subject, b"two", "evt-two")
    quiet = Outbox(box.table)
    relay = asyncio.create_task(quiet.relay_forever(engine, bus, poll_s=30, delete_after_s=30))
    await _until(lambda: _eq(in_stream, 2))
    assert await rows() == 1  # published, its delete not due yet
    relay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await relay
    assert await rows() == 0
    assert await in_stream() == 2


async def _eq(f, n: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(await f() == n)
