"""The hot path's connection against real PostgreSQL: transactions are all or nothing,
psycopg-style placeholders bind as they did, rows are dicts with decoded JSON."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from services.platform.hotpath import HotPath, UniqueViolation, translate

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
    async with h.transaction() as tx:
        await tx.fetch(f"INSERT INTO {table} VALUES (1), (2)")
        assert (await tx.fetch(f"SELECT count(*) AS n FROM {table}"))[0]["n"] == 2
        assert await ids(h, table) == []  # not before the commit
    assert await ids(h, table) == [1, 2]


async def test_an_exception_in_the_body_rolls_back(hot) -> None:  # type: ignore[no-untyped-def]
    h, table = hot
    with pytest.raises(RuntimeError):
        async with h.transaction() as tx:
            await tx.fetch(f"INSERT INTO {table} VALUES (1)")
            raise RuntimeError("decided against it")
    assert await ids(h, table) == []
    async with h.transaction() as tx:  # the connection is usable again
        await tx.fetch(f"INSERT INTO {table} VALUES (3)")
    assert await ids(h, table) == [3]


async def test_a_failed_statement_writes_nothing(hot) -> None:  # type: ignore[no-untyped-def]
    h, table = hot
    with pytest.raises(UniqueViolation):
        async with h.transaction() as tx:
            await tx.fetch(f"INSERT INTO {table} VALUES (1)")
            await tx.fetch(f"INSERT INTO {table} VALUES (1)")  # the second one fails
    assert await ids(h, table) == []
    async with h.transaction() as tx:
        await tx.fetch(f"INSERT INTO {table} VALUES (4)")
    assert await ids(h, table) == [4]


async def test_a_cancelled_transaction_writes_nothing_and_the_next_one_works(hot) -> None:  # type: ignore[no-untyped-def]
    h, table = hot

    async def slow() -> None:
        async with h.transaction() as tx:
            await tx.fetch(f"INSERT INTO {table} VALUES (5)")
            await tx.fetch("SELECT pg_sleep(5)")

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow(), 0.5)
    assert await ids(h, table) == []
    async with h.transaction() as tx:
        await tx.fetch(f"INSERT INTO {table} VALUES (6)")
    assert await ids(h, table) == [6]


async def test_placeholders_and_types_bind_as_psycopg_did(hot) -> None:  # type: ignore[no-untyped-def]
    h, _ = hot
    (row,) = await h.fetch(
        "SELECT %(a)s::numeric + %(a)s::numeric AS twice, %(names)s::text[] AS names, "
        "%(doc)s::jsonb AS doc, '100%%' AS pct",
        {"a": Decimal("0.10"), "names": ["x", "y"], "doc": '{"k": [1, "2"]}', "unused": 1},
    )
    assert row == {
        "twice": Decimal("0.20"),
        "names": ["x", "y"],
        "doc": {"k": [1, "2"]},
        "pct": "100%",
    }
    (row,) = await h.fetch("SELECT %s::int * %s::int AS n", (6, 7))
    assert row["n"] == 42


def test_translate_numbers_each_name_once() -> None:
    assert translate("SELECT %(b)s, %(a)s, %(b)s, 5 %% 2") == (
        "SELECT $1, $2, $1, 5 % 2",
        ("b", "a"),
    )
    assert translate("SELECT %s, %s") == ("SELECT $1, $2", 2)
    with pytest.raises(ValueError, match="mixes"):
        translate("SELECT %s, %(a)s")
