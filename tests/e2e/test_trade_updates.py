"""Pushed trade updates over native gRPC: resumable by sequence, no gap, no duplicate."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import grpc
import pytest

from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import signup_http

pytestmark = pytest.mark.e2e

Update = tuple[int, str, str]  # (sequence, event, order id)


async def _collect(
    stub: ogrpc.OrdersServiceStub,
    md: tuple[tuple[str, str], ...],
    after: int | None,
    stop: int,
    listening: asyncio.Event | None = None,
) -> list[opb.TradeUpdate]:
    """Updates after ``after`` until ``stop`` fills have arrived."""
    out: list[opb.TradeUpdate] = []
    req = opb.StreamTradeUpdatesRequest()
    if after is not None:
        req.after_sequence = after
    call = stub.StreamTradeUpdates(req, metadata=md)
    assert ("x-mbt-stream", "listening") in tuple(await call.initial_metadata())
    if listening is not None:
        listening.set()
    async for u in call:
        out.append(u)
        if sum(x.event == "fill" for x in out) >= stop:
            call.cancel()
            break
    return out


def _keys(us: list[opb.TradeUpdate]) -> list[Update]:
    return [(u.sequence, u.event, u.order.id) for u in us]


async def _scenario(system: RunningSystem, token: str) -> None:
    md = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(system.grpc_addr("orders")) as ch:
        stub = ogrpc.OrdersServiceStub(ch)

        async def submit(n: int, tag: str) -> list[str]:
            ids = []
            for i in range(n):
                o = await stub.SubmitOrder(
                    opb.SubmitOrderRequest(
                        symbol="IBM",
                        side="buy",
                        qty="1",
                        order_type="market",
                        client_order_id=f"{tag}-{i}",
                    ),
                    metadata=md,
                )
                ids.append(o.id)
            return ids

        # subscribe, then trade: the first part of the burst is heard live
        listening = asyncio.Event()
        first_task = asyncio.create_task(_collect(stub, md, None, 2, listening))
        await asyncio.wait_for(listening.wait(), 30)  # the server says it is subscribed
        first_ids = await submit(4, "a")
        first = await asyncio.wait_for(first_task, 60)
        # disconnected mid-burst; more orders are placed while nobody listens
        second_ids = await submit(3, "b")
        last = first[-1].sequence
        resumed = await asyncio.wait_for(_collect(stub, md, last, 7 - 2), 60)
        # from the very first update again: the reference history
        everything = await asyncio.wait_for(_collect(stub, md, first[0].sequence - 1, 7), 60)

    got = _keys(first) + _keys(resumed)
    ref = _keys(everything)
    assert got == ref[: len(got)], "resuming lost or repeated an update"
    seqs = [s for s, _, _ in got]
    assert seqs == sorted(set(seqs)), "sequences must strictly increase"
    fills = [(u.order.id, u) for u in everything if u.event == "fill"]
    assert sorted(oid for oid, _ in fills) == sorted(first_ids + second_ids)
    news = [u.order.id for u in everything if u.event == "new"]
    assert news == first_ids + second_ids  # accepted in submit order
    # position_qty is the signed position after each fill: 1, 2, ... 7 shares of IBM
    assert [Decimal(u.position_qty) for _, u in fills] == [Decimal(k) for k in range(1, 8)]
    for _, u in fills:
        assert Decimal(u.price) == Decimal(u.fill.quote.ask) and u.qty == "1"
        assert u.order.status == "filled" and u.execution_id == u.fill.id


def test_resume_from_a_sequence_misses_nothing_and_repeats_nothing(system: RunningSystem) -> None:
    token, _ = signup_http(system.url, "stream-resume@example.com")
    asyncio.run(_scenario(system, token))


def _sse_events(url: str, headers: dict[str, str], want: int) -> list[dict[str, str]]:
    import httpx

    out: list[dict[str, str]] = []
    with httpx.stream("GET", url, headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        ev: dict[str, str] = {}
        for line in r.iter_lines():
            if not line:
                if ev:
                    out.append(ev)
                    ev = {}
                    if len(out) >= want:
                        break
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            ev[k] = v
    return out


def test_browser_stream_resumes_with_last_event_id(system: RunningSystem) -> None:
    import threading
    import time

    import httpx

    token, _ = signup_http(system.url, "sse@example.com")
    cookie = {"cookie": f"mbt_session={token}"}
    url = f"{system.url}/api/mbt/stream/trade-updates"

    def submit() -> None:
        time.sleep(1.5)
        r = httpx.post(
            f"{system.url}/api/mbt/orders",
            headers={**cookie, "content-type": "application/json"},
            json={"symbol": "IBM", "side": "buy", "qty": "2", "order_type": "market"},
        )
        assert r.status_code == 200, r.text

    threading.Thread(target=submit).start()
    live = _sse_events(url, cookie, 2)
    assert [e["event"] for e in live] == ["new", "fill"]
    fill = json.loads(live[1]["data"])
    assert fill["position_qty"] == "2" and fill["order"]["status"] == "filled"
    # a browser reconnecting after the "new" event gets the fill, not the "new" again
    again = _sse_events(url, {**cookie, "last-event-id": live[0]["id"]}, 1)
    assert again[0]["id"] == live[1]["id"] and again[0]["event"] == "fill"
    # no credential: refused before anything streams
    assert httpx.get(url).status_code == 401
