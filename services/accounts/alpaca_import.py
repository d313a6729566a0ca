"""Import a user's Alpaca paper account into MBT (rollout, seeds §10): one-shot, idempotent,
resumable.

Everything is read from Alpaca first, through alpaca-py's TradingClient (account, positions,
orders, activities, portfolio history); then each step writes in its own transaction and is
recorded in ``accounts.imports`` when done:

1. ``account``     cash := Alpaca's cash
2. ``positions``   positions := Alpaca's, with their cost basis (average entry price)
3. ``activities``  every Alpaca activity as an MBT activity, id ``alpaca:<id>``
4. ``history``     one end-of-day snapshot per day of Alpaca's daily portfolio history
5. ``orders``      closed orders with their fills, written by orders (over gRPC) as history

A rerun skips the steps done (it changes nothing); a run that stopped half way resumes at the
first step not done. The Alpaca secret is used for this call only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from alpaca.common.exceptions import APIError
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from services.accounts import handlers
from services.accounts.adapters.tables import (
    accounts,
    activities,
    eod_snapshots,
    imports,
    positions,
)
from services.conventions.timestamps import parse_rfc3339
from services.platform.clients import ServiceChannel
from services.platform.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.platform.secret import Secret
from services.platform.shadow_credentials import AlpacaPaperCredentials, trading_client
from services.platform.wire import ts_to_wire

__all__ = ["STEPS", "AlpacaSnapshot", "ImportReport", "import_alpaca", "read_alpaca"]

STEPS = ("account", "positions", "activities", "history", "orders")
PAPER_URL = "https://paper-api.alpaca.markets"
CLOSED = {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day"}
# Alpaca's activity types -> MBT's ledger codes (gateway/alpaca/catalog.py maps them back)
ACTIVITY_CODES = {
    "FILL": "fill",
    "DIV": "dividend",
    "DIVCGL": "dividend",
    "DIVCGS": "dividend",
    "DIVNRA": "dividend",
    "DIVROC": "dividend",
    "DIVTXEX": "dividend",
    "SPLIT": "split",
    "CSD": "csd",
    "CSW": "csw",
    "INT": "interest",
    "OPEXC": "exercised",
    "OPASN": "assigned",
    "OPEXP": "expired",
    "CIL": "cil",
}


@dataclass
class AlpacaSnapshot:
    """Everything read from the Alpaca paper account, before anything is written."""

    account: dict[str, Any]
    positions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    activities: list[dict[str, Any]]
    history: dict[str, Any]


@dataclass
class ImportReport:
    source_account: str = ""
    done: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    cash: Decimal = Decimal(0)
    positions: int = 0
    activities_added: int = 0
    snapshots_added: int = 0
    orders_added: int = 0
    open_orders_skipped: int = 0


def _dec(v: Any) -> Decimal:
    return Decimal(str(v)) if v not in (None, "") else Decimal(0)


def read_alpaca(key_id: str, secret: Secret, url: str) -> AlpacaSnapshot:
    """Read the whole paper account through alpaca-py (blocking: run it in a thread)."""
    client = trading_client(AlpacaPaperCredentials(key_id, secret, url))
    raw: Any = client  # raw_data=True: alpaca-py hands back Alpaca's JSON as dicts
    account = dict(raw.get_account())
    held = [dict(p) for p in raw.get_all_positions()]
    orders = [
        dict(o) for o in raw.get("/orders", {"status": "all", "limit": 500, "direction": "asc"})
    ]
    acts: list[dict[str, Any]] = []
    token = ""
    while True:  # keyset paging, oldest first
        params: dict[str, Any] = {"direction": "asc", "page_size": 100}
        if token:
            params["page_token"] = token
        page = [dict(a) for a in raw.get("/account/activities", params)]
        acts += page
        if len(page) < 100:
            break
        token = str(page[-1]["id"])
    history = dict(raw.get("/account/portfolio/history", {"period": "all", "timeframe": "1D"}))
    return AlpacaSnapshot(account, held, orders, acts, history)


def _activity_row(account_id: str, a: dict[str, Any]) -> dict[str, Any]:
    kind = str(a.get("activity_type", "")).upper()
    code = ACTIVITY_CODES.get(kind, kind.lower()[:16] or "misc")
    qty: Decimal | None
    price: Decimal | None
    if kind == "FILL":
        qty, price = _dec(a.get("qty")), _dec(a.get("price"))
        sign = Decimal(1) if a.get("side") == "buy" else Decimal(-1)
        amount = -sign * qty * price
        occurred = parse_rfc3339(a.get("transaction_time"))
        desc = f"imported from Alpaca paper: {a.get('side')} {qty} {a.get('symbol')} at {price}"
    else:
        qty = _dec(a.get("qty")) if a.get("qty") not in (None, "") else None
        price = _dec(a.get("per_share_amount")) if a.get("per_share_amount") else None
        amount = _dec(a.get("net_amount"))
        occurred = parse_rfc3339(a.get("date")) or parse_rfc3339(a.get("transaction_time"))
        desc = f"imported from Alpaca paper: {a.get('description') or kind}"
    return {
        "id": f"alpaca:{a['id']}"[:64],
        "account_id": account_id,
        "activity_type": code,
        "symbol": a.get("symbol"),
        "amount": amount,
        "qty": qty,
        "price": price,
        "ref_id": str(a.get("order_id") or "")[:64] or None,
        "description": desc,
        "occurred_at": occurred or datetime.now(UTC),
    }


def _orders_request(
    user_id: str, account_id: str, snap: AlpacaSnapshot
) -> tuple[opb.ImportOrdersRequest, int]:
    fills_of: dict[str, list[dict[str, Any]]] = {}
    for a in snap.activities:
        if str(a.get("activity_type", "")).upper() == "FILL" and a.get("order_id"):
            fills_of.setdefault(str(a["order_id"]), []).append(a)
    req = opb.ImportOrdersRequest(user_id=user_id, account_id=account_id)
    skipped = 0
    for o in snap.orders:
        if o.get("status") not in CLOSED:
            skipped += 1
            continue
        item = req.orders.add(
            alpaca_order_id=str(o["id"]),
            client_order_id=str(o.get("client_order_id") or ""),
            symbol=str(o.get("symbol") or ""),
            side=str(o.get("side") or ""),
            qty=str(o.get("qty") or "0"),
            order_type=str(o.get("type") or o.get("order_type") or "market"),
            time_in_force=str(o.get("time_in_force") or "day"),
            limit_price=str(o.get("limit_price") or ""),
            stop_price=str(o.get("stop_price") or ""),
            status=str(o["status"]),
            filled_qty=str(o.get("filled_qty") or "0"),
            filled_avg_price=str(o.get("filled_avg_price") or ""),
        )
        for name in ("submitted_at", "filled_at", "canceled_at"):
            if (t := parse_rfc3339(o.get(name))) is not None:
                getattr(item, name).CopyFrom(ts_to_wire(t))
        for f in fills_of.get(str(o["id"]), []):
            fill = item.fills.add(
                execution_id=str(f["id"]), qty=str(f.get("qty")), price=str(f.get("price"))
            )
            if (t := parse_rfc3339(f.get("transaction_time"))) is not None:
                fill.filled_at.CopyFrom(ts_to_wire(t))
    return req, skipped


async def import_alpaca(
    engine: AsyncEngine,
    orders: ServiceChannel,
    user_id: str,
    key_id: str,
    secret: Secret,
    url: str = "",
) -> ImportReport:
    if not key_id or not secret.reveal():
        raise InvalidArgument("alpaca_key_id", "and alpaca_secret_key are required")
    try:
        snap = await asyncio.to_thread(read_alpaca, key_id, secret, url or PAPER_URL)
    except APIError as err:
        raise FailedPrecondition(
            f"Alpaca refused the import's credentials or request ({err.status_code})",
            reason="ALPACA_REFUSED",
        ) from None
    except OSError as err:
        raise Unavailable(f"cannot reach Alpaca ({type(err).__name__})") from None
    report = ImportReport(source_account=str(snap.account.get("account_number", "")))
    async with engine.begin() as conn:
        acct = await handlers.account_of_user(conn, user_id)
        account_id = str(acct["id"])
        await conn.execute(
            insert(imports)
            .values(account_id=account_id, source_account=report.source_account, steps=[])
            .on_conflict_do_nothing()
        )
        row = (
            (await conn.execute(select(imports).where(imports.c.account_id == account_id)))
            .mappings()
            .one()
        )
    if row["source_account"] != report.source_account:
        raise FailedPrecondition(
            f"this MBT account was imported from Alpaca account {row['source_account']}, "
            f"not {report.source_account}",
            reason="IMPORT_SOURCE_MISMATCH",
        )
    done = list(row["steps"] or [])
    for step in STEPS:
        if step in done:
            report.already.append(step)
            continue
        async with engine.begin() as conn:
            await conn.execute(
                select(accounts.c.id).where(accounts.c.id == account_id).with_for_update()
            )
            if step == "account":
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.id == account_id)
                    .values(cash=_dec(snap.account.get("cash")))
                )
            elif step == "positions":
                await conn.execute(delete(positions).where(positions.c.account_id == account_id))
                for p in snap.positions:
                    await conn.execute(
                        insert(positions).values(
                            account_id=account_id,
                            symbol=str(p["symbol"]),
                            asset_class="option"
                            if p.get("asset_class") == "us_option"
                            else "equity",
                            qty=_dec(p.get("qty")),
                            avg_entry_price=_dec(p.get("avg_entry_price")),
                            realized_pl=Decimal(0),
                            opened_at=datetime.now(UTC),
                        )
                    )
            elif step == "activities":
                for a in snap.activities:
                    res = await conn.execute(
                        insert(activities)
                        .values(**_activity_row(account_id, a))
                        .on_conflict_do_nothing()
                        .returning(activities.c.id)
                    )
                    report.activities_added += 1 if res.first() is not None else 0
            elif step == "history":
                h = snap.history
                for ts, equity in zip(
                    h.get("timestamp") or [], h.get("equity") or [], strict=False
                ):
                    if equity is None:
                        continue
                    day = datetime.fromtimestamp(int(ts), UTC).date()
                    res = await conn.execute(
                        insert(eod_snapshots)
                        .values(
                            account_id=account_id,
                            as_of_date=day,
                            cash=_dec(equity),
                            long_market_value=Decimal(0),
                            short_market_value=Decimal(0),
                            equity=_dec(equity),
                            positions={"imported_from": "alpaca portfolio history"},
                        )
                        .on_conflict_do_nothing()
                        .returning(eod_snapshots.c.as_of_date)
                    )
                    report.snapshots_added += 1 if res.first() is not None else 0
            elif step == "orders":
                req, report.open_orders_skipped = _orders_request(user_id, account_id, snap)
                stub = ogrpc.OrdersServiceStub(orders.channel)
                reply = await orders.call(stub.ImportOrders, req, timeout=60)
                report.orders_added = int(reply.added)
            done.append(step)
            await conn.execute(
                update(imports)
                .where(imports.c.account_id == account_id)
                .values(
                    steps=done,
                    finished_at=datetime.now(UTC) if len(done) == len(STEPS) else None,
                )
            )
        report.done.append(step)
    async with engine.connect() as conn:
        cash = (
            await conn.execute(select(accounts.c.cash).where(accounts.c.id == account_id))
        ).scalar()
        n = len(
            (
                await conn.execute(
                    select(positions.c.symbol).where(
                        positions.c.account_id == account_id, positions.c.qty != 0
                    )
                )
            ).all()
        )
    report.cash, report.positions = Decimal(cash or 0), n
    return report
