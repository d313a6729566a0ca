"""Shadow mode (rollout, seeds §10): for a user whose FLAG_MBT_PAPER_TRADING is ``shadow``,
every order MBT accepts is also sent to their Alpaca paper account, and cancelled there when
MBT cancels it. MBT keeps matching it against its own quotes; the nightly parity job compares
the two accounts.

Durable by construction: the relay works from the committed orders and records what it sent in
``orders.shadow_orders``; the MBT order id is the ``client_order_id`` at Alpaca, so a crash or
retry never sends an order twice (Alpaca refuses a repeated client_order_id; the relay then
adopts the order it already has). Each orders instance relays its own partitions' users.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from alpaca.common.exceptions import APIError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import orders_service_pb2 as pb
from services.conventions.timestamps import parse_rfc3339
from services.platform.flags import RuntimeFlags
from services.platform.shadow_credentials import (
    AlpacaPaperCredentials,
    ShadowCredentials,
    read_paper,
    trading_client,
)
from services.platform.wire import ts_to_wire

__all__ = ["ShadowRelay"]

log = logging.getLogger("mbt.orders.shadow")

INTERVAL_S = 0.5


def _body(o: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": o["id"],
        "symbol": o["symbol"],
        "qty": format(Decimal(o["qty"]).normalize(), "f"),
        "side": o["side"],
        "type": o["order_type"],
        "time_in_force": o["time_in_force"],
    }
    if o["limit_price"] is not None:
        body["limit_price"] = format(Decimal(o["limit_price"]).normalize(), "f")
    if o["stop_price"] is not None:
        body["stop_price"] = format(Decimal(o["stop_price"]).normalize(), "f")
    return body


class ShadowRelay:
    def __init__(
        self,
        db: AsyncEngine,
        flags: RuntimeFlags,
        owns: Callable[[str], bool],
        credentials: ShadowCredentials | None = None,
    ) -> None:
        self.db, self.flags, self.owns = db, flags, owns
        self.credentials = credentials or ShadowCredentials()

    def shadow_users(self) -> tuple[bool, dict[str, str]]:
        """(everyone in shadow?, {user id: since when} for per-user shadow flags)."""
        return self.flags.get("paper").value == "shadow", self.flags.users_in("shadow")

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shadow relay pass failed; retrying")
            await asyncio.sleep(INTERVAL_S)

    async def run_once(self) -> int:
        everyone, users = self.shadow_users()
        if not everyone and not users:
            return 0
        since = min((datetime.fromisoformat(t) for t in users.values() if t), default=None)
        where = "" if everyone else "AND o.user_id = ANY(:users)"
        async with self.db.connect() as conn:
            pending = (
                (
                    await conn.execute(
                        text(
                            "SELECT o.* FROM orders.orders o LEFT JOIN orders.shadow_orders s "
                            "ON s.order_id = o.id WHERE s.order_id IS NULL AND o.legs IS NULL "
                            # accepted ones only: a submit whose hold is refused never leaves
                            "AND o.accepted_at IS NOT NULL AND o.status <> 'rejected' "
                            # a replacement once its old order is replaced (canceled below first)
                            "AND NOT EXISTS (SELECT 1 FROM orders.orders r WHERE r.id = o.replaces "
                            "AND r.status IN ('new', 'accepted', 'partially_filled')) "
                            "AND o.status_reason NOT LIKE "
                            f"'imported%' {where} AND o.submitted_at >= :since "
                            "ORDER BY o.submitted_at LIMIT 200"
                        ),
                        {"users": list(users), "since": since or datetime(1970, 1, 1, tzinfo=UTC)},
                    )
                )
                .mappings()
                .all()
            )
            to_cancel = (
                (
                    await conn.execute(
                        text(
                            "SELECT s.order_id, s.user_id, s.alpaca_order_id FROM "
                            "orders.shadow_orders s JOIN orders.orders o ON o.id = s.order_id "
                            "WHERE s.status = 'sent' AND s.canceled_at IS NULL AND o.status IN "
                            "('canceled', 'replaced', 'expired')"
                        )
                    )
                )
                .mappings()
                .all()
            )
        for c in to_cancel:  # first: what they held at Alpaca is free for what follows
            if self.owns(str(c["user_id"])):
                await self._cancel(dict(c))
        n = 0
        for o in pending:
            uid = str(o["user_id"])
            if not self.owns(uid) or self.flags.paper_mode(uid) != "shadow":
                continue
            users_since = users.get(uid)
            if users_since and o["submitted_at"] < datetime.fromisoformat(users_since):
                continue  # placed before this user's shadow period began
            await self._mirror(dict(o))
            n += 1
        return n

    async def _record(
        self, order_id: str, user_id: str, status: str, alpaca_id: str, error: str
    ) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO orders.shadow_orders (order_id, user_id, status, alpaca_order_id, "
                    "error) VALUES (:o, :u, :s, :a, :e) ON CONFLICT (order_id) DO UPDATE SET "
                    "status = excluded.status, alpaca_order_id = excluded.alpaca_order_id, "
                    "error = excluded.error"
                ),
                {
                    "o": order_id,
                    "u": user_id,
                    "s": status,
                    "a": alpaca_id or None,
                    "e": error[:500],
                },
            )

    async def _mirror(self, o: dict[str, Any]) -> None:
        creds = self.credentials.of(str(o["user_id"]))
        if creds is None:
            await self._record(o["id"], o["user_id"], "no_credentials", "", "no Alpaca paper key")
            return
        try:
            answer = await asyncio.to_thread(_submit, creds, _body(o))
        except APIError as err:
            status = err.status_code or 0
            if status >= 500 or status in (0, 429):
                return  # Alpaca did not answer: the next pass retries (client_order_id dedupes)
            await self._record(o["id"], o["user_id"], "refused", "", str(err)[:500])
            return
        except OSError:
            return  # unreachable: retry on the next pass
        await self._record(o["id"], o["user_id"], "sent", str(answer.get("id", "")), "")

    async def _cancel(self, c: dict[str, Any]) -> None:
        creds = self.credentials.of(str(c["user_id"]))
        if creds is None or not c["alpaca_order_id"]:
            return
        try:
            await asyncio.to_thread(_cancel, creds, str(c["alpaca_order_id"]))
        except APIError as err:
            if (err.status_code or 0) not in (404, 422):  # 422: already filled/canceled there
                return
        except OSError:
            return
        async with self.db.begin() as conn:
            await conn.execute(
                text("UPDATE orders.shadow_orders SET canceled_at = now() WHERE order_id = :o"),
                {"o": c["order_id"]},
            )


def _submit(creds: AlpacaPaperCredentials, body: dict[str, Any]) -> dict[str, Any]:
    client = trading_client(creds)
    try:
        return dict(client.post("/orders", body))
    except APIError as err:
        if err.status_code == 422 and "client_order_id" in str(err):
            return dict(client.get_order_by_client_id(body["client_order_id"]))  # sent before
        raise


def _cancel(creds: AlpacaPaperCredentials, alpaca_order_id: str) -> None:
    trading_client(creds).cancel_order_by_id(alpaca_order_id)


def _wire_ts(v: Any) -> Any:
    return ts_to_wire(parse_rfc3339(v))


# Alpaca's order status -> MBT's (the gateway's /v2 maps them back): Alpaca's working `new` is
# MBT's `accepted`, its `pending_new` MBT's `new`
MBT_STATUS = {"new": "accepted", "pending_new": "new"}


def _order_pb(o: dict[str, Any]) -> pb.Order:
    return pb.Order(
        id=str(o.get("client_order_id") or o.get("id")),
        client_order_id=str(o.get("client_order_id") or ""),
        symbol=str(o.get("symbol") or ""),
        side=str(o.get("side") or ""),
        qty=str(o.get("qty") or ""),
        order_type=str(o.get("type") or o.get("order_type") or ""),
        time_in_force=str(o.get("time_in_force") or ""),
        limit_price=str(o.get("limit_price") or ""),
        stop_price=str(o.get("stop_price") or ""),
        status=MBT_STATUS.get(str(o.get("status") or ""), str(o.get("status") or "")),
        filled_qty=str(o.get("filled_qty") or "0"),
        filled_avg_price=str(o.get("filled_avg_price") or ""),
        status_reason=f"from Alpaca paper (shadow mode; Alpaca order {o.get('id')})",
        submitted_at=_wire_ts(o.get("submitted_at")),
        filled_at=_wire_ts(o.get("filled_at")),
        canceled_at=_wire_ts(o.get("canceled_at")),
        updated_at=_wire_ts(o.get("updated_at")),
    )


async def alpaca_orders(
    creds: AlpacaPaperCredentials, status: str, filters: dict[str, str] | None = None
) -> list[pb.Order]:
    """A shadow user's orders as Alpaca paper has them (their reads come from Alpaca);
    `filters`: Alpaca's own query parameters (after, until, direction, symbols, side)."""
    wanted = status if status in ("open", "closed", "all") else "all"
    query = {"status": wanted, "limit": 500, **(filters or {})}
    listed = await read_paper(creds, lambda c: c.get("/orders", query))
    rows = [dict(o) for o in listed]
    if status not in ("open", "closed", "all"):
        rows = [o for o in rows if MBT_STATUS.get(str(o.get("status")), o.get("status")) == status]
    return [_order_pb(o) for o in rows]
