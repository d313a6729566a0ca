"""Scheduled, idempotent account jobs: end-of-day mark-to-market and the retention purge.

Each runs as set-based SQL in one transaction, so 100,000 accounts take one statement, and a
re-run (a redelivered trigger) changes nothing: snapshots are unique per account and day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Free 90 days, Pro 3 years, Pro+ unlimited (BRIEF §5).
RETENTION: dict[str, timedelta | None] = {
    "free": timedelta(days=90),
    "pro": timedelta(days=3 * 365),
    "pro_plus": None,
}

MARK_TO_MARKET_SQL = text(
    """
    WITH marks AS (
        SELECT * FROM unnest(CAST(:symbols AS text[]), CAST(:prices AS numeric[]))
            AS m(symbol, mark)
    ),
    valued AS (
        SELECT p.account_id, p.symbol, p.qty,
               coalesce(m.mark, p.avg_entry_price) AS mark,
               p.qty * coalesce(m.mark, p.avg_entry_price) AS value
        FROM accounts.positions p LEFT JOIN marks m ON m.symbol = p.symbol
        WHERE p.qty <> 0
    )
    INSERT INTO accounts.eod_snapshots
        (account_id, as_of_date, cash, long_market_value, short_market_value, equity, positions)
    SELECT a.id, :as_of, a.cash,
           coalesce(sum(v.value) FILTER (WHERE v.qty > 0), 0),
           coalesce(sum(v.value) FILTER (WHERE v.qty < 0), 0),
           a.cash + coalesce(sum(v.value), 0),
           coalesce(jsonb_agg(jsonb_build_object('symbol', v.symbol, 'qty', v.qty, 'mark', v.mark))
                    FILTER (WHERE v.symbol IS NOT NULL), '[]'::jsonb)
    FROM accounts.accounts a LEFT JOIN valued v ON v.account_id = a.id
    WHERE a.status <> 'closed'
    GROUP BY a.id, a.cash
    ON CONFLICT (account_id, as_of_date) DO NOTHING
    """
)


async def mark_to_market(engine: AsyncEngine, as_of: date, marks: dict[str, Decimal]) -> int:
    """Snapshot every account's cash, positions and equity at `as_of`'s close.

    `marks` are closing prices by symbol; a position without one is carried at its average
    entry price (stated in the snapshot's positions). Returns the number of new snapshots.
    """
    symbols = sorted(marks)
    async with engine.begin() as conn:
        res = await conn.execute(
            MARK_TO_MARKET_SQL,
            {"symbols": symbols, "prices": [marks[s] for s in symbols], "as_of": as_of},
        )
    return int(res.rowcount or 0)


async def purge_retention(engine: AsyncEngine, now: datetime) -> int:
    """Delete activities and snapshots older than each account's tier retention."""
    deleted = 0
    async with engine.begin() as conn:
        for tier, keep in RETENTION.items():
            if keep is None:
                continue
            cutoff = now - keep
            for table, column in (("activities", "occurred_at"), ("eod_snapshots", "as_of_date")):
                res = await conn.execute(
                    text(
                        f"DELETE FROM accounts.{table} t USING accounts.accounts a "
                        f"WHERE t.account_id = a.id AND a.tier = :tier AND t.{column} < :cutoff"
                    ),
                    {"tier": tier, "cutoff": cutoff if column == "occurred_at" else cutoff.date()},
                )
                deleted += int(res.rowcount or 0)
    return deleted
