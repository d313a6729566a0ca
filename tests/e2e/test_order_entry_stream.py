"""Order entry on one stream (`SubmitOrders`) against `mbt up`: each request is a SubmitOrder -
accepted durably, refused with its reason, idempotent by client_order_id - answered by its own
result on the stream."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest
from google.rpc import error_details_pb2

from mbt.harness import RunningSystem
from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from tests.e2e.helpers import signup_http

pytestmark = pytest.mark.e2e


def buy(coid: str, qty: str = "1", limit: str = "1.00") -> opb.SubmitOrderRequest:
    return opb.SubmitOrderRequest(
        symbol="IBM",
        side="buy",
        qty=qty,
        order_type="limit",
        limit_price=limit,
        time_in_force="gtc",
        client_order_id=coid,
    )


def reason_of(status: object) -> str:
    for d in getattr(status, "details", ()):
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return info.reason
    return ""


def test_orders_on_one_stream_are_each_a_submit(system: RunningSystem) -> None:
    token, _ = signup_http(system.url, "stream-entry@example.com")
    md = (("authorization", f"Bearer {token}"),)
    requests = [
        buy("s-1"),
        buy("s-2", qty="2"),
        buy("s-3", limit="1.50"),
        buy("bad", qty="-1"),  # refused: its own result, the stream goes on
        buy(""),  # no client_order_id: one is assigned
        buy("s-1"),  # a repeat: the original order
    ]
    with grpc.insecure_channel(system.grpc_addr("orders")) as ch:
        stub = ogrpc.OrdersServiceStub(ch)
        results = list(stub.SubmitOrders(iter(requests), metadata=md, timeout=30))
        assert len(results) == len(requests)
        by_coid: dict[str, list[opb.SubmitOrderResult]] = {}
        for r in results:
            by_coid.setdefault(r.client_order_id, []).append(r)
        assigned = [c for c in by_coid if c not in {"s-1", "s-2", "s-3", "bad"}]
        assert len(assigned) == 1 and len(assigned[0]) == 36  # a uuid

        for coid, qty, limit in (("s-1", 1, "1.00"), ("s-2", 2, "1.00"), ("s-3", 1, "1.50")):
            o = by_coid[coid][0].order
            assert by_coid[coid][0].WhichOneof("result") == "order"
            assert o.status == "accepted" and o.client_order_id == coid
            assert Decimal(o.qty) == qty and Decimal(o.limit_price) == Decimal(limit)
            # accepted durably, as a unary submit is: the order is there to read
            got = stub.GetOrder(opb.GetOrderRequest(order_id=o.id), metadata=md)
            assert got.status == "accepted"
        # the repeated client_order_id is the one order, twice
        assert {r.order.id for r in by_coid["s-1"]} == {by_coid["s-1"][0].order.id}
        assert len(by_coid["s-1"]) == 2

        bad = by_coid["bad"][0]
        assert bad.WhichOneof("result") == "error"
        assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "qty" in bad.error.message
        assert by_coid[assigned[0]][0].order.client_order_id == assigned[0]

        listed = stub.ListOrders(opb.ListOrdersRequest(status="all"), metadata=md).orders
        assert sorted(o.client_order_id for o in listed) == sorted(["s-1", "s-2", "s-3", *assigned])


def test_a_stream_without_credentials_is_refused(system: RunningSystem) -> None:
    with grpc.insecure_channel(system.grpc_addr("orders")) as ch:
        stub = ogrpc.OrdersServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.SubmitOrders(iter([buy("x-1")]), timeout=10))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
def insufficient() -> Iterator[opb.SubmitOrderRequest]:
    yield buy("too-big", qty="100000", limit="100.00")  # $10M against $100k of cash


def test_a_refused_hold_names_its_reason(
    system: RunningSystem, insufficient: opb.SubmitOrderRequest
) -> None:
    token, _ = signup_http(system.url, "stream-poor@example.com")
    md = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(system.grpc_addr("orders")) as ch:
        (r,) = list(ogrpc.OrdersServiceStub(ch).SubmitOrders(iter([insufficient]), metadata=md))
    assert r.WhichOneof("result") == "error"
    assert r.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert reason_of(r.error) == "INSUFFICIENT_BUYING_POWER"
