"""`python -m services.sessions`: passkeys (WebAuthn only) and sessions."""

from __future__ import annotations

from raxx.mbt.v1 import sessions_service_pb2, sessions_service_pb2_grpc
from services.platform.bus import SESSIONS_STREAM
from services.platform.clients import ServiceChannel
from services.platform.grpc_server import ServiceHost
from services.platform.runtime import Runtime, main
from services.sessions.adapters.tables import MIGRATIONS
from services.sessions.handlers import SessionsConfig, SessionsHandlers
from services.sessions.servicer import PUBLIC_METHODS, SessionsServicer

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
    servicer = SessionsServicer(handlers, accounts, rt.bus)
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
        on_shutdown=[accounts.close],
    )


if __name__ == "__main__":
    main("sessions", MIGRATIONS, build)
