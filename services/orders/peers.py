"""Forwarding a command to the orders instance that owns the caller's partition.

Any instance answers reads (they come from the database and JetStream), but a command
(submit, cancel, replace, cancel-all) must run where the caller's orders are in the engine: an
instance that does not own the partition passes the call on, with the caller's credentials, and
marks it a follow-up (vouched with the platform's gateway key) so the rate limit counts it once.
Every command's reply names the owner, so callers can skip the hop next time.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from raxx.mbt.v1 import orders_service_pb2_grpc as pb_grpc
from services.orders.partitions import Ownership
from services.platform.auth import gateway_vouch_key
from services.platform.clients import CHANNEL_OPTIONS
from services.platform.errors import Unavailable, error_from_rpc
from services.platform.grpc_server import FOLLOW_UP_HEADER, GATEWAY_VOUCH_HEADER
from services.platform.owner_routes import OWNER_HEADER

__all__ = ["Peers"]

FORWARDED = ("authorization", "apca-api-key-id", "apca-api-secret-key", "x-request-id")
TIMEOUT_S = 10.0


class Peers:
    def __init__(self, ownership: Ownership, secret: bytes) -> None:
        self._ownership = ownership
        self._vouch = gateway_vouch_key(secret)
        self._stubs: dict[str, pb_grpc.OrdersServiceStub] = {}

    def _stub(self, addr: str) -> pb_grpc.OrdersServiceStub:
        if addr not in self._stubs:
            channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
            self._stubs[addr] = pb_grpc.OrdersServiceStub(channel)
        return self._stubs[addr]

    def owns(self, context: Any, user_id: str) -> bool:
        """Whether this instance owns the caller's partition; with several instances the reply
        names the owner (`OWNER_HEADER`), so a caller can send its next commands straight there
        (`services.platform.owner_routes`)."""
        named = self.owner_metadata(user_id)
        if named:
            context.set_trailing_metadata(tuple(context.trailing_metadata() or ()) + named)
        return self._ownership.owns(user_id)

    def owner_metadata(self, user_id: str) -> tuple[tuple[str, str], ...]:
        """Metadata naming the caller's owner, with several instances (else none): a command's
        trailing metadata, a SubmitOrders stream's initial metadata."""
        if self._ownership.instances > 1:
            return ((OWNER_HEADER, self._ownership.peer_of(user_id)),)
        return ()

    async def forward(self, method: str, request: Message, context: Any, user_id: str) -> Message:
        addr = self._ownership.peer_of(user_id)
        incoming = {k: v for k, v in (context.invocation_metadata() or ()) if k in FORWARDED}
        md = (
            *incoming.items(),
            (FOLLOW_UP_HEADER, "1"),
            (GATEWAY_VOUCH_HEADER, self._vouch),
        )
        call = getattr(self._stub(addr), method)
        try:
            reply: Message = await call(
                request, metadata=md, timeout=TIMEOUT_S, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as err:
            typed = error_from_rpc(err)
            # the owner's own refusal (a kill switch, stale data) carries its reason through;
            # a bare transport failure means the owner is not reachable
            if typed.reason in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise Unavailable(
                    f"the orders instance for this account ({addr}) is not reachable; retry",
                    reason="PARTITION_UNAVAILABLE",
                ) from None
            raise typed from None
        return reply
