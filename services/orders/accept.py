"""The accept pipeline: place the buying-power hold, then group-commit the acceptance.

Concurrent submits share one commit (one set-based UPDATE, one outbox insert, one audit insert)
under the engine lock, and every order in a batch is accepted at the same market time, before
the engine sees the next quote. A failed commit fails every waiter and stops the process
(fail-stop): a restart re-arms from the database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import text, update

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from services.orders import records
from services.orders.adapters.tables import audit_log, orders
from services.orders.domain.events import Event
from services.orders.validation import OrderIntent
from services.platform.db import UnitOfWork
from services.platform.errors import MbtError
from services.platform.wire import ts_to_wire

if TYPE_CHECKING:
    from services.orders.app import OrdersApp

__all__ = ["AcceptPipeline", "PendingAccept"]

MAX_BATCH = 256


@dataclass
class PendingAccept:
    """An order whose hold is placed, waiting for the next group commit."""

    order_id: str
    user_id: str
    account_id: str
    amount: Decimal
    preference: str
    done: asyncio.Future[dict[str, Any] | None]


class AcceptPipeline:
    def __init__(self, app: OrdersApp) -> None:
        self.app = app
        self._accepts: asyncio.Queue[PendingAccept] = asyncio.Queue()

    async def hold_and_accept(
        self, order_id: str, user_id: str, intent: OrderIntent, amount: Decimal
    ) -> dict[str, Any]:
        # a spread reserves cash as a package; a plain sell reserves what it sells
        hold_side = "buy" if intent.legs else intent.side.value
        try:
            held = await self.app.accounts.call(
                self.app.accounts_stub.PlaceHold,
                acct_pb.PlaceHoldRequest(
                    user_id=user_id,
                    order_id=order_id,
                    symbol=intent.symbol,
                    side=hold_side,
                    qty=str(intent.qty),
                    amount=str(amount),
                    as_of=ts_to_wire(self.app.sim_now),
                ),
            )
        except MbtError as exc:
            await self.reject(order_id, user_id, exc.message)
            raise
        preference = intent.fill_preference or held.default_fill_preference or "aggressive"
        done: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        await self._accepts.put(
            PendingAccept(order_id, user_id, held.account_id, amount, str(preference), done)
        )
        row = await done
        return row if row is not None else await records.fetch(self.app.db, order_id)

    async def run(self) -> None:
        """Group commit: accept every order waiting, in one transaction, under the engine lock.

        Concurrent submits share one commit (one set-based UPDATE, one outbox insert, one audit
        insert), and every order in the batch is accepted at the same market time, before the
        engine sees the next quote.
        """
        while True:
            batch = [await self._accepts.get()]
            while not self._accepts.empty() and len(batch) < MAX_BATCH:
                batch.append(self._accepts.get_nowait())
            try:
                rows = await self._accept_batch(batch)
            except Exception as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                raise  # fail-stop: the process restarts and re-arms from the database
            for item in batch:
                item.done.set_result(rows.get(item.order_id))

    async def _accept_batch(self, batch: list[PendingAccept]) -> dict[str, dict[str, Any]]:
        async with self.app.lock:
            now = self.app.sim_now
            async with UnitOfWork(self.app.db, self.app.outbox) as uow:
                result = await uow.conn.execute(
                    text(
                        "UPDATE orders.orders o SET status = 'accepted', accepted_at = :now, "
                        "account_id = d.acct, hold_amount = d.amount, fill_preference = d.pref, "
                        "updated_at = now() FROM unnest(CAST(:ids AS text[]), "
                        "CAST(:accts AS text[]), CAST(:amounts AS numeric[]), "
                        "CAST(:prefs AS text[])) AS d(id, acct, amount, pref) "
                        "WHERE o.id = d.id AND o.status = 'new' RETURNING o.*"
                    ),
                    {
                        "now": now,
                        "ids": [b.order_id for b in batch],
                        "accts": [b.account_id for b in batch],
                        "amounts": [b.amount for b in batch],
                        "prefs": [b.preference for b in batch],
                    },
                )
                # rows canceled while their hold was being placed are not updated
                rows = {str(r["id"]): dict(r) for r in result.mappings()}
                user_of = {b.order_id: b.user_id for b in batch}
                for oid, row in rows.items():
                    records.emit_order(uow, "accepted", row, user_of[oid])
                if rows:
                    await uow.conn.execute(
                        audit_log.insert(),
                        [
                            {
                                "actor": "system",
                                "action": "accept",
                                "order_id": oid,
                                "sim_at": now,
                                "detail": {"sim_at": now.isoformat()},
                            }
                            for oid in rows
                        ],
                    )
            events: list[Event] = []
            for oid in sorted(rows, key=lambda o: [b.order_id for b in batch].index(o)):
                events += self.app.matching.accept(records.domain_order(rows[oid]))
            if events:
                await self.app.persist(events)
                for e in events:
                    if e.order_id in rows:
                        rows[e.order_id] = await records.fetch(self.app.db, e.order_id)
        return rows

    async def reject(self, order_id: str, user_id: str, reason: str) -> None:
        async with UnitOfWork(self.app.db, self.app.outbox) as uow:
            row = (
                (
                    await uow.conn.execute(
                        update(orders)
                        .where(orders.c.id == order_id)
                        .values(
                            status="rejected", reject_reason=reason, updated_at=datetime.now(UTC)
                        )
                        .returning(*orders.c)
                    )
                )
                .mappings()
                .one()
            )
            records.emit_order(uow, "rejected", row, user_id)
            await records.audit(
                uow, self.app.sim_now, "system", "reject", order_id, {"reason": reason}
            )
