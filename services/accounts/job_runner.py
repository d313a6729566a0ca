"""Runs the accounts jobs triggered on `mbt.jobs.accounts.<job>` (acked after they finish)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from nats.aio.msg import Msg
from sqlalchemy import distinct, select
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import marketdata_service_pb2 as md_pb
from raxx.mbt.v1 import marketdata_service_pb2_grpc as md_grpc
from services.accounts import jobs
from services.accounts.adapters.tables import positions
from services.conventions.calendar import MarketCalendar
from services.conventions.occ import is_occ_symbol, parse_occ
from services.platform.clients import ServiceChannel
from services.platform.errors import MbtError
from services.platform.wire import ts_to_wire

log = logging.getLogger("mbt.accounts.jobs")


class AccountJobRunner:
    def __init__(
        self, engine: AsyncEngine, marketdata: ServiceChannel, calendar: MarketCalendar
    ) -> None:
        self.engine = engine
        self.md = marketdata
        self.md_stub = md_grpc.MarketDataServiceStub(marketdata.channel)
        self.calendar = calendar
        self.done: list[str] = []
        # the nightly shadow parity report (set by the entrypoint: the servicer's)
        self.parity: Callable[[date], Awaitable[Any]] | None = None

    async def closing_marks(self, as_of: date, only: list[str] | None = None) -> dict[str, Decimal]:
        """Mid of each symbol's last quote before the close of `as_of` (default: held ones)."""
        bounds = self.calendar.session_bounds(as_of)
        if bounds is None:
            return {}
        open_, close = bounds
        async with self.engine.connect() as conn:
            symbols = (
                (
                    await conn.execute(
                        select(distinct(positions.c.symbol)).where(positions.c.qty != 0)
                    )
                )
                .scalars()
                .all()
            )
        marks: dict[str, Decimal] = {}
        for symbol in only if only is not None else symbols:
            req = md_pb.ListQuotesRequest(symbol=symbol, page_size=500)
            req.start_time.CopyFrom(ts_to_wire(close - timedelta(minutes=30)))
            req.end_time.CopyFrom(ts_to_wire(close))
            try:
                page = await self.md.call(self.md_stub.ListQuotes, req)
            except MbtError as exc:
                log.warning("no closing quote for %s: %s", symbol, exc.message)
                continue
            token = page.next_page_token
            last = page.quotes[-1] if page.quotes else None
            while token:
                req.page_token = token
                page = await self.md.call(self.md_stub.ListQuotes, req)
                last = page.quotes[-1] if page.quotes else last
                token = page.next_page_token
            if last is not None:
                bid, ask = Decimal(last.bid), Decimal(last.ask)
                marks[symbol] = (bid + ask) / 2 if bid > 0 else ask
        return marks

    async def held_symbols(self) -> list[str]:
        async with self.engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        select(distinct(positions.c.symbol)).where(positions.c.qty != 0)
                    )
                ).scalars()
            )

    async def corporate_actions(self, as_of: date) -> list[md_pb.CorporateAction]:
        symbols = await self.held_symbols()
        if not symbols:
            return []
        req = md_pb.ListCorporateActionsRequest(
            symbols=symbols, start_date=as_of.isoformat(), end_date=as_of.isoformat()
        )
        resp = await self.md.call(self.md_stub.ListCorporateActions, req)
        return list(resp.actions)

    async def handle(self, msg: Msg) -> None:
        job = msg.subject.rsplit(".", 1)[-1]
        body = json.loads(msg.data or b"{}")
        as_of = date.fromisoformat(body.get("as_of", date.today().isoformat()))
        if job == "mark-to-market":
            marks = await self.closing_marks(as_of)
            n = await jobs.mark_to_market(self.engine, as_of, marks)
            log.info("mark-to-market %s: %d snapshots, %d marks", as_of, n, len(marks))
        elif job == "dividends":  # cash dividends and splits going ex today
            actions = await self.corporate_actions(as_of)
            closes: dict[str, Decimal] = {}
            if any(a.type == "split" for a in actions):
                prev = next(
                    (
                        d
                        for k in range(1, 11)
                        if self.calendar.session_bounds(d := as_of - timedelta(days=k))
                    ),
                    None,
                )
                closes = await self.closing_marks(prev) if prev else {}
            n = await jobs.apply_corporate_actions(self.engine, actions, closes)
            log.info("corporate actions %s: %d events, %d adjustments", as_of, len(actions), n)
        elif job == "option-expiration":
            underlyings = sorted(
                {parse_occ(s).root for s in await self.held_symbols() if is_occ_symbol(s)}
            )
            closes = await self.closing_marks(as_of, underlyings)
            n = await jobs.expire_options(self.engine, as_of, closes)
            log.info("option expiration %s: %d contracts settled", as_of, n)
        elif job == "margin-interest":
            rate = Decimal(os.environ.get("MBT_MARGIN_RATE", "0.0825"))
            n = await jobs.accrue_interest(self.engine, as_of, rate)
            log.info("margin interest %s at %s: %d accounts charged", as_of, rate, n)
        elif job == "retention-purge":
            n = await jobs.purge_retention(self.engine, datetime.fromisoformat(body["now"]))
            log.info("retention purge: %d rows deleted", n)
        elif job == "verify-parity" and self.parity is not None:
            report = await self.parity(as_of)
            log.info(
                "verify-parity %s: %d users, %d diverging; %s",
                as_of,
                report.users_compared,
                report.diverging,
                report.criterion,
            )
        else:
            log.warning("job %s is not implemented yet; trigger acknowledged and ignored", job)
        self.done.append(job)
        await msg.ack()
