"""A dedicated PostgreSQL connection for one hot path (plain psycopg, prepared statements).

The submit pipeline's commit stage and the outbox relays each run one batch at a time, so each
owns one connection (accounts' hold transactions share a few): no pool checkout, no SQL
compilation, statements prepared on the server once and then only bound and executed.
Statements are set-based (over a JSON document or arrays), so one statement covers a whole
batch whatever its size, and one statement in autocommit is one round trip and one commit.

SQLAlchemy stays everywhere else (its metadata defines the tables and migrations); this is the
narrow exception where its per-statement cost is most of the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy.engine import make_url

__all__ = ["HotPath", "HotPathPool", "libpq_dsn"]


def libpq_dsn(sqlalchemy_url: str) -> str:
    """The libpq form of a `postgresql+psycopg://` URL (the services' DATABASE_URL)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class HotPath:
    """One connection, one user at a time (a pipeline stage); reconnects when it was lost."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._dsn = libpq_dsn(database_url)
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, row_factory=dict_row, prepare_threshold=0
            )
        return self._conn

    async def fetch(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
        """Run one statement (its own transaction) and return its rows."""
        conn = await self._connection()
        try:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            await self.close()
            raise

    @asynccontextmanager
    async def pipelined_transaction(
        self,
    ) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """One transaction in pipeline mode (see `HotPathPool.pipelined_transaction`).

        BEGIN and COMMIT are statements of the pipeline on the autocommit connection rather
        than psycopg's `transaction()` block, which costs more CPU than the statements it
        wraps; on any error the transaction is rolled back (or the connection dropped)."""
        conn = await self._connection()
        try:
            async with conn.pipeline():
                await conn.execute("BEGIN")
                yield conn
                await conn.execute("COMMIT")
        except BaseException:
            await self._abort(conn)
            raise

    async def _abort(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        """After a failed transaction: roll it back, or drop a connection that cannot."""
        if conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            return
        try:
            await conn.execute("ROLLBACK")
        except psycopg.Error:
            await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class HotPathPool:
    """A few `HotPath` connections for a handler that runs concurrently (one per call)."""

    def __init__(self, database_url: str, size: int = 4) -> None:
        self._free: asyncio.LifoQueue[HotPath] = asyncio.LifoQueue()
        for _ in range(size):
            self._free.put_nowait(HotPath(database_url))

    @asynccontextmanager
    async def pipelined_transaction(
        self,
    ) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """A transaction in pipeline mode: BEGIN goes out with the first statements and COMMIT
        with the last, so a read-decide-write transaction is two round trips, not four."""
        hot = await self._free.get()
        try:
            async with hot.pipelined_transaction() as conn:
                yield conn
        finally:
            self._free.put_nowait(hot)

    async def close(self) -> None:
        while not self._free.empty():
            await self._free.get_nowait().close()
