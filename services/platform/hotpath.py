"""A dedicated PostgreSQL connection for one hot path (asyncpg, prepared statements).

The submit pipeline's commit stage and the outbox relays each run one batch at a time, so each
owns one connection (accounts' hold transactions share a few): no pool checkout, no SQL
compilation, statements prepared on the server once and then only bound and executed.
Statements are set-based (over a JSON document or arrays), so one statement covers a whole
batch whatever its size, and one statement in autocommit is one round trip and one commit.

The driver is asyncpg: its protocol and its type codecs are compiled, and it costs about half
the client CPU per statement of psycopg's async connection (`python bench/floors.py`:
`asyncpg_statement_cpu_ms` vs `psycopg.async_statement_cpu_ms`), on the path every order takes
several times. Statements keep psycopg's placeholders (`%(name)s`, `%s`), translated once per
statement text to asyncpg's `$n`, and rows come back as dicts, as psycopg's `dict_row` gave.

SQLAlchemy (on psycopg) stays everywhere else (its metadata defines the tables and migrations);
this is the narrow exception where a driver's per-statement cost is most of the work.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

__all__ = [
    "CONNECTION_ERRORS",
    "DATABASE_ERRORS",
    "Deadlock",
    "HotPath",
    "HotPathPool",
    "Transaction",
    "UniqueViolation",
    "libpq_dsn",
]

Params = Sequence[Any] | Mapping[str, Any]

# what a hot path's caller catches: the server refused or failed a statement, the connection
# is gone, or the socket failed under it
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)
# the subset that says the database cannot be reached or was lost (worth retrying later), not
# that a statement is wrong: class 08, an administrator's shutdown or restart, a dead socket
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    OSError,
)
_ROLLBACK_FAILED: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, asyncio.CancelledError)
_CLOSE_FAILED: tuple[type[BaseException], ...] = (*_ROLLBACK_FAILED, TimeoutError)
Deadlock = asyncpg.exceptions.DeadlockDetectedError
UniqueViolation = asyncpg.exceptions.UniqueViolationError

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")


def libpq_dsn(sqlalchemy_url: str) -> str:
    """The libpq form of a `postgresql+psycopg://` URL (the services' DATABASE_URL)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@lru_cache(maxsize=512)
def translate(sql: str) -> tuple[str, tuple[str, ...] | int]:
    """psycopg placeholders -> asyncpg's: (the statement, the names in `$n` order) for
    `%(name)s` (a name used twice is one parameter), or the count of positional `%s`."""
    names: list[str] = []
    positional = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal positional
        if m.group(0) == "%%":
            return "%"
        name = m.group(1)
        if name is None:
            positional += 1
            return f"${positional}"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    out = _PLACEHOLDER.sub(sub, sql)
    if names and positional:
        raise ValueError("a statement mixes %(name)s and %s placeholders")
    return out, (tuple(names) if names else positional)


def _arguments(order: tuple[str, ...] | int, params: Params) -> list[Any]:
    if isinstance(order, tuple):
        if not isinstance(params, Mapping):
            raise TypeError("a statement with %(name)s placeholders takes a mapping")
        return [params[n] for n in order]
    if isinstance(params, Mapping):
        if order:
            raise TypeError("a statement with %s placeholders takes a sequence")
        return []
    if len(params) != order:
        raise TypeError(f"the statement takes {order} parameters, {len(params)} given")
    return list(params)


def _json_out(value: Any) -> str:
    # a document already serialized (the commit stage's rows) goes as it is
    return value if isinstance(value, str) else json.dumps(value, default=str)


async def _setup(conn: asyncpg.Connection) -> None:
    """json/jsonb columns come back decoded, as psycopg returns them."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_json_out, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def _fetch(conn: asyncpg.Connection, sql: str, params: Params) -> list[dict[str, Any]]:
    statement, order = translate(sql)
    rows = await conn.fetch(statement, *_arguments(order, params))
    return [dict(r) for r in rows]


class Transaction:
    """The statements of one open transaction (`HotPath.transaction`)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run one statement of the transaction and return its rows."""
        return await _fetch(self._conn, sql, params)


class HotPath:
    """One connection, one user at a time (a pipeline stage); reconnects when it was lost."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._dsn = libpq_dsn(database_url)
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self._dsn)
            try:
                await _setup(conn)
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    async def fetch(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run one statement (its own transaction) and return its rows."""
        conn = await self._connection()
        try:
            return await _fetch(conn, sql, params)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, CONNECTION_ERRORS):
                await self.close()
            raise
        except (asyncpg.InterfaceError, OSError, asyncio.CancelledError):
            # the connection's state is unknown (a cancelled statement may still be running)
            await self.close()
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction: committed when the block ends, rolled back (or the connection
        dropped, if it cannot be) when it raises."""
        conn = await self._connection()
        try:
            await conn.execute("BEGIN")
            yield Transaction(conn)
            await conn.execute("COMMIT")
        except BaseException:
            await self._abort(conn)
            raise

    async def _abort(self, conn: asyncpg.Connection) -> None:
        """After a failed transaction: roll it back, or drop a connection that cannot."""
        if conn.is_closed():
            self._conn = None
            return
        if not conn.is_in_transaction():
            return
        try:
            await asyncio.shield(conn.execute("ROLLBACK"))
        except _ROLLBACK_FAILED:
            await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(asyncio.shield(conn.close()), 2.0)
            except _CLOSE_FAILED:
                conn.terminate()


class HotPathPool:
    """A few `HotPath` connections for a handler that runs concurrently (one per call)."""

    def __init__(self, database_url: str, size: int = 4) -> None:
        self._free: asyncio.LifoQueue[HotPath] = asyncio.LifoQueue()
        for _ in range(size):
            self._free.put_nowait(HotPath(database_url))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction on a free connection (`HotPath.transaction`)."""
        hot = await self._free.get()
        try:
            async with hot.transaction() as tx:
                yield tx
        finally:
            self._free.put_nowait(hot)

    async def close(self) -> None:
        while not self._free.empty():
            await self._free.get_nowait().close()
