"""The orders application: the commands (submit, cancel, replace, cancel-all, erase) and the
matching engine fed by quotes and the clock.

The accept pipeline (`accept`), recovery on start (`recovery`), the persistence of engine
events (`persist`) and order-row lookups (`records`) live in modules of their own.

Concurrency: one asyncio lock serialises the engine and the writes of its events, so the
database sees engine events in the order the engine produced them. If a write fails, the
process exits (fail-stop) and a restart re-arms the book from the database.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import accounts_service_pb2_grpc as acct_grpc
from raxx.mbt.v1 import marketdata_service_pb2 as md_pb
from raxx.mbt.v1 import marketdata_service_pb2_grpc as md_grpc
from services.orders import records, recovery
from services.orders.accept import SubmitPipeline
from services.orders.adapters.tables import orders
from services.orders.convert import quote_from_pb
from services.orders.domain.engine import MatchingEngine
from services.orders.domain.events import (
    Event,
)
from services.orders.domain.model import (
    OrderType,
    Quote,
    Side,
    TimeInForce,
)
from services.orders.holds import package_hold, single_hold
from services.orders.ledger_marks import LedgerMarks
from services.orders.partitions import Ownership
from services.orders.persist import persist_events
from services.orders.quotes import QuoteSource
from services.orders.validation import OrderIntent, check_ticks
from services.platform.auth import Principal
from services.platform.clients import CallStream, ServiceChannel
from services.platform.db import UnitOfWork
from services.platform.errors import FailedPrecondition, MbtError, Unavailable
from services.platform.flags import RuntimeFlags
from services.platform.outbox import Outbox
from services.platform.settings import Settings

log = logging.getLogger("mbt.orders")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class OrdersApp:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Outbox,
        matching: MatchingEngine,
        accounts: ServiceChannel,
        marketdata: ServiceChannel,
        settings: Settings,
        ownership: Ownership | None = None,
        flags: RuntimeFlags | None = None,
    ) -> None:

        self.db = engine
        self.outbox = outbox
        self.matching = matching
        self.accounts = accounts
        self.accounts_stub = acct_grpc.AccountsServiceStub(accounts.channel)
        # the submit pipeline's holds, one batch after another all day: on one stream
        self.holds = CallStream(
            accounts,
            self.accounts_stub.PlaceHoldsStream,
            self.accounts_stub.PlaceHolds,
            "PlaceHolds",
        )
        self.marketdata = marketdata
        self.md_stub = md_grpc.MarketDataServiceStub(marketdata.channel)
        self.settings = settings
        # kill switches and FLAG_MBT_PAPER_TRADING, changed at run time (NATS KV)
        self.flags = flags or RuntimeFlags.from_settings(settings)
        # the partitions this process owns; every write checks the fence first
        self.ownership = ownership or Ownership()
        self.fence = self.ownership.fence
        self.lock = asyncio.Lock()
        # the newest ledger event committed per user: each hold waits for the ledger to apply it
        self.ledger_marks = LedgerMarks()
        outbox.on_commit.append(self.ledger_marks.committed)
        self.accepts = SubmitPipeline(self)
        self.sim_now = EPOCH
        self.feed_stale_reason = ""  # set while market data says its feed is stale
        self.quotes = QuoteSource(self.matching.latest_quote, self._ask_market_data)

    # ---- time -------------------------------------------------------------------------
    def advance(self, ts: datetime) -> None:
        if ts > self.sim_now:
            self.sim_now = ts

    async def on_clock(self, now: datetime) -> None:
        self.advance(now)
        async with self.lock:
            events = self.matching.on_time(self.sim_now)
            if events:
                await self.persist(events)

    async def on_quote(self, q: Quote) -> None:
        self.advance(q.ts)
        async with self.lock:
            events = self.matching.on_quote(q)
            if events:
                await self.persist(events)

    # ---- commands -----------------------------------------------------------------------
    def check_new_orders(self) -> None:
        """The kill switches, as they are now (operators flip them at run time)."""
        if self.flags.killed("trading"):
            raise Unavailable("trading is disabled (read-only mode)", reason="TRADING_DISABLED")
        if self.flags.killed("new-orders"):
            raise Unavailable(
                "new orders are disabled; views and cancels still work",
                reason="NEW_ORDERS_DISABLED",
            )

    async def submit(
        self,
        user: Principal,
        intent: OrderIntent,
        replaces: str | None = None,
        replaces_filled: Decimal = Decimal(0),
    ) -> dict[str, Any]:
        self.check_new_orders()
        if self.flags.paper_mode(user.user_id) == "off":
            raise FailedPrecondition(
                "paper trading on MBT is not switched on for your account yet",
                reason="PAPER_TRADING_OFF",
            )
        if self.feed_stale_reason:
            raise Unavailable(
                f"market data is stale ({self.feed_stale_reason}); new orders are paused until "
                "quotes return",
                reason="MARKET_DATA_STALE",
            )
        coid = intent.client_order_id or str(uuid.uuid4())
        try:
            amount = await self.hold_for(intent)
        except MbtError:
            # no quote now: a repeated client_order_id still answers with its order
            if intent.client_order_id and await records.fetch_by_client_id(
                self.db, user.user_id, coid, placed=True
            ):
                return await self.accepts.repeat(user.user_id, coid, intent)
            raise
        return await self.accepts.submit(
            str(uuid.uuid4()),
            user.user_id,
            coid,
            intent,
            amount,
            replaces,
            datetime.now(UTC),
            replaces_filled,
        )

    async def _ask_market_data(self, symbol: str) -> Quote:
        quote = await self.marketdata.call(
            self.md_stub.GetQuote, md_pb.GetQuoteRequest(symbol=symbol)
        )
        return quote_from_pb(quote)

    async def hold_for(self, intent: OrderIntent) -> Decimal:
        """The buying power an order reserves (see `holds`), at the current quotes."""
        if intent.legs:
            quotes = {leg.symbol: await self.quotes.current(leg.symbol) for leg in intent.legs}
            return package_hold(intent, quotes)
        return single_hold(intent, (await self.quotes.current(intent.symbol)).ask)

    async def cancel(self, user: Principal, order_id: str) -> dict[str, Any]:
        row = await self.get_for_user(user.user_id, order_id)
        if row["status"] not in records.OPEN_STATUSES:
            return row
        if self.flags.killed("trading"):
            raise Unavailable("trading is disabled (read-only mode)", reason="TRADING_DISABLED")
        async with self.lock:
            events = self.matching.cancel(order_id, self.sim_now)
            if events:
                await self.persist(events, actor=user.user_id)
            else:
                async with UnitOfWork(self.db, self.outbox, self.fence) as uow:
                    r = (
                        (
                            await uow.conn.execute(
                                update(orders)
                                .where(
                                    orders.c.id == order_id,
                                    orders.c.status.in_(records.OPEN_STATUSES),
                                )
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
                        records.emit_order(uow, "canceled", r, user.user_id)
                        await records.audit(uow, self.sim_now, user.user_id, "cancel", order_id, {})
        done = await records.fetch(self.db, order_id)
        if done["status"] == "canceled":
            # give the buying power back now, not when the ledger sees the event (idempotent);
            # the cancel is committed either way, and without an answer the ledger releases it
            await self.release_now(user.user_id, order_id)
        return done

    async def release_now(self, user_id: str, order_id: str) -> bool:
        """Release an ended order's hold at once (the ledger would on the order's event); on
        success the user's next hold need not wait for the ledger to see the end."""
        try:
            await self.accounts.call(
                self.accounts_stub.ReleaseHold, acct_pb.ReleaseHoldRequest(order_id=order_id)
            )
        except MbtError as exc:
            log.warning("order %s: hold not released now (%s); the ledger will", order_id, exc)
            return False
        self.ledger_marks.released(user_id, order_id)
        return True

    async def replace(
        self, user: Principal, order_id: str, changes: dict[str, Any], new_coid: str
    ) -> dict[str, Any]:
        """Replace an open order: a new order is submitted, and the old one becomes `replaced`
        in the same step as the new one is accepted.

        The new order's hold may use what the old one holds (`PlaceHoldRequest.replaces`), so
        a replacement never needs buying power for both; both stay held until the old order is
        replaced, and a replacement that is refused (buying power, quantity, a suspended
        account) leaves the old order working as it was. An old order that fills or is canceled
        before its replacement is committed refuses the replacement (`ORDER_NOT_OPEN`), as at
        Alpaca.
        """
        self.check_new_orders()
        old = await self.get_for_user(user.user_id, order_id)
        if old["legs"]:
            raise FailedPrecondition(
                "multi-leg orders are not replaced: cancel it and submit the new spread",
                reason="REPLACE_NOT_SUPPORTED",
            )
        if old["status"] not in records.OPEN_STATUSES:
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
        check_ticks(intent.limit_price, intent.stop_price, option=intent.is_option)
        return await self.submit(
            user, intent, replaces=order_id, replaces_filled=Decimal(old["filled_qty"])
        )

    async def replace_old(self, old_id: str, new_id: str, user_id: str) -> bool:
        """The old order of an accepted replacement leaves the book and becomes `replaced`
        (call under `lock`); whether it was still open. Its hold is released after."""
        self.matching.cancel(old_id, self.sim_now)
        async with UnitOfWork(self.db, self.outbox, self.fence) as uow:
            row = (
                (
                    await uow.conn.execute(
                        update(orders)
                        .where(orders.c.id == old_id, orders.c.status.in_(records.OPEN_STATUSES))
                        .values(
                            status="replaced",
                            replaced_by=new_id,
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
                return False
            records.emit_order(uow, "replaced", row, user_id)
            await records.audit(
                uow, self.sim_now, user_id, "replace", old_id, {"replaced_by": new_id}
            )
        return True

    async def cancel_all(self, user: Principal) -> list[dict[str, Any]]:
        return [
            await self.cancel(user, oid)
            for oid in await records.open_order_ids(self.db, user.user_id)
        ]

    async def erase_user(self, user_id: str, bus: Any) -> int:
        """GDPR erasure: take the user's open orders out of the book, then delete their rows."""
        from services.orders import privacy

        open_ids = await records.open_order_ids(self.db, user_id)
        async with self.lock:
            for oid in open_ids:
                self.matching.cancel(oid, self.sim_now)  # nothing is recorded: the rows go
            return await privacy.erase_user(self.db, bus, self.settings.jwt_secret, user_id)

    # ---- delegated: queries, the accept pipeline, recovery, persistence -----------------
    async def get_for_user(self, user_id: str, order_id: str) -> dict[str, Any]:
        return await records.fetch_for_user(self.db, user_id, order_id)

    async def run_accepts(self) -> None:
        await self.accepts.run()

    async def rearm(self) -> int:
        return await recovery.rearm(self)

    async def catch_up(self, rows: list[dict[str, Any]]) -> int:
        return await recovery.catch_up(self, rows)

    async def persist(self, events: list[Event], actor: str = "system") -> None:
        """Write engine events (call under `lock`, so the database sees the engine's order)."""
        await persist_events(self.db, self.outbox, events, self.sim_now, actor, self.fence)
