"""Shadow parity (rollout, seeds §10-11): each shadow user's MBT account against their Alpaca
paper account — positions, cash and equity — written as a report per day.

The seeds' go/no-go criterion is "< 0.1% divergence across 10k orders": a report says whether
every compared user's equity is within 0.1% of Alpaca's with identical positions, and whether
the orders compared reach 10,000 (below that the sample is too small to call it met).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from alpaca.common.exceptions import APIError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts.adapters.tables import accounts, positions
from services.conventions.occ import is_occ_symbol
from services.platform.flags import RuntimeFlags
from services.platform.shadow_credentials import (
    AlpacaPaperCredentials,
    ShadowCredentials,
    trading_client,
)

__all__ = ["ParityReport", "UserParity", "verify_parity"]

THRESHOLD_PCT = Decimal("0.1")
SAMPLE_ORDERS = 10_000


@dataclass
class UserParity:
    user_id: str
    ok: bool
    mbt_cash: Decimal = Decimal(0)
    alpaca_cash: Decimal = Decimal(0)
    mbt_equity: Decimal = Decimal(0)
    alpaca_equity: Decimal = Decimal(0)
    divergence_pct: Decimal = Decimal(0)
    position_diffs: dict[str, tuple[str, str]] = field(default_factory=dict)  # sym: (mbt, alpaca)
    orders_compared: int = 0
    problem: str = ""

    def detail(self) -> dict[str, Any]:
        return {
            "mbt_cash": str(self.mbt_cash),
            "alpaca_cash": str(self.alpaca_cash),
            "mbt_equity": str(self.mbt_equity),
            "alpaca_equity": str(self.alpaca_equity),
            "divergence_pct": str(self.divergence_pct),
            "position_diffs": {k: list(v) for k, v in self.position_diffs.items()},
            "orders_compared": self.orders_compared,
            "problem": self.problem,
        }


@dataclass
class ParityReport:
    report_date: date
    users: list[UserParity]

    @property
    def orders_compared(self) -> int:
        return sum(u.orders_compared for u in self.users)

    @property
    def diverging(self) -> int:
        return sum(1 for u in self.users if not u.ok)

    @property
    def max_divergence_pct(self) -> Decimal:
        return max((u.divergence_pct for u in self.users), default=Decimal(0))

    @property
    def criterion(self) -> str:
        if not self.users:
            return "no shadow users to compare"
        if self.diverging:
            return f"not met: {self.diverging} of {len(self.users)} users diverge"
        if self.orders_compared < SAMPLE_ORDERS:
            return (
                f"within {THRESHOLD_PCT}% so far, over {self.orders_compared} orders "
                f"(the criterion needs {SAMPLE_ORDERS:,})"
            )
        return f"met: every user within {THRESHOLD_PCT}% over {self.orders_compared:,} orders"


def _read_alpaca(creds: AlpacaPaperCredentials, day: date) -> tuple[Any, Any, int]:
    client = trading_client(creds)
    start = datetime.combine(day, time(0), UTC)
    day_orders = client.get(
        "/orders",
        {
            "status": "all",
            "limit": 500,
            "after": start.isoformat(),
            "until": (start + timedelta(days=1)).isoformat(),
        },
    )
    return client.get_account(), client.get_all_positions(), len(day_orders)


async def verify_parity(
    engine: AsyncEngine,
    flags: RuntimeFlags,
    creds: ShadowCredentials,
    mark: Callable[[str], Awaitable[Decimal | None]],
    day: date,
) -> ParityReport:
    users = sorted(flags.users_in("shadow"))
    if flags.get("paper").value == "shadow":  # everyone is in shadow
        async with engine.connect() as conn:
            users = sorted({*users, *(await conn.execute(select(accounts.c.user_id))).scalars()})
    out: list[UserParity] = []
    for uid in users:
        c = creds.of(uid)
        if c is None:
            out.append(UserParity(uid, False, problem="no Alpaca paper credentials for this user"))
            continue
        try:
            account, held, n_orders = await asyncio.to_thread(_read_alpaca, c, day)
        except (APIError, OSError) as err:
            out.append(UserParity(uid, False, problem=f"Alpaca: {type(err).__name__}"))
            continue
        out.append(await _compare(engine, mark, uid, account, held, n_orders))
    report = ParityReport(day, out)
    async with engine.begin() as conn:
        for u in out:
            await conn.execute(
                text(
                    "INSERT INTO accounts.parity_reports (report_date, user_id, ok, detail) "
                    "VALUES (:d, :u, :ok, CAST(:detail AS jsonb)) ON CONFLICT (report_date, "
                    "user_id) DO UPDATE SET ok = excluded.ok, detail = excluded.detail, "
                    "created_at = now()"
                ),
                {"d": day, "u": u.user_id, "ok": u.ok, "detail": json.dumps(u.detail())},
            )
    return report


async def _compare(
    engine: AsyncEngine,
    mark: Callable[[str], Awaitable[Decimal | None]],
    uid: str,
    account: dict[str, Any],
    held: list[dict[str, Any]],
    n_orders: int,
) -> UserParity:
    async with engine.connect() as conn:
        acct = (
            (await conn.execute(select(accounts).where(accounts.c.user_id == uid)))
            .mappings()
            .first()
        )
        if acct is None:
            return UserParity(uid, False, problem="no MBT account")
        rows = (
            await conn.execute(
                select(positions.c.symbol, positions.c.qty).where(
                    positions.c.account_id == acct["id"], positions.c.qty != 0
                )
            )
        ).all()
    mine = {str(s): Decimal(q) for s, q in rows}
    theirs = {str(p["symbol"]): Decimal(str(p["qty"])) for p in held}
    equity = Decimal(acct["cash"])
    for sym, qty in mine.items():
        px = await mark(sym)
        if px is not None:
            equity += qty * px * (100 if is_occ_symbol(sym) else 1)
    alp_equity = Decimal(str(account.get("equity") or account.get("portfolio_value") or 0))
    diffs = {
        s: (str(mine.get(s, 0)), str(theirs.get(s, 0)))
        for s in sorted({*mine, *theirs})
        if mine.get(s, Decimal(0)) != theirs.get(s, Decimal(0))
    }
    pct = (abs(equity - alp_equity) / alp_equity * 100 if alp_equity else Decimal(100)).quantize(
        Decimal("0.0001")
    )
    return UserParity(
        uid,
        ok=pct < THRESHOLD_PCT and not diffs,
        mbt_cash=Decimal(acct["cash"]),
        alpaca_cash=Decimal(str(account.get("cash") or 0)),
        mbt_equity=equity.quantize(Decimal("0.01")),
        alpaca_equity=alp_equity,
        divergence_pct=pct,
        position_diffs=diffs,
        orders_compared=n_orders,
    )
