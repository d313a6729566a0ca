"""The accounts ledger against real PostgreSQL: holds, exactly-once fills, parking."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from services.accounts import handlers
from services.accounts.adapters.tables import MIGRATIONS, accounts, activities, holds, parked_events
from services.platform.db import make_engine, migrate
from services.platform.errors import FailedPrecondition

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(database_url: str):  # type: ignore[no-untyped-def]
    e = make_engine(database_url, pool_size=8)
    await migrate(e, MIGRATIONS)
    yield e
    await e.dispose()


def fill(
    user_id: str, order_id: str, side: str, qty: str, price: str, status: str, n: int = 1
) -> handlers.FillApplied:
    return handlers.FillApplied(
        execution_id=f"{order_id}:{n}",
        order_id=order_id,
        user_id=user_id,
        symbol="IBM",
        side=side,
        qty=D(qty),
        price=D(price),
        filled_at=datetime(2013, 10, 7, 14, 0, tzinfo=UTC),
        order_status=status,
        explanation="test fill",
    )


async def test_migrations_are_idempotent(engine) -> None:  # type: ignore[no-untyped-def]
    assert await migrate(engine, MIGRATIONS) == len(MIGRATIONS.steps)
    assert await migrate(engine, MIGRATIONS) == len(MIGRATIONS.steps)


async def test_two_orders_cannot_spend_the_same_cash(engine) -> None:  # type: ignore[no-untyped-def]
    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "trial", "free", None)  # $10,000
    # 20 concurrent holds of $1,000 each: exactly 10 fit
    results = await asyncio.gather(
        *[
            handlers.place_hold(engine, user, str(uuid.uuid4()), "IBM", "buy", D(5), D(1000))
            for _ in range(20)
        ],
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, FailedPrecondition)]
    assert len(ok) == 10 and len(refused) == 10
    assert all(r.reason == "INSUFFICIENT_BUYING_POWER" for r in refused)
    async with engine.connect() as conn:
        acct = await handlers.account_of_user(conn, user)
        assert await handlers.held_amount(conn, str(acct["id"])) == D(10000)


async def test_a_batch_of_holds_is_decided_in_order_as_one_at_a_time_would_be(engine) -> None:  # type: ignore[no-untyped-def]
    """place_holds: one transaction, each hold judged after the ones before it (cash and shares),
    a repeat of an order id is the same hold, and two batches at once still never overspend."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.open_account(engine, a, "trial", "free", None)  # $10,000
    await handlers.open_account(engine, b, "trial", "free", None)
    sold = str(uuid.uuid4())
    async with engine.begin() as conn:  # b owns 10 IBM
        await handlers.apply_fill_event(
            conn, f"{sold}:1", fill(b, sold, "buy", "10", "100", "filled")
        )
    cash_b = D(10000) - D(1000)
    twice = str(uuid.uuid4())

    def buy(user: str, amount: str, oid: str | None = None) -> handlers.HoldRequest:
        return handlers.HoldRequest(user, oid or str(uuid.uuid4()), "IBM", "buy", D(1), D(amount))

    def sell(qty: int) -> handlers.HoldRequest:
        return handlers.HoldRequest(b, str(uuid.uuid4()), "IBM", "sell", D(qty), D(0))

    items = [
        buy(a, "6000", twice),
        buy(a, "5000"),  # 4,000 left: refused
        buy(a, "4000"),  # exactly what is left
        buy(a, "6000", twice),  # the same order again: its hold, not a second one
        sell(6),
        sell(5),  # 4 left: refused
        sell(4),
        buy(b, str(cash_b)),
        buy(b, "0.01"),
    ]
    results = await handlers.place_holds(engine, items)
    kinds = [type(r).__name__ for r in results]
    assert kinds == [
        "HoldPlaced",
        "FailedPrecondition",
        "HoldPlaced",
        "HoldPlaced",
        "HoldPlaced",
        "FailedPrecondition",
        "HoldPlaced",
        "HoldPlaced",
        "FailedPrecondition",
    ]
    assert isinstance(results[1], FailedPrecondition) and "available $4000.00" in results[1].message
    assert isinstance(results[5], FailedPrecondition) and "available: 4)" in results[5].message
    assert results[3] == results[0]
    async with engine.connect() as conn:
        acct_a = await handlers.account_of_user(conn, a)
        assert await handlers.held_amount(conn, str(acct_a["id"])) == D(10000)
        n = (await conn.execute(select(holds).where(holds.c.order_id == twice))).all()
        assert len(n) == 1
    # two batches at once on one account: the row lock orders them, so exactly 10 of 20 fit
    c = str(uuid.uuid4())
    await handlers.open_account(engine, c, "trial", "free", None)
    batches = await asyncio.gather(
        *[handlers.place_holds(engine, [buy(c, "1000") for _ in range(10)]) for _ in range(2)]
    )
    placed = [r for batch in batches for r in batch if isinstance(r, handlers.HoldPlaced)]
    assert len(placed) == 10


async def test_a_hold_waits_for_the_ledger_event_it_names(engine) -> None:  # type: ignore[no-untyped-def]
    """A hold with `after_event` is not decided (LEDGER_BEHIND) until the ledger has applied
    that event, and neither are its user's later holds in the batch; other users' are decided.
    Once the fill is applied, the same sell is placed against the shares it bought."""
    user, other = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.open_account(engine, user, "trial", "free", None)
    await handlers.open_account(engine, other, "trial", "free", None)
    bought = str(uuid.uuid4())
    f = fill(user, bought, "buy", "10", "100", "filled")
    sell = handlers.HoldRequest(
        user, str(uuid.uuid4()), "IBM", "sell", D(10), D(0), after_event=f.execution_id
    )
    later = handlers.HoldRequest(user, str(uuid.uuid4()), "IBM", "buy", D(1), D(100))
    theirs = handlers.HoldRequest(other, str(uuid.uuid4()), "IBM", "buy", D(1), D(100))
    results = await handlers.place_holds(engine, [sell, later, theirs])
    assert [getattr(r, "reason", "placed") for r in results] == [
        "LEDGER_BEHIND",
        "LEDGER_BEHIND",
        "placed",
    ]
    async with engine.connect() as conn:  # nothing held for the waiting user
        acct = await handlers.account_of_user(conn, user)
        assert await handlers.held_amount(conn, str(acct["id"])) == 0
    # without the wait the sell is refused: the ledger holds no IBM for the user yet
    with pytest.raises(FailedPrecondition, match=r"available: 0\)"):
        await handlers.place_hold(engine, user, str(uuid.uuid4()), "IBM", "sell", D(10), D(0))
    async with engine.begin() as conn:
        await handlers.apply_fill_event(conn, f.execution_id, f)
    placed = await handlers.place_holds(engine, [sell, later])
    assert all(isinstance(r, handlers.HoldPlaced) for r in placed), placed


async def test_fill_applies_exactly_once_and_releases_the_hold(engine) -> None:  # type: ignore[no-untyped-def]
    user, order = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None)
    await handlers.place_hold(engine, user, order, "IBM", "buy", D(10), D("1860.00"))
    f = fill(user, order, "buy", "10", "182.35", "filled")
    outcomes = []
    for _ in range(3):  # redelivered three times
        async with engine.begin() as conn:
            outcomes.append(await handlers.apply_fill_event(conn, f.execution_id, f))
    assert outcomes == ["applied", "duplicate", "duplicate"]
    async with engine.connect() as conn:
        acct = await handlers.account_of_user(conn, user)
        # 100,000 − 10 × 182.35 = 98,176.50
        assert D(acct["cash"]) == D("98176.50")
        assert await handlers.held_amount(conn, str(acct["id"])) == 0
        hold = (await conn.execute(select(holds).where(holds.c.order_id == order))).one()
        assert hold.status == "released"
        acts = (
            await conn.execute(select(activities).where(activities.c.account_id == acct["id"]))
        ).all()
        assert len(acts) == 1 and D(acts[0].amount) == D("-1823.50")


async def test_sell_hold_reserves_shares(engine) -> None:  # type: ignore[no-untyped-def]
    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None)
    buy = str(uuid.uuid4())
    async with engine.begin() as conn:
        await handlers.apply_fill_event(
            conn, f"{buy}:1", fill(user, buy, "buy", "10", "100", "filled")
        )
    await handlers.place_hold(engine, user, str(uuid.uuid4()), "IBM", "sell", D(6), D(0))
    with pytest.raises(FailedPrecondition, match=r"available: 4\)"):
        await handlers.place_hold(engine, user, str(uuid.uuid4()), "IBM", "sell", D(5), D(0))


async def test_fill_for_unknown_account_is_parked_not_lost(engine) -> None:  # type: ignore[no-untyped-def]
    f = fill(str(uuid.uuid4()), str(uuid.uuid4()), "buy", "1", "1", "filled")
    async with engine.begin() as conn:
        assert await handlers.apply_fill_event(conn, f.execution_id, f) == "parked"
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(parked_events).where(parked_events.c.event_id == f.execution_id)
            )
        ).one()
        assert "unknown account" in row.reason
        assert (
            await conn.execute(select(accounts).where(accounts.c.user_id == f.user_id))
        ).first() is None


async def test_margin_account_reg_t_buying_power_shorts_and_interest(engine) -> None:  # type: ignore[no-untyped-def]
    from services.accounts import jobs

    margin_user, cash_user = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.open_account(engine, margin_user, "diversifier", "free", None, "margin")
    await handlers.open_account(engine, cash_user, "diversifier", "free", None)
    # Reg-T: $100,000 equity, nothing held → buying power $200,000
    await handlers.place_hold(
        engine, margin_user, str(uuid.uuid4()), "IBM", "buy", D(1000), D(150000), {}
    )
    with pytest.raises(FailedPrecondition, match="insufficient buying power"):
        await handlers.place_hold(
            engine, cash_user, str(uuid.uuid4()), "IBM", "buy", D(1000), D(150000)
        )
    # a short sale: allowed on margin (held as buying power), refused in a cash account
    _, held, _ = await handlers.place_hold(
        engine, margin_user, str(uuid.uuid4()), "XYZ", "sell", D(100), D(0), {"XYZ": D("10")}
    )
    assert held == D("1000")  # 100 × $10
    with pytest.raises(FailedPrecondition, match="cannot sell short"):
        await handlers.place_hold(
            engine, cash_user, str(uuid.uuid4()), "XYZ", "sell", D(100), D(0), {}
        )
    # borrow: buy 1,000 IBM @ 150 with $100,000 → cash −50,000
    oid = str(uuid.uuid4())
    async with engine.begin() as conn:
        f = fill(margin_user, oid, "buy", "1000", "150", "filled")
        await handlers.apply_fill_event(conn, f.execution_id, f)
        acct = await handlers.account_of_user(conn, margin_user)
        assert D(acct["cash"]) == D("-50000")
        summary = await handlers.margin_summary_of(
            conn, str(acct["id"]), D(acct["cash"]), D(0), {"IBM": D("150")}
        )
    # equity −50,000 + 150,000 = 100,000; initial 50% × 150,000 = 75,000 → BP (100k − 75k) / 0.5
    assert (summary.margin_equity, summary.initial_margin, summary.buying_power) == (
        D("100000"),
        D("75000.00"),
        D("50000"),
    )
    assert summary.maintenance_margin == D("37500.00")
    # one day of interest at 8.25% actual/360 on $50,000: 50,000 × 0.0825 / 360 = 11.4583 → $11.46
    day = date(2099, 5, 4)
    assert await jobs.accrue_interest(engine, day, D("0.0825")) >= 1
    assert await jobs.accrue_interest(engine, day, D("0.0825")) == 0
    async with engine.connect() as conn:
        acct = await handlers.account_of_user(conn, margin_user)
        assert D(acct["cash"]) == D("-50011.46")
        interest = (
            await conn.execute(
                select(activities).where(
                    activities.c.account_id == acct["id"], activities.c.activity_type == "interest"
                )
            )
        ).one()
        assert D(interest.amount) == D("-11.46") and "50,000.00" in interest.description


async def test_cash_account_cannot_spend_unsettled_proceeds(engine) -> None:  # type: ignore[no-untyped-def]
    """T+1: a Monday sale (2013-10-07) settles Tuesday (2013-10-08)."""
    from services.conventions.calendar import MarketCalendar

    calendar = MarketCalendar()
    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "trial", "free", None)  # $10,000
    b, s = str(uuid.uuid4()), str(uuid.uuid4())
    async with engine.begin() as conn:
        await handlers.apply_fill_event(conn, f"{b}:1", fill(user, b, "buy", "10", "100", "filled"))
        sell = handlers.FillApplied(
            execution_id=f"{s}:1",
            order_id=s,
            user_id=user,
            symbol="IBM",
            side="sell",
            qty=D(10),
            price=D("110"),
            filled_at=datetime(2013, 10, 7, 15, tzinfo=UTC),
            order_status="filled",
            explanation="test",
        )
        await handlers.apply_fill_event(conn, sell.execution_id, sell)
    # cash 10,000 − 1,000 + 1,100 = 10,100, of which the 1,100 proceeds settle on the 8th
    monday = (datetime(2013, 10, 7, 19, tzinfo=UTC), calendar)
    tuesday = (datetime(2013, 10, 8, 14, tzinfo=UTC), calendar)
    with pytest.raises(FailedPrecondition, match=r"available \$9000\.00"):
        await handlers.place_hold(
            engine, user, str(uuid.uuid4()), "IBM", "buy", D(1), D("9500"), None, monday
        )
    _, held, _ = await handlers.place_hold(
        engine, user, str(uuid.uuid4()), "IBM", "buy", D(1), D("9500"), None, tuesday
    )
    assert held == D("9500")


async def test_held_cash_on_the_account_row_is_the_sum_of_its_active_holds(engine) -> None:  # type: ignore[no-untyped-def]
    """The triggers keep accounts.held_cash equal to the active holds through placing,
    fills using a hold up, partial fills and releases."""
    from sqlalchemy import func

    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None)
    orders = [str(uuid.uuid4()) for _ in range(4)]
    for o, amount in zip(orders, ("1000", "2000.50", "300", "44.44"), strict=True):
        await handlers.place_hold(engine, user, o, "IBM", "buy", D(10), D(amount))

    async def both() -> tuple[D, D]:
        async with engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user)
            total = (
                await conn.execute(
                    select(func.coalesce(func.sum(holds.c.amount), 0)).where(
                        holds.c.account_id == acct["id"], holds.c.status == "active"
                    )
                )
            ).scalar_one()
            return D(acct["held_cash"]), D(total)

    assert await both() == (D("3344.94"), D("3344.94"))
    async with (
        engine.begin() as conn
    ):  # a partial fill uses part of one hold, a fill all of another
        await handlers.apply_fill_event(
            conn, f"{orders[0]}:1", fill(user, orders[0], "buy", "4", "100", "partially_filled")
        )
        await handlers.apply_fill_event(
            conn, f"{orders[1]}:1", fill(user, orders[1], "buy", "10", "150", "filled")
        )
    async with engine.begin() as conn:
        await handlers.release_hold(conn, orders[2])
    held, total = await both()
    assert held == total == D("1000") - D("400") + D("44.44")


async def test_one_order_never_turns_a_margin_position_from_long_to_short_or_back(engine) -> None:  # type: ignore[no-untyped-def]
    """As at Alpaca: a sell while long sells at most what open sells do not hold yet, a buy
    while short covers at most what open buys do not cover yet (403 "insufficient qty
    available"); flat, a sell is a short sale; a spread's package hold buys no shares."""
    import dataclasses

    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None, "margin")
    long_buy, short_sale = str(uuid.uuid4()), str(uuid.uuid4())
    async with engine.begin() as conn:  # long 10 IBM, short 20 XYZ
        await handlers.apply_fill_event(
            conn, f"{long_buy}:1", fill(user, long_buy, "buy", "10", "100", "filled")
        )
        f = dataclasses.replace(
            fill(user, short_sale, "sell", "20", "10", "filled"),
            symbol="XYZ",
            execution_id=f"{short_sale}:1",
        )
        await handlers.apply_fill_event(conn, f.execution_id, f)
    marks = {"IBM": D("100"), "XYZ": D("10"), "ABC": D("5")}

    async def hold(symbol: str, side: str, qty: int, amount: str = "0") -> D:
        _, held, _ = await handlers.place_hold(
            engine, user, str(uuid.uuid4()), symbol, side, D(qty), D(amount), marks
        )
        return held

    async def refused(symbol: str, side: str, qty: int, available: int) -> None:
        with pytest.raises(FailedPrecondition) as err:
            await hold(symbol, side, qty, str(qty * 100))
        assert err.value.reason == "INSUFFICIENT_QTY"
        assert f"(requested: {qty}, available: {available})" in err.value.message

    await refused("IBM", "sell", 15, 10)  # would sell 10 and short 5
    assert await hold("IBM", "sell", 6) == 0  # closes part: shares held, no cash
    await refused("IBM", "sell", 5, 4)
    assert await hold("IBM", "sell", 4) == 0
    await refused("IBM", "sell", 1, 0)

    await refused("XYZ", "buy", 25, 20)  # would cover 20 and go long 5
    assert await hold("XYZ", "buy", 12, "120") == D("120")
    await refused("XYZ", "buy", 10, 8)
    assert await hold("XYZ", "buy", 8, "80") == D("80")
    await refused("XYZ", "buy", 1, 0)
    # a spread on XYZ options reserves cash under "XYZ" and trades no XYZ shares
    (spread,) = await handlers.place_holds(
        engine,
        [handlers.HoldRequest(user, str(uuid.uuid4()), "XYZ", "buy", D(3), D(450), package=True)],
        {user: marks},
    )
    assert not isinstance(spread, Exception) and spread.amount == D(450)

    # flat: a sell is a short sale, held in buying power (5 × $5)
    assert await hold("ABC", "sell", 5) == D("25")


async def test_the_owners_configuration_refuses_shorts_or_every_order(engine) -> None:  # type: ignore[no-untyped-def]
    """no_shorting: a margin account's short sale is refused, its closing sale is not;
    suspend_trade: every new order is refused, buys and sells alike."""
    from sqlalchemy import update

    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None, "margin")
    bought = str(uuid.uuid4())
    async with engine.begin() as conn:
        await handlers.apply_fill_event(
            conn, f"{bought}:1", fill(user, bought, "buy", "10", "100", "filled")
        )
        await conn.execute(
            update(accounts).where(accounts.c.user_id == user).values(no_shorting=True)
        )
    marks = {"IBM": D("100"), "XYZ": D("10")}

    async def hold(symbol: str, side: str, qty: int, amount: int = 0) -> D:
        _, held, _ = await handlers.place_hold(
            engine, user, str(uuid.uuid4()), symbol, side, D(qty), D(amount), marks
        )
        return held

    with pytest.raises(FailedPrecondition) as err:
        await hold("XYZ", "sell", 5)
    assert err.value.reason == "SHORTING_DISABLED" and "not allowed to short" in err.value.message
    assert await hold("IBM", "sell", 10) == 0  # closing the long: fine
    assert await hold("XYZ", "buy", 5, 50) == D(50)
    async with engine.begin() as conn:
        await conn.execute(
            update(accounts).where(accounts.c.user_id == user).values(suspend_trade=True)
        )
    for symbol, side in (("XYZ", "buy"), ("IBM", "sell")):
        with pytest.raises(FailedPrecondition) as err:
            await hold(symbol, side, 1, 10)
        assert err.value.reason == "TRADE_SUSPENDED"


async def test_releasing_a_hold_while_the_ledger_holds_the_account_does_not_deadlock(
    engine,
) -> None:  # type: ignore[no-untyped-def]
    """orders' ReleaseHold (on a cancel or replace) and the ledger's release of the same hold
    (on the order's end event, in a transaction that locks the account first) once deadlocked:
    the RPC locked the hold, then its trigger waited for the account row, which the ledger
    held while it waited for the hold. Every release now locks the account first."""
    from services.accounts.ledger_batch import release_holds

    user, order = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.open_account(engine, user, "trial", "free", None)
    await handlers.place_hold(engine, user, order, "IBM", "buy", D(1), D(100))
    locked = asyncio.Event()

    async def ledger() -> int:
        async with engine.begin() as conn:  # as apply_fills: accounts first, then holds
            await conn.execute(
                select(accounts.c.id).where(accounts.c.user_id == user).with_for_update()
            )
            locked.set()
            await asyncio.sleep(0.3)  # the RPC's release starts meanwhile
            return await release_holds(conn, [order])

    async def rpc() -> bool:
        await locked.wait()
        return await handlers.release_hold_tx(engine, order)

    by_ledger, by_rpc = await asyncio.gather(ledger(), rpc())
    assert (by_ledger, by_rpc) == (1, False)  # released once, by the first; no deadlock
    async with engine.connect() as conn:
        acct = await handlers.account_of_user(conn, user)
        assert await handlers.held_amount(conn, str(acct["id"])) == 0


async def test_a_partly_filled_cover_holds_only_what_is_left_of_it(engine) -> None:  # type: ignore[no-untyped-def]
    """Short 20, a buy of 12 covering: 8 more may be covered. 5 of the 12 fill (short 15, 7
    left open): still 8, not 15 - 12 = 3."""

    user, short, cover = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.open_account(engine, user, "diversifier", "free", None, "margin")
    async with engine.begin() as conn:
        f = fill(user, short, "sell", "20", "100", "filled")
        await handlers.apply_fill_event(conn, f.execution_id, f)
    marks = {"IBM": D("100")}
    await handlers.place_hold(engine, user, cover, "IBM", "buy", D(12), D(1200), marks)
    async with engine.begin() as conn:
        part = fill(user, cover, "buy", "5", "100", "partially_filled")
        await handlers.apply_fill_event(conn, part.execution_id, part)
    with pytest.raises(FailedPrecondition, match=r"available: 8\)"):
        await handlers.place_hold(
            engine, user, str(uuid.uuid4()), "IBM", "buy", D(9), D(900), marks
        )
    await handlers.place_hold(engine, user, str(uuid.uuid4()), "IBM", "buy", D(8), D(800), marks)


async def test_a_replacement_may_use_what_the_order_it_replaces_holds(engine) -> None:  # type: ignore[no-untyped-def]
    """PlaceHoldRequest.replaces: the old order's cash and shares count as available to its
    replacement, to it alone; both stay held until the old one is released."""
    user = str(uuid.uuid4())
    await handlers.open_account(engine, user, "trial", "free", None)  # $10,000
    bought = str(uuid.uuid4())
    async with engine.begin() as conn:  # 10 IBM at $100: $9,000 of cash left
        await handlers.apply_fill_event(
            conn, f"{bought}:1", fill(user, bought, "buy", "10", "100", "filled")
        )
    old_buy, old_sell = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.place_hold(engine, user, old_buy, "IBM", "buy", D(60), D(6000))
    await handlers.place_hold(engine, user, old_sell, "IBM", "sell", D(10), D(0))

    def item(side: str, qty: int, amount: int, replaces: str = "") -> handlers.HoldRequest:
        return handlers.HoldRequest(
            user, str(uuid.uuid4()), "IBM", side, D(qty), D(amount), replaces=replaces
        )

    # $8,000 > the $3,000 free, but within it with the old buy's $6,000; the next order in the
    # same batch gets no such credit; the sell of 10 again, within the old sell's 10
    results = await handlers.place_holds(
        engine,
        [
            item("buy", 80, 8000, replaces=old_buy),
            item("buy", 10, 1000),
            item("sell", 10, 0, replaces=old_sell),
            item("sell", 1, 0),
        ],
    )
    assert [getattr(r, "reason", "placed") for r in results] == [
        "placed",
        "INSUFFICIENT_BUYING_POWER",
        "placed",
        "INSUFFICIENT_QTY",
    ]
    async with engine.connect() as conn:  # both held until orders releases the old ones
        acct = await handlers.account_of_user(conn, user)
        assert await handlers.held_amount(conn, str(acct["id"])) == D(14000)
    assert await handlers.release_hold_tx(engine, old_buy)
    async with engine.connect() as conn:
        assert await handlers.held_amount(conn, str(acct["id"])) == D(8000)
