"""`python -m services.sessions`: passkeys (WebAuthn only) and sessions."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from nats.aio.msg import Msg

from raxx.mbt.v1 import sessions_service_pb2, sessions_service_pb2_grpc
from services.platform.bus import JOBS_STREAM, SESSIONS_STREAM
from services.platform.clients import ServiceChannel
from services.platform.credentials import CredentialRegistry
from services.platform.grpc_server import ServiceHost
from services.platform.runtime import Runtime, main
from services.sessions import privacy
from services.sessions.adapters.tables import MIGRATIONS
from services.sessions.api_keys import ApiKeys
from services.sessions.handlers import SessionsConfig, SessionsHandlers
from services.sessions.lifecycle import SessionLifecycle
from services.sessions.servicer import PUBLIC_METHODS, SessionsServicer

log = logging.getLogger("mbt.sessions")
SERVICE = sessions_service_pb2.DESCRIPTOR.services_by_name["SessionsService"].full_name


async def build(rt: Runtime) -> ServiceHost:
    assert rt.engine is not None
    s = rt.settings
    await rt.bus.ensure_stream(SESSIONS_STREAM)
    accounts = ServiceChannel(s.service_addrs["accounts"], caller="sessions", secret=s.jwt_secret)
    handlers = SessionsHandlers(
        rt.engine,
        SessionsConfig(
            rp_id=s.rp_id, rp_name="MBT paper trading", origin=s.origins[0], secret=s.jwt_secret
        ),
    )
    orders = ServiceChannel(s.service_addrs["orders"], caller="sessions", secret=s.jwt_secret)
    # sessions owns the credential registry: open it, then heal it from the tables
    rt.registry.kv = await CredentialRegistry.open_bucket(rt.bus)
    lifecycle = SessionLifecycle(rt.engine, s.jwt_secret, rt.registry)
    keys = ApiKeys(rt.engine, s.jwt_secret, rt.registry)
    projected = await lifecycle.project_all() + await keys.project_all()
    log.info("credential registry: %d sessions and keys projected", projected)
    handoff = ServiceChannel(s.service_addrs["handoff"], caller="sessions", secret=s.jwt_secret)
    servicer = SessionsServicer(
        handlers, accounts, rt.bus, orders, lifecycle, keys, handoff, rt.flags
    )
    engine = rt.engine

    async def on_job(msg: Msg) -> None:
        body = json.loads(msg.data or b"{}")
        now = datetime.fromisoformat(body["now"]) if "now" in body else datetime.now(UTC)
        erased = await privacy.erase_due(engine, rt.bus, s.jwt_secret, now, rt.registry)
        log.info("gdpr erasure: %d users erased", len(erased))
        await msg.ack()

    async def run_jobs() -> None:
        await rt.bus.ensure_stream(JOBS_STREAM)
        await rt.bus.consume(
            "mbt.jobs.sessions.>",
            "sessions-jobs",
            on_job,
            stream=JOBS_STREAM.name or "MBT_JOBS",
            batch=1,
        )

    return ServiceHost(
        name="sessions",
        port=s.port_of("sessions"),
        secret=s.jwt_secret,
        registrars=[
            lambda srv: sessions_service_pb2_grpc.add_SessionsServiceServicer_to_server(
                servicer, srv
            )
        ],
        service_names=[SERVICE],
        public_methods=PUBLIC_METHODS,
        background=[run_jobs],
        on_shutdown=[accounts.close, orders.close, handoff.close],
    )


if __name__ == "__main__":
    main("sessions", MIGRATIONS, build)
