"""AccountsService over gRPC: proto <-> handlers, nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import grpc
from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from raxx.mbt.v1 import accounts_service_pb2 as pb
from raxx.mbt.v1 import accounts_service_pb2_grpc as pb_grpc
from raxx.mbt.v1 import marketdata_service_pb2 as md_pb
from raxx.mbt.v1 import marketdata_service_pb2_grpc as md_grpc
from services.accounts import handlers, privacy
from services.accounts.adapters.tables import (
    accounts,
    activities,
    eod_snapshots,
    holds,
    positions,
)
from services.accounts.domain.ledger import ZERO, buying_power_cash_account
from services.accounts.domain.valuation import intraday_pl
from services.accounts.freshness import LedgerFreshness
from services.accounts.ledger_batch import multiplier_of
from services.accounts.settlement import NEW_YORK, unsettled_proceeds
from services.conventions.calendar import MarketCalendar
from services.conventions.decimals import dec_to_wire, money
from services.platform.auth import require_operator, require_service, require_user
from services.platform.clients import ServiceChannel
from services.platform.errors import FailedPrecondition, InvalidArgument, MbtError, NotFound
from services.platform.flags import RuntimeFlags
from services.platform.pagination import next_page_token, page_bounds
from services.platform.wire import (
    parse_date,
    parse_decimal,
    ts_from_wire,
    ts_to_wire,
)

MAX_HOLDS_PER_CALL = 1000
INTRADAY_STEPS = {
    "1Min": timedelta(minutes=1),
    "5Min": timedelta(minutes=5),
    "15Min": timedelta(minutes=15),
    "1H": timedelta(hours=1),
}
BAR_FRAME = {"1Min": "1Min", "5Min": "5Min", "15Min": "15Min", "1H": "1Hour"}
Ctx = grpc.aio.ServicerContext[Any, Any]
TIERS = ("free", "pro", "pro_plus")


@dataclass(frozen=True)
class PreviousClose:
    """An account at the previous trading day's close: its equity and its positions' (qty,
    mark, average cost or None in older snapshots) by symbol (None and {} before its first
    end-of-day snapshot)."""

    equity: Decimal | None
    marks: dict[str, tuple[Decimal, Decimal, Decimal | None]]


class AccountsServicer(pb_grpc.AccountsServiceServicer):
    def __init__(
        self,
        engine: AsyncEngine,
        marketdata: ServiceChannel,
        calendar: MarketCalendar | None = None,
        orders: ServiceChannel | None = None,
    ) -> None:
        self.orders = orders
        self.flags = RuntimeFlags()  # the runtime's, set by the entrypoint
        # reads wait for the ledger to apply the account's newest events (set by the entrypoint)
        self.freshness: LedgerFreshness | None = None
        self.calendar = calendar
        self.engine = engine
        self.md = marketdata
        self.md_stub = md_grpc.MarketDataServiceStub(marketdata.channel)

    async def _mark(self, symbol: str) -> Decimal | None:
        """Mark price for valuation: the mid of the latest NBBO (None when no quote)."""
        try:
            q = await self.md.call(self.md_stub.GetQuote, md_pb.GetQuoteRequest(symbol=symbol))
        except MbtError:
            return None
        bid, ask = Decimal(q.bid), Decimal(q.ask)
        return (bid + ask) / 2 if bid > 0 else ask

    async def _caught_up(self, account_id: str) -> bool:
        """Wait for the ledger to apply the account's newest events (`freshness`); whether it
        was behind."""
        return self.freshness is not None and await self.freshness.wait(account_id)

    async def _positions(
        self, account_id: str, close: PreviousClose | None = None
    ) -> list[pb.Position]:
        """The open positions at their marks; `close`: the previous close (read when None)."""
        if close is None:
            close = await self._previous_close(account_id, await self._market_now())
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(positions)
                        .where(positions.c.account_id == account_id, positions.c.qty != 0)
                        .order_by(positions.c.symbol)
                    )
                )
                .mappings()
                .all()
            )
            # what open closing orders hold: sells of a long, buys covering a short
            held = {
                (h.symbol, h.side): Decimal(h.qty)
                for h in await conn.execute(
                    select(holds.c.symbol, holds.c.side, func.sum(holds.c.qty).label("qty"))
                    .where(holds.c.account_id == account_id, holds.c.status == "active")
                    .group_by(holds.c.symbol, holds.c.side)
                )
            }
        out = []
        for r in rows:
            qty, avg = Decimal(r["qty"]), Decimal(r["avg_entry_price"])
            closing = held.get((r["symbol"], "sell" if qty > 0 else "buy"), ZERO)
            available = qty - closing if qty > 0 else qty + closing
            mark = await self._mark(r["symbol"])
            m = multiplier_of(r["symbol"])
            mv = (qty * mark if mark is not None else qty * avg) * m
            upl = mv - qty * avg * m
            # since the previous close (`intraday_pl`), if held then on the same side
            then = close.marks.get(r["symbol"])
            if then is not None and then[0] * qty <= 0:
                then = None
            intraday = intraday_pl(qty, avg, mark, then, m) if mark is not None else upl
            out.append(
                pb.Position(
                    symbol=r["symbol"],
                    asset_class=r["asset_class"],
                    qty=dec_to_wire(qty),
                    qty_available=dec_to_wire(available),
                    avg_entry_price=dec_to_wire(avg.quantize(Decimal("0.0001"))),
                    cost_basis=money(qty * avg * m),
                    current_price=dec_to_wire(mark) if mark is not None else "",
                    market_value=money(mv),
                    unrealized_pl=money(upl),
                    realized_pl=money(Decimal(r["realized_pl"])),
                    opened_at=ts_to_wire(r["opened_at"]),
                    lastday_price=dec_to_wire(then[1]) if then is not None else "",
                    unrealized_intraday_pl=money(intraday),
                )
            )
        return out

    async def _market_now(self) -> datetime | None:
        """The market clock (None when market data does not answer)."""
        try:
            clock = await self.md.call(self.md_stub.GetClock, md_pb.GetClockRequest())
        except MbtError:
            return None
        return ts_from_wire(clock.timestamp)

    async def _unsettled(self, account_id: str, now: datetime | None) -> Decimal:
        """Unsettled sale proceeds at the market clock (0 when the clock is unavailable)."""
        if self.calendar is None or now is None:
            return ZERO
        async with self.engine.connect() as conn:
            return await unsettled_proceeds(conn, account_id, now, self.calendar)

    async def _previous_close(self, account_id: str, now: datetime | None) -> PreviousClose:
        """The newest end-of-day snapshot before the market clock's day (the previous close)."""
        day = (now or datetime.now(UTC)).astimezone(NEW_YORK).date()
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(eod_snapshots.c.equity, eod_snapshots.c.positions)
                    .where(
                        eod_snapshots.c.account_id == account_id,
                        eod_snapshots.c.as_of_date < day,
                    )
                    .order_by(eod_snapshots.c.as_of_date.desc())
                    .limit(1)
                )
            ).first()
        if row is None:
            return PreviousClose(None, {})
        marks = {
            str(p["symbol"]): (
                Decimal(str(p["qty"])),
                Decimal(str(p["mark"])),
                Decimal(str(p["avg"])) if p.get("avg") is not None else None,
            )
            for p in row.positions or []
            if p.get("mark") is not None and p.get("qty") is not None
        }
        return PreviousClose(Decimal(row.equity), marks)

    async def _marks(self, wanted: dict[str, set[str]]) -> dict[str, dict[str, Decimal]]:
        """Marks by user for the symbols wanted (what a margin account's holds are judged on)."""
        cache: dict[str, Decimal | None] = {}
        out: dict[str, dict[str, Decimal]] = {}
        for user_id, symbols in wanted.items():
            marks: dict[str, Decimal] = {}
            for s in symbols:
                if s not in cache:
                    cache[s] = await self._mark(s)
                if (m := cache[s]) is not None:
                    marks[s] = m
            out[user_id] = marks
        return out

    async def _account_message(self, acct: dict[str, Any], held: Decimal) -> pb.Account:
        cash = Decimal(str(acct["cash"]))
        now = await self._market_now()
        close = await self._previous_close(str(acct["id"]), now)
        pos = await self._positions(str(acct["id"]), close)
        long_mv = sum((Decimal(p.market_value) for p in pos if Decimal(p.qty) > 0), ZERO)
        short_mv = sum((Decimal(p.market_value) for p in pos if Decimal(p.qty) < 0), ZERO)
        buying_power = buying_power_cash_account(cash, held)
        unsettled = (
            await self._unsettled(str(acct["id"]), now) if acct["account_type"] == "cash" else ZERO
        )
        equity = cash + long_mv + short_mv
        buying_power = max(buying_power - unsettled, ZERO)
        initial = maintenance = ""
        if acct["account_type"] == "margin":
            marks = {p.symbol: Decimal(p.current_price) for p in pos if p.current_price}
            async with self.engine.connect() as conn:
                summary = await handlers.margin_summary_of(conn, str(acct["id"]), cash, held, marks)
            buying_power = summary.buying_power
            initial, maintenance = money(summary.initial_margin), money(summary.maintenance_margin)
        return pb.Account(
            initial_margin=initial,
            maintenance_margin=maintenance,
            id=str(acct["id"]),
            user_id=str(acct["user_id"]),
            account_type=str(acct["account_type"]),
            status=str(acct["status"]),
            profile=str(acct["profile"]),
            tier=str(acct["tier"]),
            cash=money(cash),
            buying_power=money(buying_power),
            equity=money(equity),
            last_equity=money(close.equity if close.equity is not None else equity),
            no_shorting=acct["account_type"] != "margin" or bool(acct["no_shorting"]),
            suspend_trade=bool(acct["suspend_trade"]),
            long_market_value=money(long_mv),
            short_market_value=money(short_mv),
            held_for_orders=money(held),
            currency="USD",
            default_fill_preference=str(acct["fill_preference"]),
            created_at=ts_to_wire(acct["created_at"]),
            source="mbt",
        )

    def _shadow_source(self, user_id: str) -> Any:
        """The user's Alpaca paper credentials while they are in shadow mode (reads come from
        Alpaca then), else None."""
        if self.flags.paper_mode(user_id) != "shadow":
            return None
        from services.platform.shadow_credentials import ShadowCredentials

        return ShadowCredentials().of(user_id)

    async def GetAccount(self, request: pb.GetAccountRequest, context: Ctx) -> pb.Account:
        user = require_user()
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user.user_id)
            held = await handlers.held_amount(conn, str(acct["id"]))
        if await self._caught_up(str(acct["id"])):  # read again, with the newest fills
            async with self.engine.connect() as conn:
                acct = await handlers.account_of_user(conn, user.user_id)
                held = await handlers.held_amount(conn, str(acct["id"]))
        mine = await self._account_message(acct, held)
        if (creds := self._shadow_source(user.user_id)) is not None:
            from services.accounts.shadow_reads import alpaca_account

            return await alpaca_account(creds, mine)
        return mine

    async def ListPositions(
        self, request: pb.ListPositionsRequest, context: Ctx
    ) -> pb.ListPositionsResponse:
        user = require_user()
        if (creds := self._shadow_source(user.user_id)) is not None:
            from services.accounts.shadow_reads import SOURCE, alpaca_positions

            return pb.ListPositionsResponse(positions=await alpaca_positions(creds), source=SOURCE)
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user.user_id)
        await self._caught_up(str(acct["id"]))
        return pb.ListPositionsResponse(
            positions=await self._positions(str(acct["id"])), source="mbt"
        )

    async def GetPosition(self, request: pb.GetPositionRequest, context: Ctx) -> pb.Position:
        user = require_user()
        symbol = request.symbol.strip().upper()
        if not symbol:
            raise InvalidArgument("symbol", "is required")
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user.user_id)
        await self._caught_up(str(acct["id"]))
        for p in await self._positions(str(acct["id"])):
            if p.symbol == symbol:
                return p
        raise NotFound(
            f"no open position in {symbol}",
            reason="POSITION_NOT_FOUND",
            metadata={"symbol": symbol},
        )

    async def ListActivities(
        self, request: pb.ListActivitiesRequest, context: Ctx
    ) -> pb.ListActivitiesResponse:
        user = require_user()
        if request.after_id and request.page_token:
            raise InvalidArgument("after_id", "pages the same listing as page_token: send one")
        size, offset = page_bounds(request.page_size, request.page_token)
        a = activities.c
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user.user_id)
        await self._caught_up(str(acct["id"]))  # with the activities of the newest fills
        async with self.engine.connect() as conn:
            q = select(activities).where(a.account_id == acct["id"])
            if request.activity_type:
                q = q.where(a.activity_type == request.activity_type)
            if request.activity_types:
                q = q.where(a.activity_type.in_(list(request.activity_types)))
            if request.HasField("start_time"):
                q = q.where(a.occurred_at >= ts_from_wire(request.start_time))
            if request.HasField("end_time"):
                q = q.where(a.occurred_at < ts_from_wire(request.end_time))
            key = (a.occurred_at, a.id)
            if request.after_id:
                mark = (
                    await conn.execute(
                        select(a.occurred_at, a.id).where(
                            a.account_id == acct["id"], a.id == request.after_id
                        )
                    )
                ).first()
                if mark is None:
                    raise InvalidArgument("after_id", "no activity of this account has that id")
                after = (
                    tuple_(*key) > tuple_(*mark)
                    if request.ascending
                    else (tuple_(*key) < tuple_(*mark))
                )
                q = q.where(after)
            order = [k.asc() for k in key] if request.ascending else [k.desc() for k in key]
            q = q.order_by(*order)
            rows = (await conn.execute(q.offset(offset).limit(size + 1))).mappings().all()
        return pb.ListActivitiesResponse(
            activities=[
                pb.Activity(
                    id=r["id"],
                    activity_type=r["activity_type"],
                    symbol=r["symbol"] or "",
                    amount=money(Decimal(r["amount"])),
                    qty=dec_to_wire(Decimal(r["qty"])) if r["qty"] is not None else "",
                    price=dec_to_wire(Decimal(r["price"])) if r["price"] is not None else "",
                    ref_id=r["ref_id"] or "",
                    description=r["description"],
                    occurred_at=ts_to_wire(r["occurred_at"]),
                )
                for r in rows[:size]
            ],
            next_page_token=next_page_token(offset, size, len(rows)),
        )

    async def GetPortfolioHistory(
        self, request: pb.GetPortfolioHistoryRequest, context: Ctx
    ) -> pb.PortfolioHistory:
        user = require_user()
        frame = request.timeframe or "1D"
        if frame != "1D":
            return await self._intraday_history(user.user_id, frame, request.start_date)
        bounds = [
            parse_date("start_date", request.start_date),
            parse_date("end_date", request.end_date),
        ]
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user.user_id)
            q = select(eod_snapshots).where(eod_snapshots.c.account_id == acct["id"])
            if bounds[0]:
                q = q.where(eod_snapshots.c.as_of_date >= bounds[0])
            if bounds[1]:
                q = q.where(eod_snapshots.c.as_of_date <= bounds[1])
            rows = (await conn.execute(q.order_by(eod_snapshots.c.as_of_date))).mappings().all()
        out = pb.PortfolioHistory()
        prev: Decimal | None = None
        for r in rows:
            equity = Decimal(r["equity"])
            out.points.add(
                date=r["as_of_date"].isoformat(),
                equity=money(equity),
                cash=money(Decimal(r["cash"])),
                long_market_value=money(Decimal(r["long_market_value"])),
                short_market_value=money(Decimal(r["short_market_value"])),
                profit_loss=money(equity - prev) if prev is not None else "0.00",
            )
            prev = equity
        return out

    async def _intraday_history(
        self, user_id: str, frame: str, day_text: str
    ) -> pb.PortfolioHistory:
        """Equity at the end of each interval of one session, up to the market clock.

        Worked back from now: cash and positions at time t are today's minus what every
        activity after t changed (fills, dividends, splits, expirations); each position is
        marked at the close of its last quote bar ending by t (the mid bars market data built
        from the quotes it published)."""
        step = INTRADAY_STEPS.get(frame)
        if step is None:
            raise InvalidArgument("timeframe", "must be 1D, 1Min, 5Min, 15Min or 1H")
        if self.calendar is None:
            raise FailedPrecondition("no market calendar here", reason="NO_CALENDAR")
        clock = await self.md.call(self.md_stub.GetClock, md_pb.GetClockRequest())
        now = ts_from_wire(clock.timestamp)
        day = parse_date("start_date", day_text) or now.astimezone(NEW_YORK).date()
        out = pb.PortfolioHistory()
        bounds = self.calendar.session_bounds(day)
        if bounds is None or bounds[0] >= now:
            return out
        open_, end = bounds[0], min(bounds[1], now)
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user_id)
            account_id = str(acct["id"])
            cash_now = Decimal(str(acct["cash"]))
            held = {
                r.symbol: Decimal(r.qty)
                for r in await conn.execute(
                    select(positions.c.symbol, positions.c.qty).where(
                        positions.c.account_id == account_id
                    )
                )
            }
            later = (
                await conn.execute(
                    select(
                        activities.c.occurred_at,
                        activities.c.symbol,
                        activities.c.amount,
                        activities.c.qty,
                    )
                    .where(activities.c.account_id == account_id, activities.c.occurred_at > open_)
                    .order_by(activities.c.occurred_at)
                )
            ).all()
        symbols = sorted({*held, *(r.symbol for r in later if r.symbol)})
        closes: dict[str, list[tuple[datetime, Decimal]]] = {}
        for symbol in symbols:
            req = md_pb.ListBarsRequest(symbol=symbol, timeframe=BAR_FRAME[frame])
            req.start_time.CopyFrom(ts_to_wire(open_ - timedelta(hours=1)))
            req.end_time.CopyFrom(ts_to_wire(end))
            try:
                bars = (await self.md.call(self.md_stub.ListBars, req)).bars
            except MbtError:
                bars = []
            closes[symbol] = [
                (ts_from_wire(b.start) + step, Decimal(b.close)) for b in bars if b.close
            ]
        prev: Decimal | None = None
        t = open_ + step
        while t <= end + step and t - step < end:
            at = min(t, end)
            cash = cash_now - sum((Decimal(r.amount) for r in later if r.occurred_at > at), ZERO)
            qty = dict(held)
            for r in later:
                if r.occurred_at > at and r.symbol and r.qty is not None:
                    qty[r.symbol] = qty.get(r.symbol, ZERO) - Decimal(r.qty)
            long_mv = short_mv = ZERO
            for symbol, q in qty.items():
                if q == 0:
                    continue
                marks = [c for ended, c in closes.get(symbol, []) if ended <= at]
                if not marks:
                    continue
                value = q * marks[-1] * multiplier_of(symbol)
                if value >= 0:
                    long_mv += value
                else:
                    short_mv += value
            equity = cash + long_mv + short_mv
            point = out.points.add(
                date=at.astimezone(NEW_YORK).date().isoformat(),
                equity=money(equity),
                cash=money(cash),
                long_market_value=money(long_mv),
                short_market_value=money(short_mv),
                profit_loss=money(equity - prev) if prev is not None else "0.00",
            )
            point.timestamp.CopyFrom(ts_to_wire(at))
            prev = equity
            t += step
        return out

    async def GetPnl(self, request: pb.GetPnlRequest, context: Ctx) -> pb.Pnl:
        user = require_user()
        start = parse_date("from_date", request.from_date, required=True)
        end = parse_date("to_date", request.to_date, required=True)
        assert start is not None and end is not None
        if end < start:
            raise InvalidArgument("to_date", "must be on or after from_date")
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, user.user_id)
            snaps = eod_snapshots.c
            before = (
                await conn.execute(
                    select(snaps.equity, snaps.as_of_date)
                    .where(snaps.account_id == acct["id"], snaps.as_of_date < start)
                    .order_by(snaps.as_of_date.desc())
                    .limit(1)
                )
            ).first()
            after = (
                await conn.execute(
                    select(snaps.equity, snaps.as_of_date)
                    .where(snaps.account_id == acct["id"], snaps.as_of_date <= end)
                    .order_by(snaps.as_of_date.desc())
                    .limit(1)
                )
            ).first()
            if after is None or after.as_of_date < start:
                raise FailedPrecondition(
                    f"no end-of-day snapshot between {start} and {end} yet",
                    reason="NO_SNAPSHOT",
                )
            window = (
                activities.c.account_id == acct["id"],
                activities.c.occurred_at >= datetime.combine(start, time(0), tzinfo=UTC),
                activities.c.occurred_at
                < datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC),
            )
            realized = (
                await conn.execute(
                    select(func.coalesce(func.sum(activities.c.realized_pl), 0)).where(*window)
                )
            ).scalar_one()
            income = (
                await conn.execute(
                    select(func.coalesce(func.sum(activities.c.amount), 0)).where(
                        *window, activities.c.activity_type.in_(["dividend", "interest"])
                    )
                )
            ).scalar_one()
        # the window starts from the previous close, or from the opening deposit
        starting = Decimal(before.equity) if before is not None else await self._opening_cash(acct)
        ending = Decimal(after.equity)
        total = ending - starting
        realized_d, income_d = Decimal(realized), Decimal(income)
        return pb.Pnl(
            from_date=start.isoformat(),
            to_date=end.isoformat(),
            starting_equity=money(starting),
            ending_equity=money(ending),
            total=money(total),
            realized=money(realized_d),
            unrealized_change=money(total - realized_d - income_d),
            income=money(income_d),
        )

    async def _opening_cash(self, acct: dict[str, Any]) -> Decimal:
        from services.accounts.domain.profiles import PROFILES

        return PROFILES[str(acct["profile"])].starting_cash

    async def ExportUserData(
        self, request: pb.ExportUserDataRequest, context: Ctx
    ) -> pb.UserDataExport:
        require_service()
        return pb.UserDataExport(json=await privacy.export_user(self.engine, request.user_id))

    async def ListMonthlyCycles(
        self, request: pb.ListMonthlyCyclesRequest, context: Ctx
    ) -> pb.ListMonthlyCyclesResponse:
        require_service()
        from services.accounts.domain.cycles import consecutive_profitable, monthly_cycles

        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, request.user_id)
            rows = (
                await conn.execute(
                    select(eod_snapshots.c.as_of_date, eod_snapshots.c.equity)
                    .where(eod_snapshots.c.account_id == acct["id"])
                    .order_by(eod_snapshots.c.as_of_date)
                )
            ).all()
        calendar = self.calendar or MarketCalendar()
        self.calendar = calendar
        cycles = monthly_cycles(
            [(r[0], Decimal(r[1])) for r in rows],
            await self._opening_cash(dict(acct)),
            lambda d: calendar.session_bounds(d) is not None,
        )
        return pb.ListMonthlyCyclesResponse(
            cycles=[
                pb.MonthlyCycle(
                    month=c.month,
                    start_equity=money(c.start_equity),
                    end_equity=money(c.end_equity),
                    profit_loss=money(c.profit_loss),
                    complete=c.complete,
                )
                for c in cycles
            ],
            consecutive_profitable=consecutive_profitable(cycles),
        )

    async def ImportAlpacaAccount(
        self, request: pb.ImportAlpacaAccountRequest, context: Ctx
    ) -> pb.ImportAlpacaAccountResponse:
        operator = require_operator()
        from services.accounts.alpaca_import import import_alpaca
        from services.platform.secret import Secret

        if self.orders is None:
            raise FailedPrecondition("this accounts process has no orders channel")
        r = await import_alpaca(
            self.engine,
            self.orders,
            request.user_id,
            request.alpaca_key_id,
            Secret(request.alpaca_secret_key),
            request.alpaca_url,
        )
        await self._audit(
            operator.user_id,
            "import_alpaca",
            request.user_id,
            {
                "source_account": r.source_account,
                "steps_done": r.done,
                "steps_already_done": r.already,
                "activities_added": r.activities_added,
                "orders_added": r.orders_added,
            },
        )
        return pb.ImportAlpacaAccountResponse(
            alpaca_account_number=r.source_account,
            steps_done=r.done,
            steps_already_done=r.already,
            cash=money(r.cash),
            positions=r.positions,
            activities_added=r.activities_added,
            snapshots_added=r.snapshots_added,
            orders_added=r.orders_added,
            open_orders_skipped=r.open_orders_skipped,
        )

    async def VerifyParity(self, request: pb.VerifyParityRequest, context: Ctx) -> pb.ParityReport:
        operator = require_operator()
        day = parse_date("date", request.date) or datetime.now(UTC).date()
        report = await self.parity(day)
        await self._audit(
            operator.user_id,
            "verify_parity",
            None,
            {"date": report.date, "users": report.users_compared, "diverging": report.diverging},
        )
        return report

    async def _audit(
        self,
        actor: str,
        action: str,
        user_id: str | None,
        detail: dict[str, Any],
        conn: AsyncConnection | None = None,
    ) -> None:
        """An audit row (in `conn`'s transaction when given)."""
        if conn is None:
            async with self.engine.begin() as own:
                return await self._audit(actor, action, user_id, detail, own)
        await conn.execute(
            text(
                "INSERT INTO accounts.audit_log (actor, action, user_id, detail) "
                "VALUES (:a, :act, :u, CAST(:d AS jsonb))"
            ),
            {"a": actor[:80], "act": action, "u": user_id, "d": json.dumps(detail)},
        )

    async def parity(self, day: date) -> pb.ParityReport:
        from services.accounts.parity import verify_parity
        from services.platform.shadow_credentials import ShadowCredentials

        r = await verify_parity(self.engine, self.flags, ShadowCredentials(), self._mark, day)
        return pb.ParityReport(
            date=day.isoformat(),
            users=[
                pb.UserParity(
                    user_id=u.user_id,
                    ok=u.ok,
                    mbt_cash=money(u.mbt_cash),
                    alpaca_cash=money(u.alpaca_cash),
                    mbt_equity=money(u.mbt_equity),
                    alpaca_equity=money(u.alpaca_equity),
                    divergence_pct=str(u.divergence_pct),
                    position_diffs=[
                        f"{s} mbt={m} alpaca={a}" for s, (m, a) in u.position_diffs.items()
                    ],
                    orders_compared=u.orders_compared,
                    problem=u.problem,
                )
                for u in r.users
            ],
            users_compared=len(r.users),
            diverging=r.diverging,
            max_divergence_pct=str(r.max_divergence_pct),
            orders_compared=r.orders_compared,
            criterion=r.criterion,
        )

    async def OpenAccount(self, request: pb.OpenAccountRequest, context: Ctx) -> pb.Account:
        require_service()
        if not request.user_id:
            raise InvalidArgument("user_id", "is required")
        override = parse_decimal("starting_cash", request.starting_cash, required=False)
        await handlers.open_account(
            self.engine,
            request.user_id,
            request.profile,
            request.tier,
            override,
            request.account_type,
        )
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, request.user_id)
            held = await handlers.held_amount(conn, str(acct["id"]))
        return await self._account_message(acct, held)

    async def LookupAccount(self, request: pb.LookupAccountRequest, context: Ctx) -> pb.Account:
        require_service()
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, request.user_id)
            held = await handlers.held_amount(conn, str(acct["id"]))
        return await self._account_message(acct, held)

    async def UpdateAccountConfiguration(
        self, request: pb.UpdateAccountConfigurationRequest, context: Ctx
    ) -> pb.Account:
        user = require_user()
        changes: dict[str, bool] = {}
        for name in ("no_shorting", "suspend_trade"):
            if request.HasField(name):
                changes[name] = getattr(request, name)
        async with self.engine.begin() as conn:
            acct = await handlers.account_of_user(conn, user.user_id, lock=True)
            if changes.get("no_shorting") is False and acct["account_type"] != "margin":
                raise FailedPrecondition(
                    "no_shorting: a cash account cannot sell short (open a margin account)",
                    reason="CASH_ACCOUNT_NO_SHORTING",
                )
            if changes:
                await conn.execute(
                    update(accounts).where(accounts.c.id == acct["id"]).values(**changes)
                )
                # the owner, by user id (erasure keeps only a keyed hash of it)
                await self._audit("owner", "configure", user.user_id, changes, conn)
            acct = await handlers.account_of_user(conn, user.user_id)
            held = await handlers.held_amount(conn, str(acct["id"]))
        return await self._account_message(acct, held)

    async def SetAccountTier(self, request: pb.SetAccountTierRequest, context: Ctx) -> pb.Account:
        require_service()
        if request.tier not in TIERS:
            raise InvalidArgument("tier", f"must be one of {', '.join(TIERS)}")
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(accounts)
                .where(accounts.c.user_id == request.user_id)
                .values(tier=request.tier)
            )
            if not done.rowcount:
                raise NotFound(f"no account for user {request.user_id}", reason="ACCOUNT_NOT_FOUND")
        async with self.engine.connect() as conn:
            acct = await handlers.account_of_user(conn, request.user_id)
            held = await handlers.held_amount(conn, str(acct["id"]))
        return await self._account_message(acct, held)

    async def PlaceHold(self, request: pb.PlaceHoldRequest, context: Ctx) -> pb.PlaceHoldResponse:
        require_service()
        (result,) = await self._place_holds([request])
        if isinstance(result, MbtError):
            raise result
        return result

    async def PlaceHolds(
        self, request: pb.PlaceHoldsRequest, context: Ctx
    ) -> pb.PlaceHoldsResponse:
        require_service()
        return await self._holds_reply(request)

    async def PlaceHoldsStream(
        self, request_iterator: AsyncIterator[pb.PlaceHoldsRequest], context: Ctx
    ) -> AsyncIterator[pb.PlaceHoldsResponse]:
        """PlaceHolds on one stream: each request answered in order, as PlaceHolds would."""
        require_service()
        async for request in request_iterator:
            yield await self._holds_reply(request)

    async def _holds_reply(self, request: pb.PlaceHoldsRequest) -> pb.PlaceHoldsResponse:
        if len(request.holds) > MAX_HOLDS_PER_CALL:
            raise InvalidArgument("holds", f"at most {MAX_HOLDS_PER_CALL} in one call")
        out = pb.PlaceHoldsResponse()
        for result in await self._place_holds(list(request.holds)):
            if isinstance(result, MbtError):
                out.results.add().error.CopyFrom(result.to_status())
            else:
                out.results.add().hold.CopyFrom(result)
        return out

    async def _place_holds(
        self, requests: list[pb.PlaceHoldRequest]
    ) -> list[pb.PlaceHoldResponse | MbtError]:
        """Parse each hold (a malformed one is refused alone), then place the rest together."""
        items: list[handlers.HoldRequest] = []
        parsed: list[handlers.HoldRequest | MbtError] = []
        for r in requests:
            try:
                if r.side not in ("buy", "sell"):
                    raise InvalidArgument("side", "must be buy or sell")
                # internal: orders computed these; any finite decimal
                qty = parse_decimal("qty", r.qty, positive=True, strict=False)
                amount = parse_decimal("amount", r.amount, required=False, strict=False) or ZERO
                assert qty is not None
                item = handlers.HoldRequest(
                    r.user_id,
                    r.order_id,
                    r.symbol,
                    r.side,
                    qty,
                    amount,
                    ts_from_wire(r.as_of) if r.HasField("as_of") else None,
                    r.after_event,
                    r.package,
                    r.replaces,
                )
            except MbtError as exc:
                parsed.append(exc)
                continue
            items.append(item)
            parsed.append(item)
        placed = iter(await handlers.place_holds(self.engine, items, self._marks, self.calendar))
        out: list[pb.PlaceHoldResponse | MbtError] = []
        for p in parsed:
            if isinstance(p, MbtError):
                out.append(p)
                continue
            result = next(placed)
            if isinstance(result, MbtError):
                out.append(result)
            else:
                out.append(
                    pb.PlaceHoldResponse(
                        account_id=result.account_id,
                        held_amount=money(result.amount),
                        default_fill_preference=result.fill_preference,
                    )
                )
        return out

    async def ListActiveHolds(
        self, request: pb.ListActiveHoldsRequest, context: Ctx
    ) -> pb.ListActiveHoldsResponse:
        require_service()
        if not request.HasField("created_before"):
            raise InvalidArgument("created_before", "is required")
        size = min(max(request.page_size or 500, 1), 5000)
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(holds.c.order_id, accounts.c.user_id, holds.c.created_at)
                    .join(accounts, accounts.c.id == holds.c.account_id)
                    .where(
                        holds.c.status == "active",
                        holds.c.created_at < ts_from_wire(request.created_before),
                        holds.c.order_id > request.after_order_id,
                    )
                    .order_by(holds.c.order_id)
                    .limit(size)
                )
            ).all()
        return pb.ListActiveHoldsResponse(
            holds=[
                pb.ActiveHold(
                    order_id=r.order_id, user_id=r.user_id, created_at=ts_to_wire(r.created_at)
                )
                for r in rows
            ],
            next_after_order_id=rows[-1].order_id if len(rows) == size else "",
        )

    async def ReleaseHold(
        self, request: pb.ReleaseHoldRequest, context: Ctx
    ) -> pb.ReleaseHoldResponse:
        require_service()
        return pb.ReleaseHoldResponse(
            released=await handlers.release_hold_tx(self.engine, request.order_id)
        )
