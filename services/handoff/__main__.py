"""`python -m services.handoff`: Pro+ live-broker handoff."""

from __future__ import annotations

import os
from pathlib import Path

from raxx.mbt.v1 import handoff_service_pb2, handoff_service_pb2_grpc
from services.handoff.adapters.tables import MIGRATIONS
from services.handoff.alpaca import AlpacaConfig
from services.handoff.app import HandoffApp
from services.handoff.crypto import Keyring
from services.handoff.servicer import HandoffServicer
from services.platform.clients import ServiceChannel
from services.platform.grpc_server import ServiceHost
from services.platform.privacy import follow_erasures
from services.platform.runtime import Runtime, main

SERVICE = handoff_service_pb2.DESCRIPTOR.services_by_name["HandoffService"].full_name


def keyring_from_env() -> Keyring:
    """The KEK file: ``MBT_KEK_FILE`` (a mounted secret), created 0600 for local runs only."""
    path = os.environ.get("MBT_KEK_FILE", "")
    if not path:
        raise SystemExit("handoff needs MBT_KEK_FILE (a key-encryption keyring, never in the repo)")
    if os.environ.get("MBT_KEK_CREATE", "") == "1":
        return Keyring.create(Path(path))
    return Keyring(Path(path))


async def build(rt: Runtime) -> ServiceHost:
    assert rt.engine is not None
    s = rt.settings
    accounts = ServiceChannel(s.service_addrs["accounts"], caller="handoff", secret=s.jwt_secret)
    sessions = ServiceChannel(s.service_addrs["sessions"], caller="handoff", secret=s.jwt_secret)
    app = HandoffApp(
        rt.engine,
        keyring_from_env(),
        AlpacaConfig.from_env(),
        accounts,
        sessions,
        s.jwt_secret,
        cycles_required=int(os.environ.get("MBT_GRADUATION_CYCLES", "3")),
        flags=rt.flags,
    )
    servicer = HandoffServicer(app)

    async def follow() -> None:
        async def erase(user_id: str) -> object:
            await app.erase_user(user_id)
            return None

        await follow_erasures(rt.bus, "handoff-erasure", erase)

    async def close() -> None:
        await app.close()
        await accounts.close()
        await sessions.close()

    return ServiceHost(
        name="handoff",
        port=s.port_of("handoff"),
        secret=s.jwt_secret,
        registrars=[
            lambda srv: handoff_service_pb2_grpc.add_HandoffServiceServicer_to_server(servicer, srv)
        ],
        service_names=[SERVICE],
        background=[app.recover_forever, follow],
        on_shutdown=[close],
    )


if __name__ == "__main__":
    main("handoff", MIGRATIONS, build)
