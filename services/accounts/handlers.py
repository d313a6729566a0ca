"""Accounts service layer: handlers `(command, engine) -> result`, one transaction each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.accounts import hold_batch
from services.accounts.adapters.tables import (
    accounts,
    positions,
)
from services.accounts.domain.ledger import ZERO
from services.accounts.domain.margin import MarginSummary, margin_summary, mark_positions
from services.accounts.domain.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    ProfileError,
    Tier,
    starting_cash,
)
from services.accounts.hold_batch import HoldPlaced, HoldRequest
from services.accounts.ledger_batch import (
    FillApplied,
    apply_fills,
    claim_events,
    release_holds,
)
from services.conventions.calendar import MarketCalendar
from services.platform.hotpath import HotPathPool

__all__ = [
    "FillApplied",
    "HoldPlaced",
    "HoldRequest",
    "apply_fill_event",
    "apply_order_done",
    "open_account",
    "place_hold",
    "place_holds",
]
from services.platform.errors import (
    InvalidArgument,
    MbtError,
    NotFound,
)


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
    """The cash the account's active holds reserve (kept on its row by triggers on holds)."""
    v = (
        await conn.execute(select(accounts.c.held_cash).where(accounts.c.id == account_id))
    ).scalar_one_or_none()
    return Decimal(v) if v is not None else ZERO


async def place_holds(
    engine: AsyncEngine,
    items: Sequence[HoldRequest],
    marks: hold_batch.Marks | hold_batch.MarkSource | None = None,
    calendar: MarketCalendar | None = None,
) -> list[HoldPlaced | MbtError]:
    """Place a batch of holds (`hold_batch.place_holds`) on the engine's database."""
    return await hold_batch.place_holds(_pool_for(engine), items, marks, calendar)


_POOLS: dict[tuple[str, int], HotPathPool] = {}


def _pool_for(engine: AsyncEngine) -> HotPathPool:
    """The hot-path connections to the engine's database (per event loop: tests run several)."""
    key = (engine.url.render_as_string(hide_password=False), id(asyncio.get_running_loop()))
    if key not in _POOLS:
        _POOLS[key] = HotPathPool(key[0])
    return _POOLS[key]


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
    """One hold (see `place_holds`): (account id, cash held, default fill preference)."""
    item = HoldRequest(
        user_id, order_id, symbol, side, qty, amount, settlement[0] if settlement else None
    )
    (result,) = await place_holds(
        engine, [item], {user_id: marks or {}}, settlement[1] if settlement else None
    )
    if isinstance(result, MbtError):
        raise result
    return result.account_id, result.amount, result.fill_preference


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
    # options in a margin account are paid in full (long) or part of a defined-risk spread
    return margin_summary(cash, mark_positions(rows, marks), ZERO, held)


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
