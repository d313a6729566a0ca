"""Recovery on start: re-arm the book from the database and catch up on missed quotes.

An order an earlier version left `new` (its hold may or may not have been placed) is finished
here: the hold is placed again (idempotent per order) and the order accepted, or rejected.
A hold whose order was never written (a crash between the submit pipeline's hold and its
commit) is released (`release_orphan_holds`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import ARRAY, String, any_, cast, func, select

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import marketdata_service_pb2 as md_pb
from services.conventions.quote import Quote
from services.orders import records
from services.orders.accept import ORPHAN_AGE
from services.orders.adapters.tables import orders
from services.orders.convert import quote_from_pb
from services.orders.domain.model import OrderType, Side, TimeInForce
from services.orders.validation import OrderIntent
from services.platform.errors import MbtError
from services.platform.wire import ts_from_wire, ts_to_wire

if TYPE_CHECKING:
    from services.orders.app import OrdersApp

__all__ = ["catch_up", "rearm", "reconcile_holds_forever", "release_orphan_holds"]

ORPHAN_SWEEP_S = 300.0

log = logging.getLogger("mbt.orders")


async def rearm(app: OrdersApp) -> int:
    """Rebuild the book from the database after a (re)start; finish orders left `new`."""
    try:
        clock = await app.marketdata.call(app.md_stub.GetClock, md_pb.GetClockRequest())
        app.advance(ts_from_wire(clock.timestamp))
    except MbtError:
        log.warning("market clock unavailable at start; waiting for quotes")
    async with app.db.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(orders)
                    .where(orders.c.status.in_(records.OPEN_STATUSES))
                    .order_by(orders.c.submitted_at)
                )
            )
            .mappings()
            .all()
        )
    rows = [r for r in rows if app.ownership.owns(str(r["user_id"]))]  # this instance's only
    finished = await finish_replacements(app, [str(r["id"]) for r in rows])
    rows = [r for r in rows if str(r["id"]) not in finished]
    armed = 0
    for r in rows:
        if r["status"] == "new":
            await resume_new(app, dict(r))
            continue
        async with app.lock:
            events = app.matching.accept(records.domain_order(r, rested=True))
            if events:
                await app.persist(events)
        armed += 1
    log.info("re-armed %d open orders", armed)
    await catch_up(app, [dict(r) for r in rows if r["status"] != "new"])
    return armed


async def finish_replacements(app: OrdersApp, open_ids: list[str]) -> set[str]:
    """Open orders whose replacement was accepted (a crash came between committing the new
    order and marking the old one): the old ones become `replaced` now, their holds released.
    The ids of those finished."""
    if not open_ids:
        return set()
    async with app.db.connect() as conn:
        pending = (
            await conn.execute(
                select(orders.c.id, orders.c.user_id, orders.c.replaces).where(
                    orders.c.replaces == any_(cast(open_ids, ARRAY(String))),
                    orders.c.accepted_at.is_not(None),
                )
            )
        ).all()
    finished: set[str] = set()
    for r in pending:
        async with app.lock:
            if await app.replace_old(str(r.replaces), str(r.id), str(r.user_id)):
                finished.add(str(r.replaces))
        await app.release_now(str(r.user_id), str(r.replaces))
    if finished:
        log.info("finished %d replacements a stop left half done", len(finished))
    return finished


async def catch_up(app: OrdersApp, rows: list[dict[str, Any]]) -> int:
    """Feed the quotes published while this process was down to the re-armed orders.

    For each symbol with open orders, the market-data service's recent quotes since the
    oldest acceptance are replayed in time order, so no trigger it can see is missed.
    """
    since: dict[str, datetime] = {}
    for r in rows:
        if r["accepted_at"] is not None:
            t = r["accepted_at"]
            since[r["symbol"]] = min(since.get(r["symbol"], t), t)
    quotes: list[Quote] = []
    for symbol, start in since.items():
        token = ""
        while True:
            req = md_pb.ListQuotesRequest(symbol=symbol, page_size=500, page_token=token)
            req.start_time.CopyFrom(ts_to_wire(start))
            req.end_time.CopyFrom(ts_to_wire(max(app.sim_now, start) + timedelta(seconds=1)))
            try:
                page = await app.marketdata.call(app.md_stub.ListQuotes, req)
            except MbtError as exc:
                log.warning("catch-up for %s unavailable: %s", symbol, exc.message)
                break
            quotes += [quote_from_pb(q) for q in page.quotes]
            token = page.next_page_token
            if not token:
                break
    quotes.sort(key=lambda q: (q.ts, q.symbol))
    for q in quotes:
        await app.on_quote(q)
    if quotes:
        log.info("caught up on %d quotes", len(quotes))
    return len(quotes)


async def resume_new(app: OrdersApp, r: dict[str, Any]) -> None:
    intent = OrderIntent(
        symbol=r["symbol"],
        side=Side(r["side"]),
        qty=Decimal(r["qty"]),
        order_type=OrderType(r["order_type"]),
        time_in_force=TimeInForce(r["time_in_force"]),
        limit_price=r["limit_price"],
        stop_price=r["stop_price"],
        client_order_id=r["client_order_id"],
        legs=records.domain_order(r).legs,
    )
    try:
        amount = await app.hold_for(intent)
        refusal = None
    except MbtError as exc:  # no quote to size the hold: rejected, with the reason
        amount, refusal = Decimal(0), exc
    try:
        await app.accepts.resume(r, intent, amount, refusal)
    except MbtError as exc:
        log.info("order %s left new at restart was rejected: %s", r["id"], exc.message)


async def release_orphan_holds(app: OrdersApp, created_before: datetime) -> int:
    """Release the active holds placed before `created_before` for this instance's users whose
    order was never written; how many were released."""
    released, after = 0, ""
    while True:
        req = acct_pb.ListActiveHoldsRequest(after_order_id=after, page_size=1000)
        req.created_before.CopyFrom(ts_to_wire(created_before))
        page = await app.accounts.call(app.accounts_stub.ListActiveHolds, req)
        mine = [h.order_id for h in page.holds if app.ownership.owns(h.user_id)]
        if mine:
            async with app.db.connect() as conn:
                known = set(
                    (await conn.execute(select(orders.c.id).where(orders.c.id.in_(mine)))).scalars()
                )
            for order_id in mine:
                if order_id not in known:
                    await app.accounts.call(
                        app.accounts_stub.ReleaseHold,
                        acct_pb.ReleaseHoldRequest(order_id=order_id),
                    )
                    log.warning("released the hold of order %s, which was never written", order_id)
                    released += 1
        after = page.next_after_order_id
        if not after:
            return released


async def reconcile_holds_forever(app: OrdersApp) -> None:
    """Once, every hold placed before this process claimed its partitions; then, every few
    minutes, those older than `ORPHAN_AGE` (a submit commits within `HOLD_TO_COMMIT_S` of its
    hold or not at all, so no order still on its way loses its hold)."""
    before = app.ownership.claimed_at
    while True:
        if before is not None:
            try:
                await release_orphan_holds(app, before)
            except MbtError as exc:  # accounts away: the next sweep does it
                log.warning("orphan-hold reconciliation postponed: %s", exc.message)
        await asyncio.sleep(ORPHAN_SWEEP_S)
        async with app.db.connect() as conn:
            now = (await conn.execute(select(func.now()))).scalar_one()
        before = now - ORPHAN_AGE
