"""A unary method's calls on one long-lived stream (`services.platform.clients.CallStream`),
against a real grpc.aio server speaking AccountsService: requests answered in order on one
stream, a failed or silent stream replaced by the unary call for that request, an older peer
without the stream method called unary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from raxx.mbt.v1 import accounts_service_pb2 as pb
from raxx.mbt.v1 import accounts_service_pb2_grpc as pb_grpc
from services.platform.clients import UNARY_AFTER_UNIMPLEMENTED_S, CallStream, ServiceChannel

SECRET = b"s" * 32


def answer(request: pb.PlaceHoldsRequest, via: str) -> pb.PlaceHoldsResponse:
    out = pb.PlaceHoldsResponse()
    for h in request.holds:  # each hold answered with what names it, and how it came
        out.results.add().hold.account_id = f"{via}:{h.order_id}"
    return out


class Accounts(pb_grpc.AccountsServiceServicer):
    def __init__(self) -> None:
        self.opens = 0
        self.messages = 0
        self.unary = 0
        self.fail_at: set[int] = set()  # message numbers (from 1) that end the stream
        self.stall_at: set[int] = set()  # message numbers left unanswered
        self.end_after: set[int] = set()  # message numbers after whose answer the stream ends
        self.abort_after: set[int] = set()  # ... ends with an error
        self.clean_ends = 0
        self.asked: list[str] = []

    async def PlaceHolds(self, request: pb.PlaceHoldsRequest, context: Any) -> Any:
        self.unary += 1
        return answer(request, "unary")

    async def PlaceHoldsStream(
        self, request_iterator: AsyncIterator[pb.PlaceHoldsRequest], context: Any
    ) -> AsyncIterator[pb.PlaceHoldsResponse]:
        self.opens += 1
        async for request in request_iterator:
            self.messages += 1
            if self.messages in self.fail_at:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            if self.messages in self.stall_at:
                await asyncio.sleep(30)
            yield answer(request, "stream")
            if self.messages in self.end_after:
                return
            if self.messages in self.abort_after:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
        self.clean_ends += 1


class Asked(grpc.aio.ServerInterceptor):
    """Every method a client asked for, served or not."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        self.methods.append(details.method.rsplit("/", 1)[-1])
        return await continuation(details)


def holds(*orders: str) -> pb.PlaceHoldsRequest:
    r = pb.PlaceHoldsRequest()
    for o in orders:
        r.holds.add(order_id=o, user_id="u1", symbol="IBM", side="buy", qty="1", amount="1")
    return r


def via(reply: pb.PlaceHoldsResponse) -> list[str]:
    return [r.hold.account_id for r in reply.results]


def run(
    body: Callable[[CallStream, Accounts], Awaitable[None]],
    *,
    old_peer: bool = False,
    clock: Callable[[], float] | None = None,
) -> Accounts:
    servicer = Accounts()
    asked = Asked()

    async def main() -> None:
        server = grpc.aio.server(interceptors=[asked])
        if old_peer:  # a version of accounts from before the stream method
            handler = grpc.method_handlers_generic_handler(
                "raxx.mbt.v1.AccountsService",
                {
                    "PlaceHolds": grpc.unary_unary_rpc_method_handler(
                        servicer.PlaceHolds,
                        request_deserializer=pb.PlaceHoldsRequest.FromString,
                        response_serializer=pb.PlaceHoldsResponse.SerializeToString,
                    )
                },
            )
            server.add_generic_rpc_handlers((handler,))
        else:
            pb_grpc.add_AccountsServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = ServiceChannel(f"127.0.0.1:{port}", caller="orders", secret=SECRET)
        stub = pb_grpc.AccountsServiceStub(channel.channel)
        calls = CallStream(
            channel,
            stub.PlaceHoldsStream,
            stub.PlaceHolds,
            "PlaceHolds",
            **({"clock": clock} if clock else {}),
        )
        try:
            await body(calls, servicer)
        finally:
            await calls.close()
            await channel.close()
            await server.stop(None)

    asyncio.run(main())
    servicer.asked = asked.methods
    return servicer


def test_requests_are_answered_in_order_on_one_stream() -> None:
    async def body(calls: CallStream, s: Accounts) -> None:
        for i in range(20):
            reply = await calls.call(holds(f"o{i}a", f"o{i}b"))
            assert via(reply) == [f"stream:o{i}a", f"stream:o{i}b"]

    s = run(body)
    assert (s.opens, s.messages, s.unary) == (1, 20, 0)
    assert s.clean_ends == 1  # close() ended the requests; the peer saw no cancellation


def test_a_failed_stream_answers_that_request_unary_and_the_next_opens_a_new_one() -> None:
    async def body(calls: CallStream, s: Accounts) -> None:
        s.fail_at = {3}
        got = [via(await calls.call(holds(f"o{i}"))) for i in range(6)]
        assert got == [
            ["stream:o0"],
            ["stream:o1"],
            ["unary:o2"],  # the stream ended on it: asked again as the call
            ["stream:o3"],
            ["stream:o4"],
            ["stream:o5"],
        ]

    s = run(body)
    assert (s.opens, s.unary) == (2, 1)


def test_a_stream_that_ended_between_requests_is_replaced_before_the_next() -> None:
    async def body(calls: CallStream, s: Accounts) -> None:
        s.end_after, s.abort_after = {2}, {4}
        for i in range(6):
            assert via(await calls.call(holds(f"o{i}"))) == [f"stream:o{i}"]
            await asyncio.sleep(0.05)  # the end reaches the client while it is idle

    s = run(body)
    # ended cleanly after the 2nd, with an error after the 4th: three streams, no unary call
    assert (s.opens, s.messages, s.unary) == (3, 6, 0)


def test_a_silent_stream_gives_way_to_the_call_after_the_deadline() -> None:
    async def body(calls: CallStream, s: Accounts) -> None:
        s.stall_at = {2}
        assert via(await calls.call(holds("o0"), timeout=2)) == ["stream:o0"]
        t0 = asyncio.get_running_loop().time()
        assert via(await calls.call(holds("o1"), timeout=0.5)) == ["unary:o1"]
        assert asyncio.get_running_loop().time() - t0 < 2  # one deadline, not the stall
        assert via(await calls.call(holds("o2"), timeout=2)) == ["stream:o2"]

    s = run(body)
    assert (s.opens, s.unary) == (2, 1)


def test_a_peer_without_the_stream_method_is_called_unary_from_then_on() -> None:
    async def body(calls: CallStream, s: Accounts) -> None:
        for i in range(5):
            assert via(await calls.call(holds(f"o{i}"))) == [f"unary:o{i}"]

    s = run(body, old_peer=True)
    assert (s.opens, s.unary) == (0, 5)
    # the stream was asked for once, refused, and not again
    assert s.asked == ["PlaceHoldsStream"] + ["PlaceHolds"] * 5


def test_the_stream_is_tried_again_after_a_while_when_the_peer_had_none() -> None:
    now = [0.0]

    async def body(calls: CallStream, s: Accounts) -> None:
        assert via(await calls.call(holds("o0"))) == ["unary:o0"]
        now[0] += UNARY_AFTER_UNIMPLEMENTED_S / 2
        assert via(await calls.call(holds("o1"))) == ["unary:o1"]
        now[0] += UNARY_AFTER_UNIMPLEMENTED_S  # e.g. the rolling upgrade has ended meanwhile
        assert via(await calls.call(holds("o2"))) == ["unary:o2"]

    s = run(body, old_peer=True, clock=lambda: now[0])
    assert s.asked == [
        "PlaceHoldsStream",
        "PlaceHolds",
        "PlaceHolds",
        "PlaceHoldsStream",
        "PlaceHolds",
    ]
