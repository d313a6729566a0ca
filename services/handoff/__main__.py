"""`python -m services.handoff`: Pro+ live-broker handoff."""

from __future__ import annotations

from raxx.mbt.v1 import handoff_service_pb2, handoff_service_pb2_grpc
from services.handoff.servicer import HandoffServicer
from services.platform.grpc_server import ServiceHost
from services.platform.runtime import Runtime, main

SERVICE = handoff_service_pb2.DESCRIPTOR.services_by_name["HandoffService"].full_name


async def build(rt: Runtime) -> ServiceHost:
    servicer = HandoffServicer()
    return ServiceHost(
        name="handoff",
        port=rt.settings.port_of("handoff"),
        secret=rt.settings.jwt_secret,
        registrars=[
            lambda srv: handoff_service_pb2_grpc.add_HandoffServiceServicer_to_server(servicer, srv)
        ],
        service_names=[SERVICE],
    )


if __name__ == "__main__":
    main("handoff", None, build)
