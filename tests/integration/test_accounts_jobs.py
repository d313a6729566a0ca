"""EOD mark-to-market and retention against real PostgreSQL, values worked out by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select, update

from services.accounts import handlers, jobs
from services.accounts.adapters.tables import MIGRATIONS, accounts, activities, eod_snapshots
from services.platform.db import make_engine, migrate

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(database_url: str):  # type: ignore[no-untyped-def]
    e = make_engine(database_url, pool_size=4)
    await migrate(e, MIGRATIONS)
    yield e
    await e.dispose()


async def buy(engine, user: str, symbol: str, qty: str, price: str) -> None:  # type: ignore[no-untyped-def]
    oid = str(uuid.uuid4())
    f = handlers.FillApplied(
        execution_id=f"{oid}:1",
        order_id=oid,
        user_id=user,
        symbol=symbol,
        side="buy",
        qty=D(qty),
        price=D(price),
        filled_at=datetime(2013, 10, 7, 15, tzinfo=UTC),
        order_status="filled",
        explanation="test",
    )
    async with engine.begin() as conn:
        await handlers.apply_fill_event(conn, f.execution_id, f)


async def test_mark_to_market_snapshots_each_account_once(engine) -> None:  # type: ignore[no-untyped-def]
    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "trial", "free", None)  # $10,000
    await buy(engine, user, "IBM", "10", "182.35")  # cash 10,000 − 1,823.50 = 8,176.50
    await buy(engine, user, "ZZZ", "2", "50")  # no close mark: carried at 50; cash 8,076.50
    as_of = date(2099, 1, 2)  # a day no other test snapshots
    n1 = await jobs.mark_to_market(engine, as_of, {"IBM": D("186.16"), "SPY": D("169.0")})
    n2 = await jobs.mark_to_market(engine, as_of, {"IBM": D("999")})  # redelivered: no change
    assert n1 >= 1 and n2 == 0
    async with engine.connect() as conn:
        acct = await handlers.account_of_user(conn, user)
        snap = (
            await conn.execute(
                select(eod_snapshots).where(
                    eod_snapshots.c.account_id == acct["id"], eod_snapshots.c.as_of_date == as_of
                )
            )
        ).one()
    # long value = 10 × 186.16 + 2 × 50 = 1,861.60 + 100 = 1,961.60; equity = 8,076.50 + 1,961.60
    assert D(snap.cash) == D("8076.50")
    assert D(snap.long_market_value) == D("1961.60")
    assert D(snap.equity) == D("10038.10")
    assert {p["symbol"]: D(str(p["mark"])) for p in snap.positions} == {
        "IBM": D("186.16"),
        "ZZZ": D(50),
    }


async def test_retention_purges_free_history_after_90_days(engine) -> None:  # type: ignore[no-untyped-def]
    free, pro = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.open_account(engine, free, "trial", "free", None)
    await handlers.open_account(engine, pro, "trial", "pro", None)
    await buy(engine, free, "IBM", "1", "100")
    await buy(engine, pro, "IBM", "1", "100")
    async with engine.begin() as conn:
        await conn.execute(
            update(activities)
            .values(occurred_at=datetime(2013, 10, 7, tzinfo=UTC))
            .where(
                activities.c.account_id.in_(
                    select(accounts.c.id).where(accounts.c.user_id.in_([free, pro]))
                )
            )
        )
    now = datetime(2013, 10, 7, tzinfo=UTC) + timedelta(days=91)
    await jobs.purge_retention(engine, now)
    async with engine.connect() as conn:

        def count(uid: str):  # type: ignore[no-untyped-def]
            return (
                select(activities.c.id)
                .join(accounts, accounts.c.id == activities.c.account_id)
                .where(accounts.c.user_id == uid)
            )

        assert (await conn.execute(count(free))).all() == []  # Free: 90 days
        assert len((await conn.execute(count(pro))).all()) == 1  # Pro: 3 years


async def test_aapl_split_and_dividend_from_the_data(engine) -> None:  # type: ignore[no-untyped-def]
    from services.marketdata.domain.corporate_actions import (
        CashDividend,
        Split,
        load_corporate_actions,
    )
    from services.marketdata.servicer import action_to_pb

    actions = load_corporate_actions("AAPL")
    split = action_to_pb(
        next(a for a in actions if isinstance(a, Split) and a.ex_date == date(2014, 6, 9))
    )
    div = action_to_pb(
        next(a for a in actions if isinstance(a, CashDividend) and a.ex_date == date(2013, 5, 9))
    )
    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None)
    await buy(engine, user, "AAPL", "10", "600")  # cash 100,000 − 6,000 = 94,000
    # dividend: 10 shares × $3.05 = $30.50 (data README: AAPL 2013-05-09 is $3.05/share)
    assert await jobs.apply_corporate_actions(engine, [div], {}) >= 1
    # 7-for-1: 10 @ 600 → 70 @ 85.714285714286 (600 / 7), cost basis 6,000.00 unchanged
    assert await jobs.apply_corporate_actions(engine, [split], {}) >= 1
    assert await jobs.apply_corporate_actions(engine, [div, split], {}) == 0  # idempotent
    async with engine.connect() as conn:
        acct = await handlers.account_of_user(conn, user)
        assert D(acct["cash"]) == D("94030.50")
        from services.accounts.adapters.tables import positions

        pos = (
            await conn.execute(
                select(positions).where(
                    positions.c.account_id == acct["id"], positions.c.symbol == "AAPL"
                )
            )
        ).one()
        assert D(pos.qty) == 70
        assert abs(D(pos.qty) * D(pos.avg_entry_price) - D(6000)) < D("0.000001")
        kinds = (
            (
                await conn.execute(
                    select(activities.c.activity_type)
                    .where(activities.c.account_id == acct["id"])
                    .order_by(activities.c.activity_type)
                )
            )
            .scalars()
            .all()
        )
        assert kinds == ["dividend", "fill", "split"]


async def test_pnl_window_splits_realized_and_unrealized(engine) -> None:  # type: ignore[no-untyped-def]
    from raxx.mbt.v1 import accounts_service_pb2 as pb
    from services.accounts.servicer import AccountsServicer
    from services.platform.auth import Principal, set_principal
    from services.platform.clients import ServiceChannel

    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "income_builder", "free", None)  # $50,000
    await buy(engine, user, "PNL", "10", "100")  # cash 49,000
    d1, d2 = date(2098, 3, 2), date(2098, 3, 3)
    await jobs.mark_to_market(engine, d1, {"PNL": D("100")})  # equity 49,000 + 1,000 = 50,000
    oid = str(uuid.uuid4())
    sell = handlers.FillApplied(
        execution_id=f"{oid}:1",
        order_id=oid,
        user_id=user,
        symbol="PNL",
        side="sell",
        qty=D(4),
        price=D("110"),
        filled_at=datetime(2098, 3, 3, 15, tzinfo=UTC),
        order_status="filled",
        explanation="test",
    )
    async with engine.begin() as conn:
        await handlers.apply_fill_event(conn, sell.execution_id, sell)  # cash 49,440
    await jobs.mark_to_market(engine, d2, {"PNL": D("105")})  # 49,440 + 6 × 105 = 50,070
    svc = AccountsServicer(engine, ServiceChannel("127.0.0.1:9", caller="test", secret=b"k" * 32))
    set_principal(Principal(user_id=user, session_id="s", tier="free"))
    pnl = await svc.GetPnl(pb.GetPnlRequest(from_date=d2.isoformat(), to_date=d2.isoformat()), None)  # type: ignore[arg-type]
    # total 50,070 − 50,000 = 70 = realized 4 × (110 − 100) = 40 + unrealized 6 × (105 − 100) = 30
    assert (pnl.starting_equity, pnl.ending_equity) == ("50000.00", "50070.00")
    assert (pnl.total, pnl.realized, pnl.unrealized_change, pnl.income) == (
        "70.00",
        "40.00",
        "30.00",
        "0.00",
    )
    hist = await svc.GetPortfolioHistory(
        pb.GetPortfolioHistoryRequest(start_date=d1.isoformat()), None
    )  # type: ignore[arg-type]
    assert [(p.date, p.equity, p.profit_loss) for p in hist.points][-2:] == [
        (d1.isoformat(), "50000.00", "0.00"),
        (d2.isoformat(), "50070.00", "70.00"),
    ]


async def test_goog_options_settle_at_expiration(engine) -> None:  # type: ignore[no-untyped-def]
    """GOOG contracts expiring 2015-12-24, settled against GOOG's close worked out from the data."""
    from services.accounts.adapters.tables import positions
    from services.marketdata.domain.recorded import RecordedArchive

    expiry = date(2015, 12, 24)
    # the close: the mid of GOOG's last quote before the 13:00 ET early close (18:00 UTC)
    last = [
        q
        for q in RecordedArchive().load("GOOG", expiry)
        if q.ts < datetime(2015, 12, 24, 18, tzinfo=UTC)
    ][-1]
    close = (last.bid + last.ask) / 2
    itm_call, otm_put = "GOOG151224C00700000", "GOOG151224P00700000"  # strike 700 < close
    assert close - 700 >= D("0.01") and close > 700  # so the call is in, the put out of the money
    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None)
    await buy(engine, user, itm_call, "2", "45.10")  # 2 × 45.10 × 100 = 9,020 → cash 90,980
    await buy(engine, user, otm_put, "1", "0.50")  # 50 → cash 90,930
    await jobs.expire_options(engine, expiry, {"GOOG": close})
    assert await jobs.expire_options(engine, expiry, {"GOOG": close}) == 0  # idempotent
    async with engine.connect() as conn:
        acct = await handlers.account_of_user(conn, user)
        # exercise: buy 200 GOOG at the 700 strike = 140,000 → cash 90,930 − 140,000
        assert D(acct["cash"]) == D("90930") - D("140000")
        pos = {
            r.symbol: r
            for r in await conn.execute(
                select(positions).where(positions.c.account_id == acct["id"])
            )
        }
        assert D(pos["GOOG"].qty) == 200 and D(pos["GOOG"].avg_entry_price) == 700
        assert D(pos[itm_call].qty) == 0 and D(pos[otm_put].qty) == 0
        # premiums are realized: −9,020 on the call, −50 on the put
        assert D(pos[itm_call].realized_pl) == D("-9020") and D(pos[otm_put].realized_pl) == D(
            "-50"
        )
        kinds = {
            r.symbol: r.activity_type
            for r in await conn.execute(
                select(activities.c.symbol, activities.c.activity_type).where(
                    activities.c.account_id == acct["id"], activities.c.activity_type != "fill"
                )
            )
        }
        assert kinds == {itm_call: "exercised", otm_put: "expired"}
