"""The submit pipeline: hold, then commit, each stage one batch at a time.

Submits are queued, and two stages run concurrently, each on a whole batch of what is waiting:

1. **hold**: one `PlaceHolds` call to accounts reserves the buying power of the whole batch, in
   order (accounts owns buying power and decides each hold after the ones before it).
2. **commit**: under the engine lock, one statement (one round trip, one commit) writes the
   batch's orders - `accepted` where the hold was placed, `rejected` with the reason where it
   was not - with their audit rows and outbox events, behind the partition fence; then the
   engine sees the accepted ones. A `client_order_id` the user already used is caught by the
   unique constraint: that order is not written, its hold is released and the caller gets the
   original order.

Only then is the caller answered, so every accepted order, its hold and its event are durable
before the reply. While one batch waits on accounts, the previous one is being committed: the
database and accounts each see a few large transactions instead of one per order.

A crash between the two stages leaves a hold without an order. Orders reconciles such holds
(`services.orders.recovery.release_orphan_holds`): on start, every active hold placed before
the claim whose order was never written is released, and in the background, those older than
`ORPHAN_AGE`; a batch whose holds are older than `HOLD_TO_COMMIT_S` is not committed (it is
refused, the holds released), so the reconciliation never releases the hold of an order that
is still on its way. A failed commit fails the batch and stops the process (fail-stop): a
restart re-arms from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from services.orders import records
from services.orders.convert import built_row
from services.orders.domain.events import Event
from services.orders.domain.model import Order
from services.orders.partitions import Fenced, user_partition
from services.orders.records import order_event
from services.orders.validation import OrderIntent
from services.platform.errors import (
    LEDGER_BEHIND,
    AlreadyExists,
    FailedPrecondition,
    MbtError,
    Unavailable,
    error_from_status,
)
from services.platform.hotpath import HotPath
from services.platform.metrics import HOLD_LEDGER_WAITS, ORDERS, SUBMIT_STAGE
from services.platform.wire import ts_to_wire

if TYPE_CHECKING:
    from services.orders.app import OrdersApp

__all__ = [
    "HOLD_TO_COMMIT_S",
    "ORPHAN_AGE",
    "PendingSubmit",
    "SubmitPipeline",
    "payload_differences",
]

MAX_BATCH = 256
# a batch is committed within this long of asking for its holds, or not at all
HOLD_TO_COMMIT_S = 60.0
# a hold waits at most this long for the accounts ledger to apply the user's newest fill or
# order end (`ledger_marks`), asked again every LEDGER_RETRY_S; then it is decided as things are
LEDGER_WAIT_S = 2.0
LEDGER_RETRY_S = (0.002, 0.05)  # the first retry's delay, doubling up to the second
# the background reconciliation releases holds without an order once they are this old
ORPHAN_AGE = timedelta(minutes=10)
log = logging.getLogger("mbt.orders")

# One statement, one round trip, one commit: behind the fence (the batch's partitions read
# FOR SHARE: a claim by another process waits for this statement, and after the claim the rows
# no longer match, so nothing is written), the batch's orders are inserted (a client_order_id
# an order placed before holds is skipped: by the unique index, or for a refusal by the NOT
# EXISTS on tables.LIVE_ORDER's predicate, as a refused order does not hold its
# client_order_id) and orders left `new` by an earlier
# version are finished (only if still `new`); each order written gets its outbox event and its
# audit rows, in batch order. The rows come in as one JSON document (cheaper to encode than an
# array per column), the event payloads as one bytea array.
COMMIT_SQL = """
WITH fence AS (
  SELECT count(*) AS ok FROM (
    SELECT 1 FROM orders.partition_owners
    WHERE partition = ANY(%(parts)s::int[]) AND owner = %(me)s FOR SHARE
  ) f
), d AS (
  SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS d(
    n int, id text, user_id text, client_order_id text, symbol text, side text, qty numeric,
    order_type text, time_in_force text, limit_price numeric, stop_price numeric, status text,
    reject_reason text, account_id text, hold_amount numeric, fill_preference text,
    replaces text, legs jsonb, submitted_at timestamptz, accepted_at timestamptz,
    updated_at timestamptz, resumed boolean, action text, submit_detail jsonb, detail jsonb,
    subject text, msg_id text, part smallint)
  WHERE (SELECT ok FROM fence) = %(nparts)s
), ins AS (
  INSERT INTO orders.orders (id, user_id, account_id, client_order_id, symbol, side, qty,
    order_type, time_in_force, limit_price, stop_price, status, reject_reason, hold_amount,
    legs, fill_preference, replaces, submitted_at, accepted_at, updated_at)
  SELECT id, user_id, account_id, client_order_id, symbol, side, qty, order_type,
    time_in_force, limit_price, stop_price, status, reject_reason, hold_amount, legs,
    fill_preference, replaces, submitted_at, accepted_at, updated_at
  FROM d WHERE NOT resumed AND (d.status <> 'rejected' OR NOT EXISTS (
    SELECT 1 FROM orders.orders o WHERE o.user_id = d.user_id
    AND o.client_order_id = d.client_order_id
    AND (o.status <> 'rejected' OR o.accepted_at IS NOT NULL)))
  ON CONFLICT DO NOTHING
  RETURNING id
), upd AS (
  UPDATE orders.orders o SET status = d.status, reject_reason = d.reject_reason,
    accepted_at = d.accepted_at, account_id = d.account_id, hold_amount = d.hold_amount,
    fill_preference = d.fill_preference, updated_at = d.updated_at
  FROM d WHERE d.resumed AND o.id = d.id AND o.status = 'new'
  RETURNING o.id
), changed AS (
  SELECT id, true AS fresh FROM ins UNION ALL SELECT id, false FROM upd
), outbox AS (
  INSERT INTO orders.outbox (msg_id, subject, payload, partition)
  SELECT d.msg_id, d.subject, (%(payloads)s::bytea[])[d.n], d.part
  FROM d JOIN changed USING (id) ORDER BY d.n
), audit AS (
  INSERT INTO orders.audit_log (actor, action, order_id, sim_at, detail)
  SELECT a.actor, a.action, a.id, %(sim)s, a.detail FROM (
    SELECT d.n, 0 AS k, d.user_id AS actor, 'submit' AS action, d.id, d.submit_detail AS detail
    FROM d JOIN changed c USING (id) WHERE c.fresh
    UNION ALL
    SELECT d.n, 1, 'system', d.action, d.id, d.detail FROM d JOIN changed USING (id)
  ) a ORDER BY a.n, a.k
)
SELECT (SELECT ok FROM fence) AS fence, array(SELECT id FROM changed) AS changed
"""

# the columns of an order row the commit sends (the rest keep their defaults)
WRITTEN_COLUMNS = (
    "id",
    "user_id",
    "account_id",
    "client_order_id",
    "symbol",
    "side",
    "qty",
    "order_type",
    "time_in_force",
    "limit_price",
    "stop_price",
    "status",
    "reject_reason",
    "hold_amount",
    "legs",
    "fill_preference",
    "replaces",
    "submitted_at",
    "accepted_at",
    "updated_at",
)


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
    held: bool = False  # accounts placed its hold
    asked_at: float = 0.0  # when its hold was asked for (monotonic)
    # the ledger event its hold waits for (`ledger_marks`), until `ledger_deadline` (monotonic)
    after_event: str | None = None
    ledger_deadline: float = 0.0
    ledger_asks: int = 0  # times accounts answered that its ledger was behind
    # when it entered its current stage's queue (monotonic)
    queued_at: float = field(default_factory=time.monotonic)
    row: dict[str, Any] | None = None  # the row an earlier version left `new` (recovery)
    # a replacement: what the order it replaces had filled when it was asked for (it is
    # refused if that changed before its commit: it was sized, and held, for the rest)
    replaces_filled: Decimal = Decimal(0)


def order_row(p: PendingSubmit, now: datetime, wall: datetime) -> dict[str, Any]:
    """The order's row as the commit writes it (every column of `orders.orders`)."""
    i = p.intent
    row: dict[str, Any] = (
        dict(p.row)
        if p.row is not None
        else {
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
            "status_reason": "",
            "reject_reason": "",
            "filled_qty": Decimal(0),
            "filled_notional": Decimal(0),
            "fill_count": 0,
            "triggered": False,
            "hold_amount": Decimal(0),
            "legs": [{"symbol": x.symbol, "side": x.side.value, "ratio": x.ratio} for x in i.legs]
            or None,
            "fill_preference": None,
            "replaces": p.replaces,
            "replaced_by": None,
            "submitted_at": p.submitted_at,
            "accepted_at": None,
            "filled_at": None,
            "canceled_at": None,
            "account_id": None,
        }
    )
    if p.refusal is None:
        row.update(
            status="accepted",
            accepted_at=now,
            account_id=p.account_id,
            hold_amount=p.amount,
            fill_preference=p.preference,
            updated_at=wall,
        )
    else:
        row.update(status="rejected", reject_reason=p.refusal.message, updated_at=wall)
    return row


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


def refuse_stale_replacements(
    batch: list[PendingSubmit], book: Callable[[str], Order | None]
) -> None:
    """Refuse (in place) each replacement whose old order, on the `book`, has filled (even in
    part: the replacement was sized and held for the rest) or ended since it was asked for, or
    that an earlier replacement in the batch replaces already."""
    claimed: set[str] = set()
    for p in batch:
        if not p.replaces or p.refusal is not None or p.row is not None:
            continue
        old = book(p.replaces)
        if old is None or not old.is_open or p.replaces in claimed:
            why = "it filled or ended, or was replaced, before"
        elif old.filled_qty != p.replaces_filled:
            why = f"it filled {old.filled_qty - p.replaces_filled:f} more before"
        else:
            claimed.add(p.replaces)
            continue
        p.refusal = FailedPrecondition(
            f"order {p.replaces} was not replaced: {why} its replacement was accepted; ask again",
            reason="ORDER_NOT_OPEN",
        )


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
        self._hold_q: asyncio.Queue[PendingSubmit] = asyncio.Queue()
        self._commit_q: asyncio.Queue[PendingSubmit] = asyncio.Queue()
        self._in_flight: dict[tuple[str, str], PendingSubmit] = {}
        # per user, orders whose holds wait for the ledger, in their order: the user's later
        # orders queue behind them (one user's holds are decided in the order they came)
        self._ledger_waits: dict[str, list[PendingSubmit]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._commit_db = HotPath(app.settings.database_url)

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
        replaces_filled: Decimal = Decimal(0),
    ) -> dict[str, Any]:
        """Hold and commit one order; the accepted (or earlier) order row, or the reason it
        was refused (raised)."""
        key = (user_id, coid)
        while (ahead := self._in_flight.get(key)) is not None:
            # the same client_order_id is on its way: its order, once placed; refused, it
            # placed nothing and this is a new attempt
            with contextlib.suppress(Exception):
                await asyncio.shield(ahead.done)
            if self._in_flight.get(key) is ahead:
                del self._in_flight[key]
            if await records.fetch_by_client_id(self.app.db, user_id, coid, placed=True):
                return await self.repeat(user_id, coid, intent)
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        p = PendingSubmit(order_id, user_id, coid, intent, amount, replaces, submitted_at, done)
        p.replaces_filled = replaces_filled
        self._in_flight[key] = p

        def settled(_: object) -> None:
            # in flight until decided, even when its caller has gone (a timed-out RPC): a
            # retry with the same id waits for this attempt's outcome, never runs beside it
            if self._in_flight.get(key) is p:
                del self._in_flight[key]

        done.add_done_callback(settled)
        self._hold_q.put_nowait(p)
        return await asyncio.shield(done)

    async def repeat(self, user_id: str, coid: str, intent: OrderIntent) -> dict[str, Any]:
        """A client_order_id an order placed before holds: that order, if this is the same
        order."""
        existing = await records.fetch_by_client_id(self.app.db, user_id, coid, placed=True)
        if existing is None:  # not written, yet no order holds it (erased meanwhile)
            raise Unavailable(f"client_order_id {coid!r}: the order was not placed; submit again")
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
        """Finish an order an earlier version left `new` (recorded, maybe held): from the hold
        stage, or straight to rejection with `refusal`."""
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
            asked_at=time.monotonic(),
            row=dict(row),
        )
        (self._hold_q if refusal is None else self._commit_q).put_nowait(p)
        await done

    # ---- the stages ------------------------------------------------------------------------
    async def run(self) -> None:
        """The two stages, until one fails (fail-stop)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._stage("hold", self._hold_q, self._hold, self._commit_q))
            tg.create_task(self._stage("commit", self._commit_q, self._commit, None))

    async def _stage(
        self,
        name: str,
        inbox: asyncio.Queue[PendingSubmit],
        work: Any,
        outbox: asyncio.Queue[PendingSubmit] | None,
    ) -> None:
        waited, took = SUBMIT_STAGE.labels(f"{name}_wait"), SUBMIT_STAGE.labels(name)
        while True:
            batch = _drain(inbox, await inbox.get())
            start = time.monotonic()
            waited.observe(start - min(p.queued_at for p in batch))
            try:
                passed: list[PendingSubmit] = await work(batch)
            except Exception as exc:
                _fail(batch, exc)
                raise  # fail-stop: the process restarts and re-arms from the database
            end = time.monotonic()
            took.observe(end - start)
            if outbox is not None:
                for p in passed:
                    p.queued_at = end
                    outbox.put_nowait(p)

    def _aside(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _answer_repeat(self, p: PendingSubmit) -> None:
        try:
            if p.held:  # the hold placed for this attempt is not needed
                await self._release(p.order_id)
            p.done.set_result(await self.repeat(p.user_id, p.client_order_id, p.intent))
        except Exception as exc:
            p.done.set_exception(exc)

    async def _hold(self, batch: list[PendingSubmit]) -> list[PendingSubmit]:
        """Reserve the batch's buying power in one call to accounts."""
        app = self.app
        asking: list[PendingSubmit] = []
        for p in batch:
            waiting = self._ledger_waits.get(p.user_id)
            if waiting is not None:  # behind the user's orders that wait for the ledger
                waiting.append(p)
            else:
                asking.append(p)
        batch = asking
        if not batch:
            return []
        request = acct_pb.PlaceHoldsRequest()
        asked = time.monotonic()
        expired: set[str] = set()  # users whose oldest waiting hold has waited long enough
        for p in batch:
            p.asked_at = asked
            if p.after_event is None:  # first time asked
                p.after_event = app.ledger_marks.after(p.user_id)
                p.ledger_deadline = asked + LEDGER_WAIT_S
            if p.after_event and (asked >= p.ledger_deadline or p.user_id in expired):
                # decide on the ledger as it is, and the user's holds after it too
                expired.add(p.user_id)
                app.ledger_marks.gave_up(p.user_id, p.after_event)
                p.after_event = ""
                HOLD_LEDGER_WAITS.labels("gave_up").inc()
            # a spread reserves cash as a package; a plain sell reserves what it sells
            request.holds.add(
                user_id=p.user_id,
                order_id=p.order_id,
                symbol=p.intent.symbol,
                side="buy" if p.intent.legs else p.intent.side.value,
                qty=str(p.intent.qty),
                amount=str(p.amount),
                as_of=ts_to_wire(app.sim_now),
                after_event=p.after_event,
                package=bool(p.intent.legs),
                replaces=p.replaces or "",
            )
        try:
            reply = await app.holds.call(request)
        except MbtError as exc:  # accounts unreachable: the batch is refused, with the reason
            for p in batch:
                p.refusal = exc
            return batch
        behind: list[PendingSubmit] = []
        for p, result in zip(batch, reply.results, strict=True):
            if result.HasField("error"):
                error = error_from_status(result.error)
                if error.reason == LEDGER_BEHIND:  # not decided yet: asked again shortly
                    behind.append(p)
                    continue
                p.refusal = error
            else:
                p.held = True
                p.account_id = result.hold.account_id
                p.preference = (
                    p.intent.fill_preference or result.hold.default_fill_preference or "aggressive"
                )
        if behind:
            for p in behind:
                p.ledger_asks += 1
                if p.ledger_asks == 1:
                    HOLD_LEDGER_WAITS.labels("deferred").inc()
                if p.user_id not in self._ledger_waits:
                    self._ledger_waits[p.user_id] = []
                    first, most = LEDGER_RETRY_S
                    delay = min(first * 2 ** (p.ledger_asks - 1), most)
                    self._aside(self._ask_again(p.user_id, delay))
                self._ledger_waits[p.user_id].append(p)
            deferred = {id(p) for p in behind}
            batch = [p for p in batch if id(p) not in deferred]
        return batch

    async def _ask_again(self, user_id: str, delay: float) -> None:
        """A user's holds the ledger was not ready for, and the orders that came after them:
        back in the hold queue, in order, a moment later (other users' batches go on)."""
        try:
            await asyncio.sleep(delay)
        finally:
            now = time.monotonic()
            for p in self._ledger_waits.pop(user_id, []):
                p.queued_at = now
                self._hold_q.put_nowait(p)

    async def _commit(self, batch: list[PendingSubmit]) -> list[PendingSubmit]:
        """Write the batch's orders, accepted or rejected, in one statement; then the engine."""
        app = self.app
        late = [p for p in batch if time.monotonic() - p.asked_at > HOLD_TO_COMMIT_S]
        if late:  # too long since the holds: reconciliation may release them; refuse instead
            for p in late:
                if p.held:
                    self._aside(self._release(p.order_id))
                p.done.set_exception(
                    Unavailable("the order could not be accepted in time; submit it again")
                )
            batch = [p for p in batch if not p.done.done()]
            if not batch:
                return []
        async with app.lock:
            now, wall = app.sim_now, datetime.now(UTC)
            sim = now.isoformat()
            refuse_stale_replacements(batch, app.matching.get)
            after: dict[str, dict[str, Any]] = {}
            rows: list[dict[str, Any]] = []
            payloads: list[bytes] = []
            for n, p in enumerate(batch, start=1):
                row = after[p.order_id] = built_row(order_row(p, now, wall))
                subject, payload, msg_id = order_event(
                    "accepted" if p.refusal is None else "rejected", row, p.user_id
                )
                payloads.append(payload)
                rows.append(
                    {c: row[c] for c in WRITTEN_COLUMNS}
                    | {
                        "n": n,
                        "resumed": p.row is not None,
                        "action": "accept" if p.refusal is None else "reject",
                        "submit_detail": _submit_detail(p),
                        "detail": {"sim_at": sim}
                        if p.refusal is None
                        else {"reason": p.refusal.message},
                        "subject": subject,
                        "msg_id": msg_id,
                        "part": user_partition(p.user_id),
                    }
                )
            parts = sorted({app.ownership.partition_of(p.user_id) for p in batch})
            own = app.ownership
            cur = await self._commit_db.fetch(
                COMMIT_SQL,
                {
                    "parts": parts,
                    "me": own.token,
                    "nparts": len(parts),
                    "rows": json.dumps(rows, default=str),  # decimals and times as text
                    "payloads": payloads,
                    "sim": now,
                },
            )
            (result,) = cur
            if result["fence"] != len(parts):
                await self._release_all([p for p in batch if p.held])
                raise Fenced(
                    f"orders instance {own.instance} was fenced out: another process claimed "
                    "a partition of this batch"
                )
            done = set(result["changed"])
            accepted = [p for p in batch if p.refusal is None]
            # each accepted replacement's old order leaves the book now, before the new one
            # enters it (a crash in between: `recovery.finish_replacements` on the restart)
            replaced = [p for p in accepted if p.replaces and p.row is None and p.order_id in done]
            for p in replaced:
                assert p.replaces is not None
                if not await app.replace_old(p.replaces, p.order_id, p.user_id):
                    log.error("replacement %s: %s was not open", p.order_id, p.replaces)
            ORDERS.labels("accepted").inc(sum(1 for p in accepted if p.order_id in done))
            ORDERS.labels("rejected").inc(sum(1 for p in batch if p.refusal and p.order_id in done))
            engine_events: list[Event] = []
            for p in accepted:
                if p.order_id in done:
                    engine_events += app.matching.accept(records.domain_order(after[p.order_id]))
            if engine_events:
                await app.persist(engine_events)
                for e in {ev.order_id for ev in engine_events}:
                    if e in after:
                        after[e] = await records.fetch(app.db, e)
        for p in replaced:  # the old orders' holds, now that the new ones hold theirs
            assert p.replaces is not None
            self._aside(app.release_now(p.user_id, p.replaces))
        for p in batch:
            if p.done.done():
                continue
            if p.refusal is not None and p.held:
                self._aside(self._release(p.order_id))  # refused at commit, after its hold
            if p.order_id not in done:
                if p.row is not None:  # an earlier version's order, canceled meanwhile
                    if p.held:
                        self._aside(self._release(p.order_id))
                    p.done.set_result(await records.fetch(app.db, p.order_id))
                else:  # its client_order_id was used before: the original order
                    self._aside(self._answer_repeat(p))
            elif p.refusal is not None:
                p.done.set_exception(p.refusal)
            else:
                p.done.set_result(after[p.order_id])
        # the relay publishes the batch's events once the callers have their answers (woken
        # before, it would take the loop first)
        app.outbox.wake()
        return []

    async def _release(self, order_id: str) -> None:
        app = self.app
        try:
            await app.accounts.call(
                app.accounts_stub.ReleaseHold, acct_pb.ReleaseHoldRequest(order_id=order_id)
            )
        except MbtError as exc:  # the reconciliation releases it later
            log.warning("hold of order %s not released now: %s", order_id, exc.message)

    async def _release_all(self, batch: list[PendingSubmit]) -> None:
        """Best effort before stopping (what is left, the next owner's reconciliation frees)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(self._release(p.order_id) for p in batch)), timeout=2
            )


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
