"""The owner table callers keep for orders commands (`services.platform.owner_routes`)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from services.platform.owner_routes import OWNER_HEADER, OwnerRoutes


class FakeChannel:
    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def routes(**kw: Any) -> tuple[OwnerRoutes, list[str]]:
    dialed: list[str] = []

    def dial(addr: str) -> Any:
        dialed.append(addr)
        return FakeChannel(addr)

    return OwnerRoutes(dial, **kw), dialed


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"), ("x-request-id", "r1"))


def named(addr: str) -> tuple[tuple[str, str], ...]:
    return (("x-ratelimit-limit", "200"), (OWNER_HEADER, addr))


def test_a_named_owner_is_used_for_that_caller_only() -> None:
    r, dialed = routes()
    assert r.channel(md("a")) is None  # nothing named yet: the caller goes round robin
    r.after(md("a"), named("orders-1.orders:50052"))
    ch = r.channel(md("a"))
    assert ch is not None and ch.addr == "orders-1.orders:50052"  # type: ignore[attr-defined]
    assert r.channel(md("b")) is None
    assert r.channel((("x-request-id", "r1"),)) is None  # no credential, no route
    r.after(md("b"), named("orders-1.orders:50052"))
    assert dialed == ["orders-1.orders:50052"]  # one channel per owner, shared


def test_api_key_callers_are_known_by_their_key_id() -> None:
    r, _ = routes()
    key = (("apca-api-key-id", "PK123"), ("apca-api-secret-key", "s1"))
    r.after(key, named("10.0.0.2:50052"))
    other_secret = (("apca-api-key-id", "PK123"), ("apca-api-secret-key", "s2"))
    assert r.channel(other_secret) is not None  # the route, not the check: the owner verifies
    assert r.channel((("apca-api-key-id", "PK999"),)) is None


def test_an_owner_that_moved_or_cannot_be_reached() -> None:
    r, _ = routes()
    r.after(md("a"), named("127.0.0.1:1"))
    r.after(md("a"), named("127.0.0.1:2"))  # a reply from the new owner names it
    assert r.channel(md("a")).addr == "127.0.0.1:2"  # type: ignore[union-attr]
    r.after(md("a"), named("127.0.0.1:2"), grpc.StatusCode.FAILED_PRECONDITION)
    assert r.channel(md("a")) is not None  # a refusal by the owner keeps the route
    r.after(md("a"), (), grpc.StatusCode.UNAVAILABLE)
    assert r.channel(md("a")) is None  # unreachable: round robin again
    r.after(md("a"), named("127.0.0.1:2"))
    r.after(md("a"), named("127.0.0.1:2"), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert r.channel(md("a")) is None


def test_only_addresses_are_dialed() -> None:
    r, dialed = routes()
    for bad in ("", "no-port", "a b:1", "host:port", "x" * 300 + ":1", "unix:/tmp/s", "h:1/x"):
        r.after(md("a"), named(bad))
    assert dialed == [] and r.channel(md("a")) is None
    r.after(md("a"), named("[::1]:50052"))
    assert dialed == ["[::1]:50052"]


def test_the_table_is_bounded() -> None:
    r, dialed = routes(max_callers=3, max_owners=2)
    for i in range(5):
        r.after(md(f"t{i}"), named("127.0.0.1:1"))
    kept = [r.channel(md(f"t{i}")) is not None for i in range(5)]
    assert kept == [False, False, True, True, True]
    r.channel(md("t2"))  # used: kept over t3 when the next caller comes
    r.after(md("t5"), named("127.0.0.1:1"))
    assert r.channel(md("t2")) is not None and r.channel(md("t3")) is None
    r.after(md("x"), named("127.0.0.1:2"))
    r.after(md("y"), named("127.0.0.1:3"))  # a third owner: not dialed, y goes round robin
    assert dialed == ["127.0.0.1:1", "127.0.0.1:2"] and r.channel(md("y")) is None


def test_credentials_are_kept_as_digests_and_channels_closed() -> None:
    r, _ = routes()
    r.after(md("secret-token-value"), named("127.0.0.1:1"))
    kept = repr(vars(r))
    assert "secret-token-value" not in kept
    ch = r.channel(md("secret-token-value"))
    asyncio.run(r.close())
    assert ch.closed and r.channel(md("secret-token-value")) is None  # type: ignore[union-attr]
