"""The orders application: submit/cancel, the matching engine fed by quotes, persistence.

Concurrency: one asyncio lock serialises the engine and the writes of its events, so the
database sees engine events in the order the engine produced them. If a write fails, the
process exits (fail-stop) and a restart re-arms the book from the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import accounts_service_pb2_grpc as acct_grpc
from raxx.mbt.v1 import events_pb2
from raxx.mbt.v1 import marketdata_service_pb2 as md_pb
from raxx.mbt.v1 import marketdata_service_pb2_grpc as md_grpc
from services.orders.adapters.tables import audit_log, fills, orders
from services.orders.convert import fill_to_pb, order_to_pb, quote_from_pb
from services.orders.domain.engine import MatchingEngine
from services.orders.domain.events import (
    Event,
    FillDeferred,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    StopTriggered,
)
from services.orders.domain.model import (
    FillPreference,
    Leg,
    Order,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    TimeInForce,
)
from services.orders.holds import package_hold, single_hold
from services.orders.validation import OrderIntent
from services.platform.auth import Principal
from services.platform.clients import ServiceChannel
from services.platform.db import UnitOfWork
from services.platform.errors import FailedPrecondition, MbtError, NotFound, Unavailable
from services.platform.outbox import Outbox
from services.platform.settings import Settings
from services.platform.wire import ts_from_wire, ts_to_wire

log = logging.getLogger("mbt.orders")

OPEN_STATUSES = ("new", "accepted", "partially_filled")
# Market and stop buys reserve the current ask plus a collar, since they fill on a later quote.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class _Accept:
    """An order whose hold is placed, waiting for the next group commit."""

    order_id: str
    user_id: str
    account_id: str
    amount: Decimal
    preference: str
    done: asyncio.Future[dict[str, Any] | None]


class OrdersApp:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Outbox,
        matching: MatchingEngine,
        accounts: ServiceChannel,
        marketdata: ServiceChannel,
        settings: Settings,
    ) -> None:

        self.db = engine
        self.outbox = outbox
        self.matching = matching
        self.accounts = accounts
        self.accounts_stub = acct_grpc.AccountsServiceStub(accounts.channel)
        self.marketdata = marketdata
        self.md_stub = md_grpc.MarketDataServiceStub(marketdata.channel)
        self.settings = settings
        self.lock = asyncio.Lock()
        self._accepts: asyncio.Queue[_Accept] = asyncio.Queue()
        self.sim_now = EPOCH
        self.feed_stale_reason = ""  # set while market data says its feed is stale
        self.known_symbols: set[str] = set()  # symbols market data has confirmed

    # ---- time -------------------------------------------------------------------------
    def advance(self, ts: datetime) -> None:
        if ts > self.sim_now:
            self.sim_now = ts

    async def on_clock(self, now: datetime) -> None:
        self.advance(now)
        async with self.lock:
            events = self.matching.on_time(self.sim_now)
            if events:
                await self._persist(events)

    async def on_quote(self, q: Quote) -> None:
        self.advance(q.ts)
        async with self.lock:
            events = self.matching.on_quote(q)
            if events:
                await self._persist(events)

    # ---- commands -----------------------------------------------------------------------
    async def submit(
        self, user: Principal, intent: OrderIntent, replaces: str | None = None
    ) -> dict[str, Any]:
        if self.settings.trading_disabled:
            raise Unavailable("trading is disabled (read-only mode)", reason="TRADING_DISABLED")
        if self.settings.new_orders_disabled:
            raise Unavailable(
                "new orders are disabled; views and cancels still work",
                reason="NEW_ORDERS_DISABLED",
            )
        if self.feed_stale_reason:
            raise Unavailable(
                f"market data is stale ({self.feed_stale_reason}); new orders are paused until "
                "quotes return",
                reason="MARKET_DATA_STALE",
            )
        coid = intent.client_order_id or str(uuid.uuid4())
        if intent.client_order_id:  # a repeat returns the original order
            existing = await self._by_client_id(user.user_id, coid)
            if existing is not None:
                return existing
        amount = await self._hold_for(intent)
        order_id = str(uuid.uuid4())
        now_wall = datetime.now(UTC)
        async with UnitOfWork(self.db) as uow:
            inserted = (
                await uow.conn.execute(
                    insert(orders)
                    .values(
                        id=order_id,
                        user_id=user.user_id,
                        client_order_id=coid,
                        symbol=intent.symbol,
                        side=intent.side.value,
                        qty=intent.qty,
                        order_type=intent.order_type.value,
                        time_in_force=intent.time_in_force.value,
                        limit_price=intent.limit_price,
                        stop_price=intent.stop_price,
                        status="new",
                        replaces=replaces,
                        legs=[
                            {"symbol": leg.symbol, "side": leg.side.value, "ratio": leg.ratio}
                            for leg in intent.legs
                        ]
                        or None,
                        submitted_at=now_wall,
                    )
                    .on_conflict_do_nothing(constraint="orders_client_order_id_per_user")
                    .returning(orders.c.id)
                )
            ).first()
            if inserted is not None:
                await self._audit(
                    uow,
                    user.user_id,
                    "submit",
                    order_id,
                    {
                        "symbol": intent.symbol,
                        "side": intent.side.value,
                        "qty": str(intent.qty),
                        "type": intent.order_type.value,
                        "tif": intent.time_in_force.value,
                        "limit": str(intent.limit_price or ""),
                        "stop": str(intent.stop_price or ""),
                    },
                )
        if inserted is None:  # a concurrent duplicate won the insert
            dup = await self._by_client_id(user.user_id, coid)
            assert dup is not None
            return dup
        return await self._hold_and_accept(order_id, user.user_id, intent, amount)

    async def _current_quote(self, symbol: str) -> Quote:
        """The engine's latest quote, else market data's (which also answers NOT_FOUND for an
        unknown symbol and FAILED_PRECONDITION when there is no quote yet)."""
        q = self.matching.latest_quote(symbol) if symbol in self.known_symbols else None
        if q is not None:
            return q
        quote = await self.marketdata.call(
            self.md_stub.GetQuote, md_pb.GetQuoteRequest(symbol=symbol)
        )
        self.known_symbols.add(symbol)
        return quote_from_pb(quote)

    async def _hold_for(self, intent: OrderIntent) -> Decimal:
        if intent.legs:
            quotes = {leg.symbol: await self._current_quote(leg.symbol) for leg in intent.legs}
            return package_hold(intent, quotes)
        return single_hold(intent, (await self._current_quote(intent.symbol)).ask)

    async def _hold_and_accept(
        self, order_id: str, user_id: str, intent: OrderIntent, amount: Decimal
    ) -> dict[str, Any]:
        # a spread reserves cash as a package; a plain sell reserves what it sells
        hold_side = "buy" if intent.legs else intent.side.value
        try:
            held = await self.accounts.call(
                self.accounts_stub.PlaceHold,
                acct_pb.PlaceHoldRequest(
                    user_id=user_id,
                    order_id=order_id,
                    symbol=intent.symbol,
                    side=hold_side,
                    qty=str(intent.qty),
                    amount=str(amount),
                    as_of=ts_to_wire(self.sim_now),
                ),
            )
        except MbtError as exc:
            await self._reject(order_id, user_id, exc.message)
            raise
        preference = intent.fill_preference or held.default_fill_preference or "aggressive"
        done: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        await self._accepts.put(
            _Accept(order_id, user_id, held.account_id, amount, str(preference), done)
        )
        row = await done
        return row if row is not None else await self._get(order_id)

    async def run_accepts(self) -> None:
        """Group commit: accept every order waiting, in one transaction, under the engine lock.

        Concurrent submits share one commit (one set-based UPDATE, one outbox insert, one audit
        insert), and every order in the batch is accepted at the same market time, before the
        engine sees the next quote.
        """
        while True:
            batch = [await self._accepts.get()]
            while not self._accepts.empty() and len(batch) < 256:
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

    async def _accept_batch(self, batch: list[_Accept]) -> dict[str, dict[str, Any]]:
        async with self.lock:
            now = self.sim_now
            async with UnitOfWork(self.db, self.outbox) as uow:
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
                    self._emit_order(uow, "accepted", row, user_of[oid])
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
                events += self.matching.accept(self._domain_order(rows[oid]))
            if events:
                await self._persist(events)
                for e in events:
                    if e.order_id in rows:
                        rows[e.order_id] = await self._get(e.order_id)
        return rows

    async def _reject(self, order_id: str, user_id: str, reason: str) -> None:
        async with UnitOfWork(self.db, self.outbox) as uow:
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
            self._emit_order(uow, "rejected", row, user_id)
            await self._audit(uow, "system", "reject", order_id, {"reason": reason})

    async def cancel(self, user: Principal, order_id: str) -> dict[str, Any]:
        row = await self.get_for_user(user.user_id, order_id)
        if row["status"] not in OPEN_STATUSES:
            return row
        if self.settings.trading_disabled:
            raise Unavailable("trading is disabled (read-only mode)", reason="TRADING_DISABLED")
        async with self.lock:
            events = self.matching.cancel(order_id, self.sim_now)
            if events:
                await self._persist(events, actor=user.user_id)
            else:
                async with UnitOfWork(self.db, self.outbox) as uow:
                    r = (
                        (
                            await uow.conn.execute(
                                update(orders)
                                .where(orders.c.id == order_id, orders.c.status.in_(OPEN_STATUSES))
                                .values(
                                    status="canceled",
                                    canceled_at=self.sim_now,
                                    status_reason="canceled by user",
                                    updated_at=datetime.now(UTC),
                                )
                                .returning(*orders.c)
                            )
                        )
                        .mappings()
                        .first()
                    )
                    if r is not None:
                        self._emit_order(uow, "canceled", r, user.user_id)
                        await self._audit(uow, user.user_id, "cancel", order_id, {})
        done = await self._get(order_id)
        if done["status"] == "canceled":
            # give the buying power back now, not when the ledger sees the event (idempotent)
            await self.accounts.call(
                self.accounts_stub.ReleaseHold, acct_pb.ReleaseHoldRequest(order_id=order_id)
            )
        return done

    async def replace(
        self, user: Principal, order_id: str, changes: dict[str, Any], new_coid: str
    ) -> dict[str, Any]:
        """Replace an open order: the old one becomes `replaced`, a new one is submitted.

        Like Alpaca, this is cancel-then-submit: the old order leaves the book first (and its
        hold is released), so a replacement never needs buying power for both.
        """
        if self.settings.trading_disabled or self.settings.new_orders_disabled:
            raise Unavailable(
                "new orders are disabled; views and cancels still work",
                reason="NEW_ORDERS_DISABLED",
            )
        old = await self.get_for_user(user.user_id, order_id)
        if old["legs"]:
            raise FailedPrecondition(
                "multi-leg orders are not replaced: cancel it and submit the new spread",
                reason="REPLACE_NOT_SUPPORTED",
            )
        if old["status"] not in OPEN_STATUSES:
            raise FailedPrecondition(
                f"order {order_id} is {old['status']}; only open orders can be replaced",
                reason="ORDER_NOT_OPEN",
                metadata={"status": old["status"]},
            )
        intent = OrderIntent(
            symbol=old["symbol"],
            side=Side(old["side"]),
            qty=changes.get("qty") or Decimal(old["qty"]) - Decimal(old["filled_qty"]),
            order_type=OrderType(old["order_type"]),
            time_in_force=changes.get("time_in_force") or TimeInForce(old["time_in_force"]),
            limit_price=changes.get("limit_price") or old["limit_price"],
            stop_price=changes.get("stop_price") or old["stop_price"],
            client_order_id=new_coid,
        )
        async with self.lock:
            self.matching.cancel(order_id, self.sim_now)  # leaves the book; recorded below
            new_id_placeholder = str(uuid.uuid4())
            async with UnitOfWork(self.db, self.outbox) as uow:
                row = (
                    (
                        await uow.conn.execute(
                            update(orders)
                            .where(orders.c.id == order_id, orders.c.status.in_(OPEN_STATUSES))
                            .values(
                                status="replaced",
                                replaced_by=new_id_placeholder,
                                canceled_at=self.sim_now,
                                updated_at=datetime.now(UTC),
                            )
                            .returning(*orders.c)
                        )
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    raise FailedPrecondition(
                        f"order {order_id} is no longer open", reason="ORDER_NOT_OPEN"
                    )
                self._emit_order(uow, "replaced", row, user.user_id)
                await self._audit(
                    uow,
                    user.user_id,
                    "replace",
                    order_id,
                    {"changes": {k: str(v) for k, v in changes.items()}},
                )
        await self.accounts.call(
            self.accounts_stub.ReleaseHold, acct_pb.ReleaseHoldRequest(order_id=order_id)
        )
        new = await self.submit(user, intent, replaces=order_id)
        async with self.db.begin() as conn:
            await conn.execute(
                update(orders).where(orders.c.id == order_id).values(replaced_by=new["id"])
            )
        return new

    async def cancel_all(self, user: Principal) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            ids = (
                (
                    await conn.execute(
                        select(orders.c.id).where(
                            orders.c.user_id == user.user_id, orders.c.status.in_(OPEN_STATUSES)
                        )
                    )
                )
                .scalars()
                .all()
            )
        return [await self.cancel(user, oid) for oid in ids]

    async def erase_user(self, user_id: str, bus: Any) -> int:
        """GDPR erasure: take the user's open orders out of the book, then delete their rows."""
        from services.orders import privacy

        async with self.db.connect() as conn:
            open_ids = (
                (
                    await conn.execute(
                        select(orders.c.id).where(
                            orders.c.user_id == user_id, orders.c.status.in_(OPEN_STATUSES)
                        )
                    )
                )
                .scalars()
                .all()
            )
        async with self.lock:
            for oid in open_ids:
                self.matching.cancel(oid, self.sim_now)  # nothing is recorded: the rows go
            return await privacy.erase_user(self.db, bus, self.settings.jwt_secret, user_id)

    # ---- queries ------------------------------------------------------------------------
    async def _get(self, order_id: str) -> dict[str, Any]:
        async with self.db.connect() as conn:
            row = (
                (await conn.execute(select(orders).where(orders.c.id == order_id))).mappings().one()
            )
        return dict(row)

    async def get_for_user(self, user_id: str, order_id: str) -> dict[str, Any]:
        try:
            uuid.UUID(order_id)
        except ValueError:
            raise NotFound(f"order {order_id!r} not found", reason="ORDER_NOT_FOUND") from None
        async with self.db.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(orders).where(orders.c.id == order_id, orders.c.user_id == user_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:  # another user's order is "not found", never "forbidden"
            raise NotFound(
                f"order {order_id} not found",
                reason="ORDER_NOT_FOUND",
                metadata={"orderId": order_id},
            )
        return dict(row)

    async def _by_client_id(self, user_id: str, coid: str) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(orders).where(
                            orders.c.user_id == user_id, orders.c.client_order_id == coid
                        )
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    # ---- recovery -----------------------------------------------------------------------
    async def rearm(self) -> int:
        """Rebuild the book from the database after a (re)start; finish orders left `new`."""
        try:
            clock = await self.marketdata.call(self.md_stub.GetClock, md_pb.GetClockRequest())
            self.advance(ts_from_wire(clock.timestamp))
        except MbtError:
            log.warning("market clock unavailable at start; waiting for quotes")
        async with self.db.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(orders)
                        .where(orders.c.status.in_(OPEN_STATUSES))
                        .order_by(orders.c.submitted_at)
                    )
                )
                .mappings()
                .all()
            )
        armed = 0
        for r in rows:
            if r["status"] == "new":
                await self._resume_new(dict(r))
                continue
            async with self.lock:
                events = self.matching.accept(self._domain_order(r, rested=True))
                if events:
                    await self._persist(events)
            armed += 1
        log.info("re-armed %d open orders", armed)
        await self.catch_up([dict(r) for r in rows if r["status"] != "new"])
        return armed

    async def catch_up(self, rows: list[dict[str, Any]]) -> int:
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
                req.end_time.CopyFrom(ts_to_wire(max(self.sim_now, start) + timedelta(seconds=1)))
                try:
                    page = await self.marketdata.call(self.md_stub.ListQuotes, req)
                except MbtError as exc:
                    log.warning("catch-up for %s unavailable: %s", symbol, exc.message)
                    break
                quotes += [quote_from_pb(q) for q in page.quotes]
                token = page.next_page_token
                if not token:
                    break
        quotes.sort(key=lambda q: (q.ts, q.symbol))
        for q in quotes:
            await self.on_quote(q)
        if quotes:
            log.info("caught up on %d quotes", len(quotes))
        return len(quotes)

    async def _resume_new(self, r: dict[str, Any]) -> None:
        intent = OrderIntent(
            symbol=r["symbol"],
            side=Side(r["side"]),
            qty=Decimal(r["qty"]),
            order_type=OrderType(r["order_type"]),
            time_in_force=TimeInForce(r["time_in_force"]),
            limit_price=r["limit_price"],
            stop_price=r["stop_price"],
            client_order_id=r["client_order_id"],
        )
        try:
            q = await self.marketdata.call(
                self.md_stub.GetQuote, md_pb.GetQuoteRequest(symbol=r["symbol"])
            )
            await self._hold_and_accept(r["id"], r["user_id"], intent, Decimal(q.ask))
        except MbtError as exc:
            log.info("order %s left new at restart was rejected: %s", r["id"], exc.message)

    # ---- persistence of engine events ---------------------------------------------------
    def _domain_order(self, r: Any, rested: bool = False) -> Order:
        return Order(
            id=r["id"],
            account_id=r["account_id"] or "",
            symbol=r["symbol"],
            side=Side(r["side"]),
            qty=Decimal(r["qty"]),
            order_type=OrderType(r["order_type"]),
            time_in_force=TimeInForce(r["time_in_force"]),
            accepted_at=r["accepted_at"],
            limit_price=Decimal(r["limit_price"]) if r["limit_price"] is not None else None,
            stop_price=Decimal(r["stop_price"]) if r["stop_price"] is not None else None,
            filled_qty=Decimal(r["filled_qty"]),
            filled_notional=Decimal(r["filled_notional"]),
            fill_count=int(r["fill_count"]),
            triggered=bool(r["triggered"]),
            status=OrderStatus(r["status"]),
            rested=rested,
            legs=tuple(
                Leg(symbol=x["symbol"], side=Side(x["side"]), ratio=int(x["ratio"]))
                for x in (r["legs"] or [])
            ),
            fill_preference=FillPreference(r["fill_preference"] or "aggressive"),
        )

    def _emit_order(self, uow: UnitOfWork, event: str, row: Any, user_id: str) -> None:
        msg = events_pb2.OrderEvent(
            event=event,
            order=order_to_pb(row),
            user_id=user_id,
            timestamp=ts_to_wire(datetime.now(UTC)),
        )
        acct = row["account_id"] or "none"
        uow.publish(
            f"mbt.orders.{acct}",
            msg.SerializeToString(),
            f"{row['id']}:{event}:{uuid.uuid4().hex[:8]}",
        )

    async def _audit(
        self, uow: UnitOfWork, actor: str, action: str, order_id: str, detail: dict[str, Any]
    ) -> None:
        await uow.conn.execute(
            audit_log.insert().values(
                actor=actor,
                action=action,
                order_id=order_id,
                sim_at=self.sim_now,
                detail=json.loads(json.dumps(detail, default=str)),
            )
        )

    async def _persist(self, events: list[Event], actor: str = "system") -> None:
        """Write the engine's events in one transaction: fills, order state, outbox, audit."""
        async with UnitOfWork(self.db, self.outbox) as uow:
            c = uow.conn
            for ev in events:
                now_wall = datetime.now(UTC)
                if isinstance(ev, OrderFilled):
                    done = ev.remaining_qty == 0
                    row = (
                        (
                            await c.execute(
                                update(orders)
                                .where(orders.c.id == ev.order_id)
                                .values(
                                    filled_qty=ev.cumulative_qty,
                                    filled_notional=orders.c.filled_notional + ev.qty * ev.price,
                                    fill_count=orders.c.fill_count + 1,
                                    status="filled" if done else "partially_filled",
                                    filled_at=ev.ts if done else None,
                                    status_reason="",
                                    updated_at=now_wall,
                                )
                                .returning(*orders.c)
                            )
                        )
                        .mappings()
                        .one()
                    )
                    # one fill row (and ledger event) per instrument traded: the order's
                    # symbol, or each leg of a spread, each with the quote it used
                    parts = (
                        [(ev.execution_id, ev.symbol, ev.side, ev.qty, ev.price, ev.quote)]
                        if not ev.leg_fills
                        else [
                            (
                                f"{ev.execution_id}:{k}",
                                lf.symbol,
                                lf.side,
                                lf.qty,
                                lf.price,
                                lf.quote,
                            )
                            for k, lf in enumerate(ev.leg_fills, start=1)
                        ]
                    )
                    for exec_id, symbol, side, qty, price, quote in parts:
                        fill_row = {
                            "id": exec_id,
                            "order_id": ev.order_id,
                            "user_id": row["user_id"],
                            "account_id": row["account_id"],
                            "symbol": symbol,
                            "side": side.value,
                            "qty": qty,
                            "price": price,
                            "filled_at": ev.ts,
                            "quote_symbol": quote.symbol,
                            "nbbo_bid": quote.bid,
                            "nbbo_ask": quote.ask,
                            "nbbo_bid_size": quote.bid_size,
                            "nbbo_ask_size": quote.ask_size,
                            "quote_ts": quote.ts,
                            "explanation": ev.explanation,
                        }
                        await c.execute(fills.insert().values(**fill_row))
                        fe = events_pb2.FillEvent(
                            fill=fill_to_pb(fill_row),
                            order=order_to_pb(row),
                            user_id=row["user_id"],
                        )
                        uow.publish(
                            f"mbt.fills.{row['account_id']}", fe.SerializeToString(), exec_id
                        )
                    await self._audit(
                        uow,
                        "system",
                        "fill",
                        ev.order_id,
                        {
                            "execution_id": ev.execution_id,
                            "qty": str(ev.qty),
                            "price": str(ev.price),
                            "bid": str(ev.quote.bid),
                            "ask": str(ev.quote.ask),
                            "why": ev.explanation,
                        },
                    )
                elif isinstance(ev, OrderCanceled | OrderExpired):
                    status = "canceled" if isinstance(ev, OrderCanceled) else "expired"
                    row = (
                        (
                            await c.execute(
                                update(orders)
                                .where(orders.c.id == ev.order_id)
                                .values(
                                    status=status,
                                    canceled_at=ev.ts,
                                    status_reason=ev.reason,
                                    updated_at=now_wall,
                                )
                                .returning(*orders.c)
                            )
                        )
                        .mappings()
                        .one()
                    )
                    self._emit_order(uow, status, row, row["user_id"])
                    await self._audit(
                        uow,
                        actor if status == "canceled" else "system",
                        "cancel" if status == "canceled" else "expire",
                        ev.order_id,
                        {"reason": ev.reason},
                    )
                elif isinstance(ev, FillDeferred):
                    await c.execute(
                        update(orders)
                        .where(orders.c.id == ev.order_id)
                        .values(status_reason=ev.reason)
                    )
                elif isinstance(ev, StopTriggered):
                    await c.execute(
                        update(orders).where(orders.c.id == ev.order_id).values(triggered=True)
                    )
                    await self._audit(
                        uow,
                        "system",
                        "trigger",
                        ev.order_id,
                        {
                            "bid": str(ev.quote.bid),
                            "ask": str(ev.quote.ask),
                            "ts": ev.quote.ts.isoformat(),
                        },
                    )
