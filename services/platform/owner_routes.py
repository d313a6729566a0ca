"""Sending an orders command straight to the instance that owns the caller's partition.

With several orders instances, a command (submit, cancel, replace, cancel-all) must run on the
instance that owns the caller's partition; one that reaches another instance is forwarded, an
extra gRPC hop. Every orders instance names the owner's address in a command's trailing
metadata (`x-mbt-orders-owner`, set only once the caller is authenticated). A caller that
remembers it per credential (`OwnerRoutes`) sends that credential's next commands there.

It is only a hint: every instance still forwards what it does not own, so a missing or stale
entry costs a hop, never correctness (the fence decides who may write), and an instance that
no longer owns the partition names the new owner in its reply. An owner that cannot be reached
is forgotten, so the next command goes round robin again. Reads stay round robin: any instance
serves them, and round robin skips an instance that is down.

The table is bounded (least recently used credentials are dropped first) and keeps digests of
the credentials, not the credentials.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

__all__ = ["COMMANDS", "OWNER_HEADER", "OwnerRoutes"]

OWNER_HEADER = "x-mbt-orders-owner"
COMMANDS = frozenset({"SubmitOrder", "CancelOrder", "ReplaceOrder", "CancelAllOrders"})
# the credential headers a caller is known by (a session's bearer token or an API key id)
CALLER_HEADERS = ("authorization", "apca-api-key-id")
# host:port, a DNS name or an IPv4/IPv6 literal; nothing else is dialed
_ADDRESS = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}")

Metadata = Iterable[tuple[str, Any]]


class OwnerRoutes:
    """Per credential, the orders instance that owns its partition, as the instances said."""

    def __init__(
        self,
        dial: Callable[[str], grpc.aio.Channel] = grpc.aio.insecure_channel,
        max_callers: int = 10_000,
        max_owners: int = 64,
    ) -> None:
        self._dial = dial
        self._max_callers = max_callers
        self._max_owners = max_owners
        self._owner_of: OrderedDict[bytes, str] = OrderedDict()
        self._channels: dict[str, grpc.aio.Channel] = {}

    @staticmethod
    def _caller(md: Metadata) -> bytes | None:
        h = None
        for k, v in md:
            if k in CALLER_HEADERS:
                h = h or hashlib.blake2b(digest_size=16)
                h.update(k.encode() + b"\0" + str(v).encode() + b"\0")
        return h.digest() if h is not None else None

    def channel(self, md: Metadata) -> grpc.aio.Channel | None:
        """The owner's channel for this caller's commands, if an instance named it."""
        caller = self._caller(md)
        addr = self._owner_of.get(caller) if caller is not None else None
        if addr is None:
            return None
        self._owner_of.move_to_end(caller)  # type: ignore[arg-type]
        return self._channels[addr]

    def after(
        self, md: Metadata, trailing: Metadata | None, code: grpc.StatusCode | None = None
    ) -> None:
        """After a command: remember the owner its reply (or refusal) named for this caller; an
        owner that could not be reached (UNAVAILABLE, DEADLINE_EXCEEDED) is forgotten."""
        caller = self._caller(md)
        if caller is None:
            return
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            self._owner_of.pop(caller, None)
            return
        addr = next((str(v) for k, v in trailing or () if k == OWNER_HEADER), None)
        if addr is None or not _ADDRESS.fullmatch(addr):
            return
        if addr not in self._channels:
            if len(self._channels) >= self._max_owners:
                return  # more owners than any deployment has: keep going round robin
            self._channels[addr] = self._dial(addr)
        self._owner_of[caller] = addr
        self._owner_of.move_to_end(caller)
        while len(self._owner_of) > self._max_callers:
            self._owner_of.popitem(last=False)

    async def unary(
        self,
        default: grpc.aio.Channel,
        path: str,
        request: Any,
        response_cls: Any,
        md: Sequence[tuple[str, str]],
        timeout: float,
    ) -> tuple[Any, Metadata]:
        """Make a command's call - on the caller's owner if one was named, else on `default` -
        and learn from its outcome: (reply, trailing metadata), or the `AioRpcError`."""
        call = (self.channel(md) or default).unary_unary(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_cls.FromString,
        )(request, metadata=md, timeout=timeout, wait_for_ready=True)
        try:
            reply = await call
        except grpc.aio.AioRpcError as err:
            self.after(md, err.trailing_metadata(), err.code())
            raise
        trailing = await call.trailing_metadata()
        self.after(md, trailing)
        return reply, trailing

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
        self._owner_of.clear()
