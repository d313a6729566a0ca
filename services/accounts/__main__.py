"""`python -m services.accounts`: the accounts gRPC service and its trade-event consumer."""

from __future__ import annotations

from raxx.mbt.v1 import accounts_service_pb2, accounts_service_pb2_grpc
from services.accounts import privacy
from services.accounts.adapters.tables import MIGRATIONS
from services.accounts.consumer import TradeEventConsumer
from services.accounts.freshness import LedgerFreshness
from services.accounts.job_runner import AccountJobRunner
from services.accounts.servicer import AccountsServicer
from services.conventions.calendar import MarketCalendar
from services.platform.bus import JOBS_STREAM, LEDGER_SUBJECTS, TRADES_STREAM
from services.platform.clients import ServiceChannel
from services.platform.grpc_server import ServiceHost
from services.platform.privacy import follow_erasures
from services.platform.runtime import Runtime, main

SERVICE = accounts_service_pb2.DESCRIPTOR.services_by_name["AccountsService"].full_name


async def build(rt: Runtime) -> ServiceHost:
    assert rt.engine is not None
    engine, s = rt.engine, rt.settings
    md = ServiceChannel(s.service_addrs["marketdata"], caller="accounts", secret=s.jwt_secret)
    calendar = MarketCalendar()
    orders = ServiceChannel(s.service_addrs["orders"], caller="accounts", secret=s.jwt_secret)
    servicer = AccountsServicer(engine, md, calendar, orders)
    servicer.flags = rt.flags
    consumer = TradeEventConsumer(engine)
    stream = TRADES_STREAM.name or "MBT_TRADES"
    servicer.freshness = LedgerFreshness(engine, rt.bus, stream)

    async def consume() -> None:
        await rt.bus.consume_batches(
            LEDGER_SUBJECTS, "accounts-ledger", consumer.handle_batch, stream=stream
        )

    runner = AccountJobRunner(engine, md, calendar)
    runner.parity = servicer.parity

    async def run_jobs() -> None:
        await rt.bus.ensure_stream(JOBS_STREAM)
        await rt.bus.consume(
            "mbt.jobs.accounts.>",
            "accounts-jobs",
            runner.handle,
            stream=JOBS_STREAM.name or "MBT_JOBS",
            batch=1,
        )

    async def follow() -> None:
        await follow_erasures(
            rt.bus,
            "accounts-erasure",
            lambda user_id: privacy.erase_user(engine, user_id, s.jwt_secret),
        )

    return ServiceHost(
        name="accounts",
        port=s.port_of("accounts"),
        secret=s.jwt_secret,
        registrars=[
            lambda srv: accounts_service_pb2_grpc.add_AccountsServiceServicer_to_server(
                servicer, srv
            )
        ],
        service_names=[SERVICE],
        background=[consume, run_jobs, follow],
        on_shutdown=[md.close, orders.close],
    )


if __name__ == "__main__":
    main("accounts", MIGRATIONS, build)
