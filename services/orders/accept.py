"""The submit pipeline: record, hold, accept, each stage one batch at a time.

Submits are queued, and three stages run concurrently, each on a whole batch of what is waiting:

1. **record**: one transaction inserts every new order row (status `new`, with its audit row);
   a `client_order_id` the user already used is caught here by the unique constraint.
2. **hold**: one `PlaceHolds` call to accounts reserves the buying power of the whole batch, in
   order (accounts owns buying power and decides each hold after the ones before it).
3. **accept**: under the engine lock, one transaction marks the held orders `accepted` and the
   refused ones `rejected`, with their outbox events and audit rows; then the engine sees them.

Only then is the caller answered, so every accepted order, its hold and its event are durable
before the reply. While one batch waits on accounts, the next is being recorded: the database
and accounts each see a few large transactions instead of one per order.

A crash between stages leaves orders `new`; recovery on start finishes them (the hold is placed
again, idempotently by order id, and the order accepted or rejected). A failed commit fails the
batch and stops the process (fail-stop): a restart re-arms from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from services.orders import records
from services.orders.domain.events import Event
from services.orders.partitions import FENCE_SQL, user_partition
from services.orders.records import order_event
from services.orders.validation import OrderIntent
from services.platform.errors import AlreadyExists, MbtError, error_from_status
from services.platform.hotpath import HotPath
from services.platform.metrics import ORDERS
from services.platform.wire import ts_to_wire

if TYPE_CHECKING:
    from services.orders.app import OrdersApp

__all__ = ["PendingSubmit", "SubmitPipeline", "payload_differences"]

MAX_BATCH = 256
log = logging.getLogger("mbt.orders")

# one statement, one round trip: the batch's order rows (a used client_order_id is skipped by
# the unique constraint) and an audit row for each one inserted; the inserted rows come back
RECORD_SQL = """
WITH d AS (
  SELECT * FROM unnest(
    %(ids)s::text[], %(users)s::text[], %(coids)s::text[], %(symbols)s::text[],
    %(sides)s::text[], %(qtys)s::numeric[], %(types)s::text[], %(tifs)s::text[],
    %(limits)s::numeric[], %(stops)s::numeric[], %(replaces)s::text[], %(legs)s::text[],
    %(submitted)s::timestamptz[], %(details)s::text[]
  ) AS d(id, user_id, coid, symbol, side, qty, order_type, tif, limit_price, stop_price,
         replaces, legs, submitted_at, detail)
), ins AS (
  INSERT INTO orders.orders (id, user_id, client_order_id, symbol, side, qty, order_type,
    time_in_force, limit_price, stop_price, status, replaces, legs, submitted_at, updated_at)
  SELECT id, user_id, coid, symbol, side, qty, order_type, tif, limit_price, stop_price, 'new',
    replaces, legs::jsonb, submitted_at, submitted_at FROM d
  ON CONFLICT ON CONSTRAINT orders_client_order_id_per_user DO NOTHING
  RETURNING *
), audit AS (
  INSERT INTO orders.audit_log (actor, action, order_id, sim_at, detail)
  SELECT d.user_id, 'submit', d.id, %(sim)s, d.detail::jsonb FROM d JOIN ins ON ins.id = d.id
)
SELECT * FROM ins
"""

# one statement, one round trip: accept the held, reject the refused (each only if still
# `new`: an order canceled meanwhile stays canceled), and write the outbox event and audit row
# of each one that changed, in batch order
ACCEPT_SQL = """
WITH a AS (
  SELECT * FROM unnest(%(a_ids)s::text[], %(a_accts)s::text[], %(a_amounts)s::numeric[],
                       %(a_prefs)s::text[]) AS a(id, acct, amount, pref)
), accepted AS (
  UPDATE orders.orders o SET status = 'accepted', accepted_at = %(now)s, account_id = a.acct,
    hold_amount = a.amount, fill_preference = a.pref, updated_at = %(wall)s
  FROM a WHERE o.id = a.id AND o.status = 'new' RETURNING o.id
), r AS (
  SELECT * FROM unnest(%(r_ids)s::text[], %(r_reasons)s::text[]) AS r(id, reason)
), rejected AS (
  UPDATE orders.orders o SET status = 'rejected', reject_reason = r.reason, updated_at = %(wall)s
  FROM r WHERE o.id = r.id AND o.status = 'new' RETURNING o.id
), changed AS (
  SELECT id, 'accept' AS action FROM accepted UNION ALL SELECT id, 'reject' FROM rejected
), e AS (
  SELECT * FROM unnest(%(e_ids)s::text[], %(e_actions)s::text[], %(e_subjects)s::text[],
                       %(e_payloads)s::bytea[], %(e_msg_ids)s::text[], %(e_details)s::text[],
                       %(e_parts)s::smallint[])
    WITH ORDINALITY AS e(id, action, subject, payload, msg_id, detail, part, n)
), outbox AS (
  INSERT INTO orders.outbox (msg_id, subject, payload, partition)
  SELECT e.msg_id, e.subject, e.payload, e.part FROM e JOIN changed USING (id, action)
  ORDER BY e.n
), audit AS (
  INSERT INTO orders.audit_log (actor, action, order_id, sim_at, detail)
  SELECT 'system', e.action, e.id, %(now)s, e.detail::jsonb FROM e JOIN changed USING (id, action)
)
SELECT id, action FROM changed
"""


@dataclass
class PendingSubmit:
    """One order on its way through the pipeline."""

    order_id: str
    user_id: str
    client_order_id: str
    intent: OrderIntent
    amount: Decimal  # the buying power it reserves
    replaces: str | None
    submitted_at: datetime
    done: asyncio.Future[dict[str, Any]]
    account_id: str = ""
    preference: str = ""
    refusal: MbtError | None = None


def order_values(p: PendingSubmit) -> dict[str, Any]:
    i = p.intent
    return {
        "id": p.order_id,
        "user_id": p.user_id,
        "client_order_id": p.client_order_id,
        "symbol": i.symbol,
        "side": i.side.value,
        "qty": i.qty,
        "order_type": i.order_type.value,
        "time_in_force": i.time_in_force.value,
        "limit_price": i.limit_price,
        "stop_price": i.stop_price,
        "status": "new",
        "replaces": p.replaces,
        "legs": [{"symbol": x.symbol, "side": x.side.value, "ratio": x.ratio} for x in i.legs]
        or None,
        "submitted_at": p.submitted_at,
    }


def payload_differences(intent: OrderIntent, row: dict[str, Any]) -> list[str]:
    """The fields in which a repeated submit differs from the order its client_order_id names."""

    def dec(v: Any) -> Decimal | None:
        return Decimal(v) if v is not None else None

    legs = [{"symbol": x.symbol, "side": x.side.value, "ratio": x.ratio} for x in intent.legs]
    theirs = [
        {"symbol": x["symbol"], "side": x["side"], "ratio": int(x["ratio"])}
        for x in (row["legs"] or [])
    ]
    pairs = [
        ("symbol", intent.symbol, row["symbol"]),
        ("side", intent.side.value, row["side"]),
        ("qty", intent.qty, dec(row["qty"])),
        ("order_type", intent.order_type.value, row["order_type"]),
        ("time_in_force", intent.time_in_force.value, row["time_in_force"]),
        ("limit_price", intent.limit_price, dec(row["limit_price"])),
        ("stop_price", intent.stop_price, dec(row["stop_price"])),
        ("legs", legs, theirs),
    ]
    return [name for name, mine, stored in pairs if mine != stored]


def _drain(q: asyncio.Queue[PendingSubmit], first: PendingSubmit) -> list[PendingSubmit]:
    batch = [first]
    while not q.empty() and len(batch) < MAX_BATCH:
        batch.append(q.get_nowait())
    return batch


def _fail(batch: list[PendingSubmit], exc: BaseException) -> None:
    for p in batch:
        if not p.done.done():
            p.done.set_exception(exc)


class SubmitPipeline:
    def __init__(self, app: OrdersApp) -> None:
        self.app = app
        self._record_q: asyncio.Queue[PendingSubmit] = asyncio.Queue()
        self._hold_q: asyncio.Queue[PendingSubmit] = asyncio.Queue()
        self._accept_q: asyncio.Queue[PendingSubmit] = asyncio.Queue()
        self._in_flight: dict[tuple[str, str], PendingSubmit] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._record_db = HotPath(app.settings.database_url)
        self._accept_db = HotPath(app.settings.database_url)
        self._rows: dict[str, dict[str, Any]] = {}  # recorded rows on their way to accept

    # ---- the callers' side -----------------------------------------------------------------
    async def submit(
        self,
        order_id: str,
        user_id: str,
        coid: str,
        intent: OrderIntent,
        amount: Decimal,
        replaces: str | None,
        submitted_at: datetime,
    ) -> dict[str, Any]:
        """Record, hold and accept one order; the accepted (or earlier) order row, or the
        reason it was refused (raised)."""
        key = (user_id, coid)
        ahead = self._in_flight.get(key)
        if ahead is not None:  # the same client_order_id is on its way: its outcome
            with contextlib.suppress(Exception):
                await asyncio.shield(ahead.done)
            return await self.repeat(user_id, coid, intent)
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        p = PendingSubmit(order_id, user_id, coid, intent, amount, replaces, submitted_at, done)
        self._in_flight[key] = p
        try:
            await self._record_q.put(p)
            return await asyncio.shield(done)
        finally:
            if self._in_flight.get(key) is p:
                del self._in_flight[key]

    async def repeat(self, user_id: str, coid: str, intent: OrderIntent) -> dict[str, Any]:
        """A client_order_id used before: the original order, if this is the same order."""
        existing = await records.fetch_by_client_id(self.app.db, user_id, coid)
        assert existing is not None
        differ = payload_differences(intent, existing)
        if differ:
            raise AlreadyExists(
                f"client_order_id {coid!r} was used for a different order (it differs in "
                f"{', '.join(differ)}); use a new client_order_id",
                reason="CLIENT_ORDER_ID_CONFLICT",
                metadata={"fields": ",".join(differ), "orderId": str(existing["id"])},
            )
        return existing

    async def resume(
        self,
        row: dict[str, Any],
        intent: OrderIntent,
        amount: Decimal,
        refusal: MbtError | None = None,
    ) -> None:
        """Finish an order a crash left `new` (recorded, maybe held): from the hold stage, or
        straight to rejection with `refusal`."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        p = PendingSubmit(
            str(row["id"]),
            str(row["user_id"]),
            str(row["client_order_id"]),
            intent,
            amount,
            row["replaces"],
            row["submitted_at"],
            done,
            refusal=refusal,
        )
        await (self._hold_q if refusal is None else self._accept_q).put(p)
        await done

    # ---- the stages ------------------------------------------------------------------------
    async def run(self) -> None:
        """The three stages, until one fails (fail-stop)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._stage(self._record_q, self._record, self._hold_q))
            tg.create_task(self._stage(self._hold_q, self._hold, self._accept_q))
            tg.create_task(self._stage(self._accept_q, self._accept, None))

    async def _stage(
        self,
        inbox: asyncio.Queue[PendingSubmit],
        work: Any,
        outbox: asyncio.Queue[PendingSubmit] | None,
    ) -> None:
        while True:
            batch = _drain(inbox, await inbox.get())
            try:
                passed: list[PendingSubmit] = await work(batch)
            except Exception as exc:
                _fail(batch, exc)
                raise  # fail-stop: the process restarts and re-arms from the database
            if outbox is not None:
                for p in passed:
                    outbox.put_nowait(p)

    async def _record(self, batch: list[PendingSubmit]) -> list[PendingSubmit]:
        """Insert the orders as `new`; a used client_order_id answers with the original."""
        values = [order_values(p) for p in batch]
        rows = await self._fenced(
            self._record_db,
            RECORD_SQL,
            {
                "ids": [v["id"] for v in values],
                "users": [v["user_id"] for v in values],
                "coids": [v["client_order_id"] for v in values],
                "symbols": [v["symbol"] for v in values],
                "sides": [v["side"] for v in values],
                "qtys": [v["qty"] for v in values],
                "types": [v["order_type"] for v in values],
                "tifs": [v["time_in_force"] for v in values],
                "limits": [v["limit_price"] for v in values],
                "stops": [v["stop_price"] for v in values],
                "replaces": [v["replaces"] for v in values],
                "legs": [json.dumps(v["legs"]) if v["legs"] else None for v in values],
                "submitted": [v["submitted_at"] for v in values],
                "details": [json.dumps(_submit_detail(p)) for p in batch],
                "sim": self.app.sim_now,
            },
        )
        inserted = {str(r["id"]): r for r in rows}
        self._rows.update(inserted)
        for p in batch:
            if p.order_id not in inserted:  # answered off the pipeline
                self._aside(self._answer_repeat(p))
        return [p for p in batch if p.order_id in inserted]

    def _aside(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _answer_repeat(self, p: PendingSubmit) -> None:
        try:
            p.done.set_result(await self.repeat(p.user_id, p.client_order_id, p.intent))
        except Exception as exc:
            p.done.set_exception(exc)

    async def _hold(self, batch: list[PendingSubmit]) -> list[PendingSubmit]:
        """Reserve the batch's buying power in one call to accounts."""
        app = self.app
        request = acct_pb.PlaceHoldsRequest()
        for p in batch:
            # a spread reserves cash as a package; a plain sell reserves what it sells
            request.holds.add(
                user_id=p.user_id,
                order_id=p.order_id,
                symbol=p.intent.symbol,
                side="buy" if p.intent.legs else p.intent.side.value,
                qty=str(p.intent.qty),
                amount=str(p.amount),
                as_of=ts_to_wire(app.sim_now),
            )
        try:
            reply = await app.accounts.call(app.accounts_stub.PlaceHolds, request)
        except MbtError as exc:  # accounts unreachable: the batch is refused, with the reason
            for p in batch:
                p.refusal = exc
            return batch
        for p, result in zip(batch, reply.results, strict=True):
            if result.HasField("error"):
                p.refusal = error_from_status(result.error)
            else:
                p.account_id = result.hold.account_id
                p.preference = (
                    p.intent.fill_preference or result.hold.default_fill_preference or "aggressive"
                )
        return batch

    async def _accept(self, batch: list[PendingSubmit]) -> list[PendingSubmit]:
        """Accept what is held and reject what is not, in one statement; then the engine."""
        app = self.app
        async with app.lock:
            now, wall = app.sim_now, datetime.now(UTC)
            recorded = {p.order_id: await self._recorded(p) for p in batch}
            after: dict[str, dict[str, Any]] = {}
            events: list[tuple[str, str, tuple[str, bytes, str], str]] = []
            for p in batch:
                row = dict(recorded[p.order_id])
                if p.refusal is None:
                    row.update(
                        status="accepted",
                        accepted_at=now,
                        account_id=p.account_id,
                        hold_amount=p.amount,
                        fill_preference=p.preference,
                        updated_at=wall,
                    )
                    detail = json.dumps({"sim_at": now.isoformat()})
                    events.append(
                        (p.order_id, "accept", order_event("accepted", row, p.user_id), detail)
                    )
                else:
                    row.update(status="rejected", reject_reason=p.refusal.message, updated_at=wall)
                    detail = json.dumps({"reason": p.refusal.message})
                    events.append(
                        (p.order_id, "reject", order_event("rejected", row, p.user_id), detail)
                    )
                after[p.order_id] = row
            held = [p for p in batch if p.refusal is None]
            refused = [p for p in batch if p.refusal is not None]
            changed = await self._fenced(
                self._accept_db,
                ACCEPT_SQL,
                {
                    "now": now,
                    "wall": wall,
                    "a_ids": [p.order_id for p in held],
                    "a_accts": [p.account_id for p in held],
                    "a_amounts": [p.amount for p in held],
                    "a_prefs": [p.preference for p in held],
                    "r_ids": [p.order_id for p in refused],
                    "r_reasons": [p.refusal.message if p.refusal else "" for p in refused],
                    "e_ids": [e[0] for e in events],
                    "e_actions": [e[1] for e in events],
                    "e_subjects": [e[2][0] for e in events],
                    "e_payloads": [e[2][1] for e in events],
                    "e_msg_ids": [e[2][2] for e in events],
                    "e_details": [e[3] for e in events],
                    "e_parts": [user_partition(p.user_id) for p in batch],
                },
            )
            if events:
                app.outbox.wake()
            done = {str(r["id"]) for r in changed}
            ORDERS.labels("accepted").inc(sum(1 for p in held if p.order_id in done))
            ORDERS.labels("rejected").inc(sum(1 for p in refused if p.order_id in done))
            engine_events: list[Event] = []
            for p in held:
                if p.order_id in done:
                    engine_events += app.matching.accept(records.domain_order(after[p.order_id]))
            if engine_events:
                await app.persist(engine_events)
                for e in {ev.order_id for ev in engine_events}:
                    if e in after:
                        after[e] = await records.fetch(app.db, e)
        for p in batch:
            self._rows.pop(p.order_id, None)
            if p.done.done():
                continue
            if p.order_id not in done:  # canceled while its hold was placed
                if p.refusal is None:  # give the buying power back
                    self._aside(self._release(p.order_id))
                p.done.set_result(await records.fetch(app.db, p.order_id))
            elif p.refusal is not None:
                p.done.set_exception(p.refusal)
            else:
                p.done.set_result(after[p.order_id])
        return []

    async def _fenced(self, hot: HotPath, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """One statement behind the partition fence, in one round trip (pipelined): if another
        process claimed one of this instance's partitions, nothing is written (`Fenced`)."""
        own = self.app.ownership
        async with hot.transaction() as conn:
            async with conn.pipeline():
                fence = await conn.execute(FENCE_SQL, {"me": own.token})
                cur = await conn.execute(sql, params)
            own.check(await fence.fetchall())
            return await cur.fetchall()

    async def _recorded(self, p: PendingSubmit) -> dict[str, Any]:
        """The order's row as recorded (kept from the record stage; read back on recovery)."""
        row = self._rows.get(p.order_id)
        return row if row is not None else await records.fetch(self.app.db, p.order_id)

    async def _release(self, order_id: str) -> None:
        app = self.app
        try:
            await app.accounts.call(
                app.accounts_stub.ReleaseHold, acct_pb.ReleaseHoldRequest(order_id=order_id)
            )
        except MbtError as exc:  # the ledger also releases it when it sees the cancel event
            log.warning("hold of canceled order %s not released now: %s", order_id, exc.message)


def _submit_detail(p: PendingSubmit) -> dict[str, Any]:
    i = p.intent
    return {
        "symbol": i.symbol,
        "side": i.side.value,
        "qty": str(i.qty),
        "type": i.order_type.value,
        "tif": i.time_in_force.value,
        "limit": str(i.limit_price or ""),
        "stop": str(i.stop_price or ""),
    }
