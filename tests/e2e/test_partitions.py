"""Two orders instances (`mbt up --orders-instances 2`): users on both partitions trade; a
SIGKILLed instance's users wait for its restart while the other's keep trading; nothing is
lost or doubled; a stale owner's write is refused by the fence."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import psutil
import pytest

from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from services.orders.partitions import DEFAULT_PARTITIONS, partition_of
from tests.e2e.conftest import RunningSystem, running_system
from tests.e2e.helpers import RESTING_BUY, run_admin, signup_http, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two() -> Iterator[RunningSystem]:
    with running_system("--speed", "1", "--orders-instances", "2") as s:
        yield s


def user_of(token: str) -> str:
    payload = token.split(".")[1]
    sub: str = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    return sub


def instance_of(user_id: str) -> int:
    return partition_of(user_id, DEFAULT_PARTITIONS) % 2


def orders_pids(system: RunningSystem) -> dict[int, int]:
    """Orders instance -> pid, from the launcher's children."""
    out = {}
    for child in psutil.Process(system.process.pid).children(recursive=True):
        try:
            cmd = child.cmdline()
            if cmd[-2:] == ["-m", "services.orders"]:
                out[int(child.environ().get("MBT_ORDERS_INSTANCE", "0"))] = child.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def submit(stub: Any, token: str, coid: str) -> opb.Order:
    req = opb.SubmitOrderRequest(
        symbol="IBM",
        side="buy",
        qty="1",
        order_type="limit",
        limit_price="1.00",
        time_in_force="gtc",
        client_order_id=coid,
    )
    order: opb.Order = stub.SubmitOrder(
        req, metadata=(("authorization", f"Bearer {token}"),), timeout=30
    )
    return order


def listed(stub: Any, token: str) -> list[opb.Order]:
    md = (("authorization", f"Bearer {token}"),)
    return list(stub.ListOrders(opb.ListOrdersRequest(status="all"), metadata=md).orders)


def test_two_instances_trade_survive_a_kill_and_fence_a_stale_owner(two: RunningSystem) -> None:
    users: dict[int, list[str]] = {0: [], 1: []}
    n = 0
    while min(len(v) for v in users.values()) < 2:
        token = signup_http(two.url, f"part-{n}@example.com")[0]
        users[instance_of(user_of(token))].append(token)
        n += 1
    tokens = users[0][:2] + users[1][:2]
    accepted: dict[str, set[str]] = {t: set() for t in tokens}
    # every user through instance 0's port: instance 1's users are forwarded to their owner
    with grpc.insecure_channel(two.grpc_addr("orders")) as ch:
        stub = ogrpc.OrdersServiceStub(ch)
        for t in tokens:
            for i in range(3):
                o = submit(stub, t, f"before-{i}")
                assert o.status == "accepted", o
                accepted[t].add(o.id)
            assert submit(stub, t, "before-0").id in accepted[t]  # idempotent across instances

        # SIGKILL instance 1: instance 0's users keep trading meanwhile
        pids = orders_pids(two)
        assert set(pids) == {0, 1}, pids
        os.kill(pids[1], signal.SIGKILL)
        t0 = time.monotonic()
        for t in users[0][:2]:
            o = submit(stub, t, "during")
            assert o.status == "accepted"
            accepted[t].add(o.id)
        assert time.monotonic() - t0 < 10  # no pause for the other partition's users
        # instance 1 comes back (the launcher restarts it) and its users trade again
        wait_for(lambda: 1 in orders_pids(two) and orders_pids(two)[1] != pids[1], timeout=60)

        def after(t: str) -> opb.Order | None:
            try:
                return submit(stub, t, "after")
            except grpc.RpcError:
                return None

        for t in users[1][:2]:
            o = wait_for(lambda t=t: after(t), timeout=60, what="instance 1 back")
            assert o.status == "accepted"
            accepted[t].add(o.id)
        # nothing lost, nothing doubled: each user's orders are exactly the accepted ones
        for t in tokens:
            assert {o.id for o in listed(stub, t)} == accepted[t]

        # a stale owner: another process claims instance 1's partitions (as a restarted or
        # re-sharded owner would); instance 1's next write is refused, it stops and comes back
        import psycopg

        dsn = f"postgresql://postgres:@/postgres?host={two.data_dir / 'postgres'}"
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(
                "UPDATE orders.partition_owners SET epoch = epoch + 1, owner = %s "
                "WHERE partition %% 2 = 1",
                (uuid.uuid4().hex,),
            )
        victim = users[1][0]
        before = {o.id for o in listed(stub, victim)}
        with pytest.raises(grpc.RpcError) as refused:
            submit(stub, victim, "stale-write")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert {o.id for o in listed(stub, victim)} == before  # the stale write did not land

        def reclaimed() -> opb.Order | None:
            try:
                return submit(stub, victim, "after-reclaim")
            except grpc.RpcError:
                return None

        o = wait_for(reclaimed, timeout=60, what="instance 1 to re-claim its partitions")
        assert o.status == "accepted"
        assert {x.id for x in listed(stub, victim)} == before | {o.id}
    log = (two.data_dir / "logs" / "orders-1.log").read_text()
    assert "fenced out" in log


def _admin(system: RunningSystem, *args: str) -> Any:
    return json.loads(run_admin(system.data_dir, *args, "--json", operator="sre-pat").stdout)


def _refusal(stub: Any, token: str) -> str | None:
    """The reason a submit is refused with, or None if it was accepted."""
    try:
        submit(stub, token, f"probe-{uuid.uuid4()}")
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    return None


def test_kill_switches_flip_at_run_time_on_every_instance(two: RunningSystem) -> None:
    import httpx

    token = signup_http(two.url, "kill-switch@example.com")[0]
    h = {"authorization": f"Bearer {token}"}
    resting = [
        httpx.post(
            f"{two.url}/api/mbt/orders",
            headers=h,
            json=RESTING_BUY,
        ).json()["data"]["id"]
        for _ in range(2)
    ]
    addrs = json.loads((two.data_dir / "endpoints.json").read_text())["orders_instances"]
    channels = [grpc.insecure_channel(a) for a in addrs]
    stubs = [ogrpc.OrdersServiceStub(c) for c in channels]
    try:
        assert all(_refusal(s, token) is None for s in stubs)

        t0 = time.monotonic()
        _admin(two, "kill", "new-orders", "on", "--reason", "e2e: incident drill")
        seen = []
        for s in stubs:  # every instance refuses, within a second of the flip
            wait_for(lambda s=s: _refusal(s, token), timeout=5, what="new orders refused")
            seen.append(time.monotonic() - t0)
        assert max(seen) <= 1.0, seen
        why = _refusal(stubs[0], token) or ""
        assert why.startswith("UNAVAILABLE") and "new orders are disabled" in why, why
        r = httpx.delete(f"{two.url}/api/mbt/orders/{resting[0]}", headers=h)
        assert r.status_code == 200 and r.json()["data"]["status"] == "canceled"  # cancels work
        replay = httpx.post(
            f"{two.url}/api/mbt/replays",
            headers=h,
            json={
                "start_time": "2013-10-07T15:00:00Z",
                "end_time": "2013-10-07T15:10:00Z",
                "orders": [{"symbol": "IBM", "side": "buy", "qty": "1"}],
            },
        )
        assert replay.status_code == 503, replay.text  # replays are new orders too

        _admin(two, "kill", "trading", "on", "--reason", "e2e: read-only")
        wait_for(
            lambda: (
                httpx.delete(f"{two.url}/api/mbt/orders/{resting[1]}", headers=h).status_code == 503
            ),
            timeout=5,
            what="cancels refused in read-only mode",
        )
        flags = {f["key"]: f for f in _admin(two, "flags")["flags"]}
        assert (
            flags["kill.trading"]["value"] == "1" and flags["kill.trading"]["source"] == "runtime"
        )
        assert flags["kill.new-orders"]["set_by"].endswith("sre-pat")

        _admin(two, "kill", "trading", "off", "--reason", "e2e: over")
        _admin(two, "kill", "new-orders", "default", "--reason", "e2e: back to the environment")
        t1 = time.monotonic()
        for s in stubs:
            wait_for(lambda s=s: _refusal(s, token) is None, timeout=5, what="submits accepted")
        assert time.monotonic() - t1 <= 2.0
        r = httpx.delete(f"{two.url}/api/mbt/orders/{resting[1]}", headers=h)
        assert r.status_code == 200 and r.json()["data"]["status"] == "canceled"

        # FLAG_MBT_PAPER_TRADING for one user: off refuses that user only; shadow keeps MBT writing
        other = signup_http(two.url, "still-on@example.com")[0]
        _admin(
            two,
            "flag",
            "set",
            "FLAG_MBT_PAPER_TRADING",
            "off",
            "--user",
            "kill-switch@example.com",
            "--reason",
            "e2e: not migrated",
        )
        wait_for(lambda: "paper trading" in (_refusal(stubs[0], token) or ""), timeout=5)
        assert _refusal(stubs[0], other) is None and _refusal(stubs[1], other) is None
        _admin(
            two,
            "flag",
            "set",
            "FLAG_MBT_PAPER_TRADING",
            "shadow",
            "--user",
            "kill-switch@example.com",
            "--reason",
            "e2e: shadow",
        )
        wait_for(lambda: _refusal(stubs[1], token) is None, timeout=5, what="shadow writes")
    finally:
        for c in channels:
            c.close()


def test_commands_through_the_gateway_go_straight_to_the_owner(two: RunningSystem) -> None:
    """The gateway learns each caller's owner from a command's reply: the caller's later
    commands (`/api/mbt` and `/v2` alike) reach only the owner, none the other instance."""
    import httpx

    by_instance: dict[int, str] = {}
    n = 0
    while len(by_instance) < 2:
        token = signup_http(two.url, f"route-{n}@example.com")[0]
        by_instance.setdefault(instance_of(user_of(token)), token)
        n += 1

    def submit_http(token: str, alpaca: bool) -> None:
        h = {"authorization": f"Bearer {token}"}
        order = {"symbol": "IBM", "side": "buy", "qty": "1", "limit_price": "1.00"}
        order["time_in_force"] = "gtc"
        if alpaca:
            r = httpx.post(f"{two.url}/v2/orders", headers=h, json={**order, "type": "limit"})
            assert r.status_code == 200 and r.json()["status"] == "new", r.text
        else:
            body = {**order, "order_type": "limit"}
            r = httpx.post(f"{two.url}/api/mbt/orders", headers=h, json=body)
            assert r.status_code == 200 and r.json()["data"]["status"] == "accepted", r.text

    def submits_logged() -> dict[int, int]:
        logs = {k: two.data_dir / "logs" / ("orders-1.log" if k else "orders.log") for k in (0, 1)}
        return {k: p.read_text().count("OrdersService/SubmitOrder") for k, p in logs.items()}

    for k, token in sorted(by_instance.items()):
        submit_http(token, alpaca=False)  # may go round robin and be forwarded: names the owner
        before = submits_logged()
        for i in range(6):
            submit_http(token, alpaca=bool(i % 2))
        after = submits_logged()
        assert after[k] - before[k] == 6, (k, before, after)  # every one ran on the owner
        assert after[1 - k] == before[1 - k], (k, before, after)  # none reached the other


def test_a_submit_stream_names_its_owner_and_works_on_either_instance(two: RunningSystem) -> None:
    """A SubmitOrders stream's initial metadata names the owner; opened on the other instance it
    still accepts every order (each forwarded), and the orders are one set either way."""
    addrs = json.loads((two.data_dir / "endpoints.json").read_text())["orders_instances"]
    token = signup_http(two.url, "stream-owner@example.com")[0]
    owner = instance_of(user_of(token))
    md = (("authorization", f"Bearer {token}"),)
    logs = {k: two.data_dir / "logs" / ("orders-1.log" if k else "orders.log") for k in (0, 1)}

    def logged(k: int, rpc: str) -> int:  # the fixture is shared: count from here on
        return logs[k].read_text().count(f'OrdersService/{rpc}"')

    start = {(k, rpc): logged(k, rpc) for k in (0, 1) for rpc in ("SubmitOrder", "SubmitOrders")}

    def orders_on(k: int, tag: str) -> tuple[str | None, list[opb.SubmitOrderResult]]:
        reqs = [
            opb.SubmitOrderRequest(
                symbol="IBM",
                side="buy",
                qty="1",
                order_type="limit",
                limit_price="1.00",
                time_in_force="gtc",
                client_order_id=f"{tag}-{i}",
            )
            for i in range(5)
        ]
        with grpc.insecure_channel(addrs[k]) as ch:
            call = ogrpc.OrdersServiceStub(ch).SubmitOrders(iter(reqs), metadata=md, timeout=30)
            named = dict(call.initial_metadata()).get("x-mbt-orders-owner")
            return (str(named) if named else None), list(call)

    for k, tag in ((owner, "at-owner"), (1 - owner, "elsewhere")):
        named, results = orders_on(k, tag)
        assert named == addrs[owner]
        assert sorted(r.client_order_id for r in results) == [f"{tag}-{i}" for i in range(5)]
        assert {r.order.status for r in results} == {"accepted"}, results
    # the orders live on the owner, whichever instance took the stream
    with grpc.insecure_channel(addrs[1 - owner]) as ch:
        coids = {o.client_order_id for o in listed(ogrpc.OrdersServiceStub(ch), token)}
    assert coids == {f"{t}-{i}" for t in ("at-owner", "elsewhere") for i in range(5)}
    # each instance took one stream (logged when it ended); the other passed its five orders on
    # to the owner as SubmitOrder commands
    assert wait_for(
        lambda: (
            all(logged(k, "SubmitOrders") - start[k, "SubmitOrders"] == 1 for k in (0, 1)) or None
        ),
        what="both streams in the request logs",
    )
    assert logged(owner, "SubmitOrder") - start[owner, "SubmitOrder"] == 5
    assert logged(1 - owner, "SubmitOrder") - start[1 - owner, "SubmitOrder"] == 0
