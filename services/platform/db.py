"""Database engine, per-service schema migrations and the unit of work."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine (psycopg 3) with a pool sized for one service process."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)


Migration = Callable[[Connection], None]


@dataclass(frozen=True)
class SchemaMigrations:
    """The ordered migrations of one service's schema. Version N is `steps[N-1]`.

    A step never changes once released; later changes are new steps.
    """

    schema: str
    steps: Sequence[Migration]


def create_tables(metadata: MetaData) -> Migration:
    """A migration step that creates the tables of `metadata` as they are defined now."""

    def step(conn: Connection) -> None:
        metadata.create_all(conn)

    return step


def sql(*statements: str) -> Migration:
    def step(conn: Connection) -> None:
        for s in statements:
            conn.execute(text(s))

    return step


async def migrate(engine: AsyncEngine, migrations: SchemaMigrations) -> int:
    """Apply the missing steps in one transaction under an advisory lock; return the version."""
    schema = migrations.schema
    lock_key = zlib.crc32(f"mbt-migrate-{schema}".encode())
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.execute(
            text(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        current = (
            await conn.execute(
                text(f'SELECT coalesce(max(version), 0) FROM "{schema}".schema_migrations')
            )
        ).scalar_one()
        for version, step in enumerate(migrations.steps, start=1):
            if version <= current:
                continue
            await conn.run_sync(step)
            await conn.execute(
                text(f'INSERT INTO "{schema}".schema_migrations (version) VALUES (:v)'),
                {"v": version},
            )
        return len(migrations.steps)


class UnitOfWork:
    """One transaction: state changes and the outbox rows describing them commit together.

    Usage: `async with UnitOfWork(engine, outbox) as uow: await uow.conn.execute(...);
    uow.publish(subject, payload, msg_id)`. Leaving the block without an exception commits.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        outbox: object | None = None,
        fence: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._fence = fence
        self._conn: AsyncConnection | None = None
        self._pending: list[tuple[str, bytes, str, int | None]] = []

    @property
    def conn(self) -> AsyncConnection:
        assert self._conn is not None, "use inside `async with`"
        return self._conn

    def publish(
        self, subject: str, payload: bytes, msg_id: str, partition: int | None = None
    ) -> None:
        """Queue an event; it is written to the outbox in this transaction."""
        self._pending.append((subject, payload, msg_id, partition))

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._engine.connect()
        await self._conn.begin()
        if self._fence is not None:  # refused before anything is written (see orders' fence)
            try:
                await self._fence(self._conn)
            except BaseException:
                await self._conn.rollback()
                await self._conn.close()
                raise
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn = self.conn
        try:
            if exc_type is None:
                if self._pending:
                    from services.platform.outbox import Outbox

                    assert isinstance(self._outbox, Outbox), "this unit of work has no outbox"
                    await self._outbox.write(conn, self._pending)
                await conn.commit()
                if self._pending and self._outbox is not None:
                    self._outbox.committed(self._pending)  # type: ignore[attr-defined]
            else:
                await conn.rollback()
        finally:
            await conn.close()
            self._conn = None
