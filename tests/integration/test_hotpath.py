"""The hot path's pipelined transactions against real PostgreSQL: all or nothing."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from services.platform.hotpath import HotPath

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hot(database_url: str):  # type: ignore[no-untyped-def]
    h = HotPath(database_url)
    table = f"public.hot_{uuid.uuid4().hex[:8]}"
    await h.fetch(f"CREATE TABLE {table} (id int PRIMARY KEY)", {})
    yield h, table
    await h.fetch(f"DROP TABLE {table}", {})
    await h.close()


async def ids(h: HotPath, table: str) -> list[int]:
    """What another connection sees (committed rows only)."""
    other = HotPath(h.database_url)
    try:
        return [r["id"] for r in await other.fetch(f"SELECT id FROM {table} ORDER BY id", {})]
    finally:
        await other.close()


async def test_a_transaction_commits_what_it_wrote(hot) -> None:  # type: ignore[no-untyped-def]
    h, table = hot
    async with h.pipelined_transaction() as conn:
        await conn.execute(f"INSERT INTO {table} VALUES (1), (2)")
        cur = await conn.execute(f"SELECT count(*) AS n FROM {table}")
        assert (await cur.fetchall())[0]["n"] == 2  # its own writes, before the commit
    assert await ids(h, table) == [1, 2]


async def test_an_exception_in_the_body_rolls_back(hot) -> None:  # type: ignore[no-untyped-def]
    h, table = hot
    with pytest.raises(RuntimeError):
        async with h.pipelined_transaction() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            raise RuntimeError("decided against it")
    assert await ids(h, table) == []
    async with h.pipelined_transaction() as conn:  # the connection is usable again
        await conn.execute(f"INSERT INTO {table} VALUES (3)")
    assert await ids(h, table) == [3]


async def test_a_failed_statement_writes_nothing(hot) -> None:  # type: ignore[no-untyped-def]
    h, table = hot
    with pytest.raises(psycopg.errors.UniqueViolation):
        async with h.pipelined_transaction() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            await conn.execute(f"INSERT INTO {table} VALUES (1)")  # the second one fails
    assert await ids(h, table) == []
    async with h.pipelined_transaction() as conn:
        await conn.execute(f"INSERT INTO {table} VALUES (4)")
    assert await ids(h, table) == [4]
