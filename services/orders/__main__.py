"""`python -m services.orders`: orders, the matching engine, fills and the outbox relay."""

from __future__ import annotations

import os

from raxx.mbt.v1 import orders_service_pb2, orders_service_pb2_grpc
from services.conventions.calendar import MarketCalendar
from services.orders.adapters.tables import MIGRATIONS, outbox
from services.orders.app import OrdersApp
from services.orders.domain.engine import EngineConfig, MatchingEngine
from services.orders.feed import run_market_feed
from services.orders.partitions import Ownership
from services.orders.recovery import reconcile_holds_forever
from services.orders.servicer import OrdersServicer
from services.orders.shadow import ShadowRelay
from services.platform.bus import TRADES_STREAM
from services.platform.clients import ServiceChannel
from services.platform.grpc_server import ServiceHost
from services.platform.outbox import Outbox
from services.platform.privacy import follow_erasures
from services.platform.runtime import Runtime, main

SERVICE = orders_service_pb2.DESCRIPTOR.services_by_name["OrdersService"].full_name


async def build(rt: Runtime) -> ServiceHost:
    assert rt.engine is not None
    s = rt.settings
    await rt.bus.ensure_stream(TRADES_STREAM)
    accounts = ServiceChannel(s.service_addrs["accounts"], caller="orders", secret=s.jwt_secret)
    marketdata = ServiceChannel(s.service_addrs["marketdata"], caller="orders", secret=s.jwt_secret)
    box = Outbox(outbox)
    # this instance's partitions, claimed before anything is served (earlier owners are fenced)
    ownership = Ownership.from_env()
    await ownership.claim(rt.engine)
    box.partitions = ownership.mine
    box.relay_unpartitioned = ownership.instance == 0
    calendar = MarketCalendar()
    # optional, off by default: cap fills at the displayed size (partial fills), and require a
    # strict cross for resting limits (queue-pessimistic)
    config = EngineConfig(
        cap_at_displayed_size=os.environ.get("MBT_CAP_AT_DISPLAYED_SIZE", "") == "1",
        queue_pessimistic=os.environ.get("MBT_QUEUE_PESSIMISTIC", "") == "1",
    )
    app = OrdersApp(
        rt.engine,
        box,
        MatchingEngine(calendar, config),
        accounts,
        marketdata,
        s,
        ownership,
        rt.flags,
    )
    servicer = OrdersServicer(app, calendar, rt.bus)
    servicer.limiter = rt.limiter
    shadow = ShadowRelay(rt.engine, rt.flags, ownership.owns)

    async def relay() -> None:
        assert rt.engine is not None
        await box.relay_forever(rt.engine, rt.bus)

    async def market() -> None:
        await run_market_feed(app, rt.bus)

    async def reconcile() -> None:
        await reconcile_holds_forever(app)

    async def close() -> None:
        await app.holds.close()
        await accounts.close()
        await marketdata.close()

    async def follow() -> None:
        async def erase(user_id: str) -> object:
            # every instance hears every erasure; the owner of the user's partition acts
            return await app.erase_user(user_id, rt.bus) if ownership.owns(user_id) else 0

        durable = (
            "orders-erasure" if ownership.instances == 1 else f"orders-erasure-{ownership.instance}"
        )
        await follow_erasures(rt.bus, durable, erase)

    return ServiceHost(
        name="orders",
        port=s.port_of("orders"),
        secret=s.jwt_secret,
        registrars=[
            lambda srv: orders_service_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, srv)
        ],
        service_names=[SERVICE],
        background=[relay, market, follow, app.run_accepts, shadow.run_forever, reconcile],
        on_shutdown=[close],
    )


if __name__ == "__main__":
    main("orders", MIGRATIONS, build)
