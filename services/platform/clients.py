"""Typed stubs for calling another MBT service, with a service token and a deadline."""

from __future__ import annotations

from typing import Any

import grpc

from services.platform.auth import service_token
from services.platform.errors import error_from_rpc
from services.platform.grpc_server import request_id_var

DEFAULT_TIMEOUT_S = 5.0
CHANNEL_OPTIONS = [("grpc.lb_policy_name", "round_robin")]


class ServiceChannel:
    """One channel to a service, and the credentials this service presents on it."""

    def __init__(self, addr: str, *, caller: str, secret: bytes) -> None:
        # round_robin spreads calls over every address a headless Service resolves to
        self.channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
        self._token = service_token(secret, caller)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        md: list[tuple[str, str]] = [("authorization", f"Bearer {self._token}")]
        rid = request_id_var.get()
        if rid:
            md.append(("x-request-id", rid))
        return tuple(md)

    async def call(self, method: Any, request: Any, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        """Invoke a stub method; a downstream error comes back as the typed MbtError."""
        try:
            # wait_for_ready: ride out a restarting peer (reconnect backoff) within the deadline
            return await method(
                request, metadata=self.metadata(), timeout=timeout, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as err:
            raise error_from_rpc(err) from err

    async def close(self) -> None:
        await self.channel.close()
