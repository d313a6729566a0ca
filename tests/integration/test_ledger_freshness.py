"""A read waits for the ledger to apply the account's newest events in the stream (real NATS
JetStream and PostgreSQL): not when they are applied, until they are, and not again for events
it already waited for in vain."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import insert

from services.accounts import freshness
from services.accounts.adapters.tables import MIGRATIONS, applied_events
from services.accounts.freshness import LedgerFreshness
from services.platform.bus import Bus
from services.platform.db import make_engine, migrate

pytestmark = pytest.mark.anyio
SUBJECTS = ("t.fresh.fills", "t.fresh.orders")


@pytest.fixture
async def setup(database_url: str, nats_server):  # type: ignore[no-untyped-def]
    from nats.js.api import StreamConfig

    engine = make_engine(database_url)
    await migrate(engine, MIGRATIONS)
    bus = await Bus.connect(nats_server.url, name="freshness-test")
    stream = f"T_FRESH_{uuid.uuid4().hex[:8]}"
    await bus.ensure_stream(StreamConfig(name=stream, subjects=[f"{s}.>" for s in SUBJECTS]))
    yield engine, bus, stream
    await bus.js.delete_stream(stream)
    await bus.close()
    await engine.dispose()


async def _applied(engine, event_id: str) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(insert(applied_events).values(event_id=event_id))


async def test_a_read_waits_for_the_newest_events_once(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine, bus, stream = setup
    monkeypatch.setattr(freshness, "WAIT_S", 0.3)
    fresh = LedgerFreshness(engine, bus, stream, SUBJECTS)
    account = str(uuid.uuid4())
    assert await fresh.wait(account) is False  # nothing in the stream for it
    fill, end = f"{uuid.uuid4()}:1", f"{uuid.uuid4()}:canceled:x"
    await bus.js_publish_many([(f"{SUBJECTS[0]}.{account}", b"", fill)])
    await bus.js_publish_many([(f"{SUBJECTS[1]}.{account}", b"", end)])
    await _applied(engine, fill)

    # the order end is not applied yet: the read waits until it is
    async def apply_later() -> None:
        await asyncio.sleep(0.1)
        await _applied(engine, end)

    started = time.monotonic()
    later = asyncio.create_task(apply_later())
    assert await fresh.wait(account) is True
    assert time.monotonic() - started >= 0.1
    await later
    assert await fresh.wait(account) is False  # both applied: no wait

    # an event the ledger never applies: one read waits it out, the next ones do not
    stuck = f"{uuid.uuid4()}:2"
    await bus.js_publish_many([(f"{SUBJECTS[0]}.{account}", b"", stuck)])
    started = time.monotonic()
    assert await fresh.wait(account) is True
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert await fresh.wait(account) is False
    assert time.monotonic() - started < 0.25
