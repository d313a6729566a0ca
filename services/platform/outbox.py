"""Transactional outbox: events are rows written with the state change, relayed to JetStream.

The relay publishes unpublished rows in order with `Nats-Msg-Id = row id`, and deletes them
only after the PubAck (the events live on in JetStream); a crash in between re-publishes, and
JetStream's duplicate window absorbs it. One relay per service keeps per-account order.

Each round is one statement: it deletes the rows the previous round published (their acks are
in) and reads the next batch, so a busy relay costs one round trip per batch; an idle one runs
the next round `DELETE_AFTER_S` after the last, and the relay deletes what it published when it
stops.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence

import nats
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    func,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.platform.bus import Bus
from services.platform.hotpath import CONNECTION_ERRORS, DATABASE_ERRORS, HotPath
from services.platform.metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED

# the bus or the database is down (the relay retries), or a statement failed or took too long
_UNREACHABLE: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    TimeoutError,
    *CONNECTION_ERRORS,
)
_FAILED_OR_SLOW: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, TimeoutError)

log = logging.getLogger("mbt.outbox")
OutboxRow = tuple[str, bytes, str, int | None]  # subject, payload, message id, partition
RELAY_BATCH = 200
# a round's published rows are deleted by the next round, at the latest this long after it
DELETE_AFTER_S = 0.02


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(), primary_key=True),
        Column("msg_id", String(80), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        # the writer's partition (orders' partitions: each relay publishes its own); null = any
        Column("partition", SmallInteger),
        Index("outbox_unpublished", "seq", postgresql_where="published_at IS NULL"),
    )


class Outbox:
    """Writes events inside a transaction and relays them to the bus afterwards."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._wake = asyncio.Event()
        # the partitions this process relays (None: every row); with `relay_unpartitioned`, also
        # the rows written without a partition
        self.partitions: list[int] | None = None
        self.relay_unpartitioned = True
        self._purge: asyncio.Task[None] | None = None
        self._published: list[int] = []  # seqs acked by JetStream, deleted by the next round
        # called with the rows of each committed unit of work (see `committed`)
        self.on_commit: list[Callable[[Sequence[OutboxRow]], None]] = []

    async def write(self, conn: AsyncConnection, rows: Sequence[OutboxRow]) -> None:
        await conn.execute(
            self.table.insert(),
            [
                {"subject": s, "payload": p, "msg_id": m or uuid.uuid4().hex, "partition": k}
                for s, p, m, k in rows
            ],
        )

    @property
    def _name(self) -> str:
        return f'"{self.table.schema}"."{self.table.name}"'

    def wake(self) -> None:
        self._wake.set()

    def committed(self, rows: Sequence[OutboxRow]) -> None:
        """Rows a unit of work has just committed: tell the listeners, wake the relay."""
        try:
            for listener in self.on_commit:
                listener(rows)
        except Exception:  # committed all the same: a listener's failure is only logged
            log.exception("outbox commit listener failed")
        finally:
            self.wake()

    async def relay_forever(
        self,
        engine: AsyncEngine,
        bus: Bus,
        poll_s: float = 0.5,
        delete_after_s: float = DELETE_AFTER_S,
    ) -> None:
        """Publish unpublished rows, oldest first; wake on commit or every `poll_s`.

        What a round published is deleted by the next round, which comes with the next commit
        or `delete_after_s` later, whichever is first, and on the way out (a stop or a
        cancellation): a published row stays behind only if the process dies in that moment
        (and goes out again then, absorbed by the duplicate window)."""
        url = engine.url.render_as_string(hide_password=False)
        hot = HotPath(url)
        # beside the relay, kept referenced until it is done
        self._purge = asyncio.create_task(self._purge_in_background(HotPath(url)))
        try:
            while True:
                try:
                    sent = await self.relay_once(hot, bus, RELAY_BATCH)
                except _UNREACHABLE as exc:
                    # the bus (or the database) is down: rows stay unpublished and go out later
                    log.warning("outbox relay cannot publish (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                    continue
                if sent < RELAY_BATCH:  # nothing else was waiting: until the next commit
                    try:
                        await asyncio.wait_for(
                            self._wake.wait(),
                            timeout=delete_after_s if self._published else poll_s,
                        )
                    except TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            await self._delete_published(hot)
            await hot.close()

    async def _delete_published(self, hot: HotPath) -> None:
        """Delete what was published and not deleted yet (on the way out; best effort)."""
        done, self._published = self._published, []
        if not done:
            return
        try:
            await asyncio.wait_for(
                hot.fetch(f"DELETE FROM {self._name} WHERE seq = ANY(%s::bigint[])", (done,)), 2.0
            )
        except _FAILED_OR_SLOW as exc:  # published again on the next start
            log.warning("outbox rows published but not deleted (%s)", exc)

    async def _purge_in_background(self, hot: HotPath) -> None:
        try:
            await self.purge_published(hot)
        except DATABASE_ERRORS as exc:  # the next start tries again
            log.warning("purge of earlier-published outbox rows stopped: %s", exc)
        finally:
            await hot.close()

    async def purge_published(self, hot: HotPath, chunk: int = 5000) -> int:
        """Delete the rows an earlier version marked published instead of deleting them: in
        primary-key ranges of `chunk` (each an index range, whatever the table's size), beside
        the relay; how many."""
        name = self._name
        (bounds,) = await hot.fetch(
            f"SELECT min(seq) AS lo, max(seq) AS hi FROM {name} WHERE published_at IS NOT NULL",
            {},
        )
        if bounds["lo"] is None:
            return 0
        total, lo = 0, int(bounds["lo"])
        while lo <= int(bounds["hi"]):
            rows = await hot.fetch(
                f"WITH gone AS (DELETE FROM {name} WHERE seq >= %(lo)s AND seq < %(hi)s "
                "AND published_at IS NOT NULL RETURNING 1) SELECT count(*) AS n FROM gone",
                {"lo": lo, "hi": lo + chunk},
            )
            total += int(rows[0]["n"])
            lo += chunk
            await asyncio.sleep(0)
        log.info("deleted %d outbox rows published earlier", total)
        return total

    async def relay_once(
        self, db: AsyncEngine | HotPath, bus: Bus, batch: int = RELAY_BATCH
    ) -> int:
        """Delete what the previous round published, then publish the next batch of
        unpublished rows (in one statement); how many it published."""
        hot = (
            db if isinstance(db, HotPath) else HotPath(db.url.render_as_string(hide_password=False))
        )
        name = self._name
        done, self._published = self._published, []
        try:
            mine = ""
            if self.partitions is not None:
                mine = " AND (partition = ANY(%(parts)s)" + (
                    " OR partition IS NULL)" if self.relay_unpartitioned else ")"
                )
            # in autocommit (no transaction to open and commit around it): the rows published
            # last round are deleted (JetStream keeps the events; no new row version and no
            # index entries per event, and the table stays the size of what is unpublished)
            # and the next ones read in seq order; a crash or a second relay before the delete
            # publishes a row again, and JetStream's duplicate window (Nats-Msg-Id) absorbs it
            rows = await hot.fetch(
                f"WITH gone AS (DELETE FROM {name} WHERE seq = ANY(%(done)s::bigint[])) "
                f"SELECT seq, msg_id, subject, payload FROM {name} WHERE published_at IS NULL "
                f"AND seq <> ALL(%(done)s::bigint[]){mine} ORDER BY seq LIMIT %(n)s",
                {"done": done, "n": batch, "parts": self.partitions or []},
            )
            if not rows:
                OUTBOX_BACKLOG.set(0)
                return 0
            # pipelined: written to the connection in order (JetStream keeps that order), acks
            # awaited together - one round trip per batch instead of one per row
            await bus.js_publish_many(
                [(r["subject"], bytes(r["payload"]), r["msg_id"]) for r in rows]
            )
            self._published = [r["seq"] for r in rows]
            OUTBOX_PUBLISHED.inc(len(rows))
            OUTBOX_BACKLOG.set(len(rows))
            return len(rows)
        except BaseException:
            self._published = done + self._published  # deleted next round, or published again
            raise
        finally:
            if hot is not db:
                await hot.close()
