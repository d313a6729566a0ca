"""Accounts service layer: handlers `(command, engine) -> result`, one transaction each."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.accounts.adapters.tables import (
    accounts,
    holds,
    positions,
)
from services.accounts.domain.instruments import Equity, MarkedPosition, OptionContract, OptionRight
from services.accounts.domain.ledger import ZERO
from services.accounts.domain.margin import MarginSummary, margin_summary
from services.accounts.domain.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    ProfileError,
    Tier,
    starting_cash,
)
from services.accounts.ledger_batch import (
    FillApplied,
    apply_fills,
    claim_events,
    multiplier_of,
    release_holds,
)
from services.accounts.settlement import unsettled_proceeds
from services.conventions.calendar import MarketCalendar
from services.conventions.occ import is_occ_symbol, parse_occ

__all__ = ["FillApplied", "apply_fill_event", "apply_order_done", "open_account", "place_hold"]
from services.platform.errors import FailedPrecondition, InvalidArgument, NotFound


async def open_account(
    engine: AsyncEngine,
    user_id: str,
    profile: str,
    tier: str,
    override: Decimal | None,
    account_type: str = "cash",
) -> str:
    """Create the user's account (idempotent: an existing account is returned as it is)."""
    profile = profile or DEFAULT_PROFILE
    account_type = account_type or "cash"
    if account_type not in ("cash", "margin"):
        raise InvalidArgument("account_type", f"must be cash or margin; got {account_type!r}")
    try:
        t = Tier(tier or "free")
    except ValueError as exc:
        raise InvalidArgument("tier", f"unknown tier {tier!r}") from exc
    try:
        cash = starting_cash(profile, t, override)
    except ProfileError as exc:
        raise InvalidArgument(exc.field, exc.problem) from exc
    async with engine.begin() as conn:
        await conn.execute(
            insert(accounts)
            .values(
                id=str(uuid.uuid4()),
                user_id=user_id,
                account_type=account_type,
                status="active",
                profile=profile,
                tier=t.value,
                fill_preference=PROFILES[profile].fill_preference,
                cash=cash,
            )
            .on_conflict_do_nothing(index_elements=[accounts.c.user_id])
        )
        row = (await conn.execute(select(accounts.c.id).where(accounts.c.user_id == user_id))).one()
        return str(row.id)


async def account_of_user(
    conn: AsyncConnection, user_id: str, *, lock: bool = False
) -> dict[str, object]:
    q = select(accounts).where(accounts.c.user_id == user_id)
    if lock:
        q = q.with_for_update()
    row = (await conn.execute(q)).mappings().first()
    if row is None:
        raise NotFound(
            "no MBT account for this user; sign up with `mbt signup`", reason="ACCOUNT_NOT_FOUND"
        )
    return dict(row)


async def held_amount(conn: AsyncConnection, account_id: str) -> Decimal:
    v = (
        await conn.execute(
            select(func.coalesce(func.sum(holds.c.amount), 0)).where(
                holds.c.account_id == account_id, holds.c.status == "active"
            )
        )
    ).scalar_one()
    return Decimal(v)


async def held_qty(conn: AsyncConnection, account_id: str, symbol: str) -> Decimal:
    v = (
        await conn.execute(
            select(func.coalesce(func.sum(holds.c.qty), 0)).where(
                holds.c.account_id == account_id,
                holds.c.symbol == symbol,
                holds.c.side == "sell",
                holds.c.status == "active",
            )
        )
    ).scalar_one()
    return Decimal(v)


async def place_hold(
    engine: AsyncEngine,
    user_id: str,
    order_id: str,
    symbol: str,
    side: str,
    qty: Decimal,
    amount: Decimal,
    marks: dict[str, Decimal] | None = None,
    settlement: tuple[datetime, MarketCalendar] | None = None,
) -> tuple[str, Decimal, str]:
    """Reserve cash (buy) or shares (sell) for an order, or refuse. Idempotent by order id.

    Returns (account id, cash held, the account's default multi-leg fill preference).

    The account row is locked, so two concurrent orders can never spend the same cash.
    """
    async with engine.begin() as conn:
        acct = await account_of_user(conn, user_id, lock=True)
        account_id = str(acct["id"])
        existing = (await conn.execute(select(holds).where(holds.c.order_id == order_id))).first()
        if existing is not None:
            return account_id, Decimal(existing.amount), str(acct["fill_preference"])
        if acct["status"] != "active":
            raise FailedPrecondition(f"account is {acct['status']}", reason="ACCOUNT_NOT_ACTIVE")
        held = await held_amount(conn, account_id)
        margin = acct["account_type"] == "margin"
        if margin:
            summary = await margin_summary_of(
                conn, account_id, Decimal(str(acct["cash"])), held, marks or {}
            )
            available = summary.buying_power
        else:
            available = Decimal(str(acct["cash"])) - held
            if settlement is not None:  # a cash account cannot spend unsettled proceeds
                as_of, calendar = settlement
                available -= await unsettled_proceeds(conn, account_id, as_of, calendar)
        if side == "buy":
            _require(amount, available)
            hold_amount, hold_qty = amount, ZERO
        else:
            pos = (
                await conn.execute(
                    select(positions.c.qty).where(
                        positions.c.account_id == account_id, positions.c.symbol == symbol
                    )
                )
            ).scalar_one_or_none()
            owned = Decimal(pos) if pos is not None else ZERO
            available_qty = owned - await held_qty(conn, account_id, symbol)
            hold_amount, hold_qty = ZERO, qty
            if qty > available_qty:
                free = max(available_qty, ZERO)
                mark = (marks or {}).get(symbol)
                if not margin or mark is None:
                    raise FailedPrecondition(
                        f"insufficient qty: selling {qty.normalize():f} {symbol} but "
                        f"{free.normalize():f} available (cash accounts cannot sell short)",
                        reason="INSUFFICIENT_QTY",
                        metadata={"symbol": symbol, "available": str(free)},
                    )
                # margin: the part beyond the shares held is a short sale, held in buying power
                short_notional = (qty - free) * mark * multiplier_of(symbol)
                _require(short_notional, available)
                hold_amount, hold_qty = short_notional, free
        await conn.execute(
            holds.insert().values(
                order_id=order_id,
                account_id=account_id,
                symbol=symbol,
                side=side,
                amount=hold_amount,
                qty=hold_qty,
                status="active",
            )
        )
        return account_id, hold_amount, str(acct["fill_preference"])


def _require(amount: Decimal, available: Decimal) -> None:
    if amount > available:
        raise FailedPrecondition(
            f"insufficient buying power: order needs ${amount:.2f}, "
            f"available ${max(available, ZERO):.2f}",
            reason="INSUFFICIENT_BUYING_POWER",
            metadata={"required": f"{amount:.2f}", "available": f"{available:.2f}"},
        )


async def margin_summary_of(
    conn: AsyncConnection,
    account_id: str,
    cash: Decimal,
    held: Decimal,
    marks: dict[str, Decimal],
) -> MarginSummary:
    """Reg-T figures from the positions marked at `marks` (average cost when unmarked)."""
    rows = (
        await conn.execute(
            select(positions.c.symbol, positions.c.qty, positions.c.avg_entry_price).where(
                positions.c.account_id == account_id, positions.c.qty != 0
            )
        )
    ).all()
    marked = []
    for r in rows:
        instrument: Equity | OptionContract
        if is_occ_symbol(r.symbol):
            c = parse_occ(r.symbol)
            instrument = OptionContract(
                r.symbol,
                c.root,
                OptionRight.CALL if c.is_call else OptionRight.PUT,
                c.strike,
                c.expiry,
            )
        else:
            instrument = Equity(r.symbol)
        mark = marks.get(r.symbol, Decimal(r.avg_entry_price))
        marked.append(MarkedPosition(instrument, Decimal(r.qty), mark))
    # options in a margin account are paid in full (long) or part of a defined-risk spread
    return margin_summary(cash, marked, ZERO, held)


async def release_hold(conn: AsyncConnection, order_id: str) -> bool:
    return await release_holds(conn, [order_id]) > 0


async def release_hold_tx(engine: AsyncEngine, order_id: str) -> bool:
    async with engine.begin() as conn:
        return await release_hold(conn, order_id)


async def already_applied(conn: AsyncConnection, event_id: str) -> bool:
    return event_id not in await claim_events(conn, [event_id])


async def apply_fill_event(conn: AsyncConnection, event_id: str, fill: FillApplied) -> str:
    """Apply one fill exactly once: cash, position, hold and an activity row.

    Returns "applied", "duplicate" or "parked". The caller commits, then acks the message.
    """
    return (await apply_fills(conn, [(event_id, fill)]))[0]


async def apply_order_done(conn: AsyncConnection, event_id: str, order_id: str) -> str:
    """An order reached canceled/expired/rejected: release what is left of its hold."""
    if await already_applied(conn, event_id):
        return "duplicate"
    await release_hold(conn, order_id)
    return "applied"
