"""What the parts of a submit cost at least on this machine: the floors under `bench/submit.py`.

Submit crosses two gRPC hops (client -> orders, orders -> accounts) and a few PostgreSQL
statements; this measures, in one run, the CPU each of those costs with nothing of MBT around
it, so the submit figures can be read against what the machine gives:

- a trivial unary gRPC call (the standard health check) to a bare `grpc.aio` server in another
  process: the server's and the client's CPU per call, and its latency;
- one PostgreSQL statement (`SELECT 1`) through psycopg's async connection in autocommit (what
  the commit stage and the relay do) and through a sync connection (the asyncio overhead);
- a one-statement transaction in pipeline mode two ways: psycopg's `transaction()` block, and
  BEGIN/COMMIT as statements of the pipeline (what the hot path did until the eighth session);
- the same statement and a transaction through asyncpg (what `services.platform.hotpath` runs
  now), and a hold-shaped transaction (a locking read, three reads, a write) through both
  drivers: psycopg pipelined (two round trips), asyncpg one statement at a time.

    python bench/floors.py [--calls N]

Prints one JSON object: {"grpc_unary": {...}, "psycopg": {...}, "asyncpg": {...}, "cpus": ...}
(client CPU per call in ms; `*_p50_ms` the latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
import psycopg
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbt.infra import start_postgres  # noqa: E402
from services.platform.hotpath import HotPath, libpq_dsn  # noqa: E402
from services.platform.settings import sqlalchemy_url  # noqa: E402


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def grpc_unary(calls: int) -> dict[str, float]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        proc = psutil.Process(server.pid)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            await ch.channel_ready()
            for _ in range(300):  # warm up
                await stub.Check(health_pb2.HealthCheckRequest())
            s0, c0 = sum(proc.cpu_times()[:2]), time.process_time()
            lat = []
            for _ in range(calls):
                t = time.perf_counter()
                await stub.Check(health_pb2.HealthCheckRequest())
                lat.append(time.perf_counter() - t)
            s1, c1 = sum(proc.cpu_times()[:2]), time.process_time()
    finally:
        server.kill()
        server.wait()
    return {
        "server_cpu_ms_per_call": round(1000 * (s1 - s0) / calls, 3),
        "client_cpu_ms_per_call": round(1000 * (c1 - c0) / calls, 3),
        "p50_ms": round(1000 * statistics.median(lat), 3),
    }


async def _cpu_per_call(f: Callable[[], Awaitable[Any]], calls: int) -> float:
    for _ in range(100):
        await f()
    t0 = time.process_time()
    for _ in range(calls):
        await f()
    return round(1000 * (time.process_time() - t0) / calls, 3)


async def _p50_ms(f: Callable[[], Awaitable[Any]], calls: int) -> float:
    lat = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await f()
        lat.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(lat), 3)


HOLD_TABLE = (
    "CREATE TABLE IF NOT EXISTS public.floors_acct (id serial PRIMARY KEY, u text, v numeric)"
)
LOCK = "SELECT * FROM public.floors_acct WHERE u = ANY($1::text[]) ORDER BY id FOR UPDATE"
READ = "SELECT id, v FROM public.floors_acct WHERE u = ANY($1::text[])"
WRITE = "UPDATE public.floors_acct SET v = v WHERE u = ANY($1::text[])"
USERS = ["u1", "u2", "u3"]


def _psycopg_sql(sql: str) -> str:
    return sql.replace("$1", "%(u)s")


async def psycopg_costs(url: str, calls: int) -> dict[str, float]:
    dsn = libpq_dsn(url)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=0)
    sync = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
    await conn.execute(HOLD_TABLE)
    await conn.execute(
        "INSERT INTO public.floors_acct (u, v) SELECT 'u' || g, g FROM generate_series(1, 100) g"
    )

    async def autocommit() -> None:
        await (await conn.execute("SELECT 1 AS x")).fetchall()

    async def sync_statement() -> None:
        sync.execute("SELECT 1 AS x").fetchall()

    async def transaction_block() -> None:
        async with conn.pipeline(), conn.transaction():
            await (await conn.execute("SELECT 1 AS x")).fetchall()

    async def explicit_begin_commit() -> None:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            await (await conn.execute("SELECT 1 AS x")).fetchall()
            await conn.execute("COMMIT")

    async def hold_shaped() -> None:
        p = {"u": USERS}
        async with conn.pipeline():
            await conn.execute("BEGIN")
            reads = [await conn.execute(_psycopg_sql(LOCK), p)]
            reads += [await conn.execute(_psycopg_sql(READ), p) for _ in range(3)]
            for r in reads:
                await r.fetchall()
            await conn.execute(_psycopg_sql(WRITE), p)
            await conn.execute("COMMIT")

    try:
        return {
            "async_statement_cpu_ms": await _cpu_per_call(autocommit, calls),
            "sync_statement_cpu_ms": await _cpu_per_call(sync_statement, calls),
            "pipelined_transaction_block_cpu_ms": await _cpu_per_call(transaction_block, calls),
            "pipelined_begin_commit_cpu_ms": await _cpu_per_call(explicit_begin_commit, calls),
            "hold_shaped_transaction_cpu_ms": await _cpu_per_call(hold_shaped, calls),
            "hold_shaped_transaction_p50_ms": await _p50_ms(hold_shaped, calls),
        }
    finally:
        await conn.close()
        sync.close()


async def asyncpg_costs(url: str, calls: int) -> dict[str, float]:
    """What `services.platform.hotpath` costs: its statement and its transaction."""
    hot = HotPath(url)
    conn = await asyncpg.connect(libpq_dsn(url))

    async def statement() -> None:
        await hot.fetch("SELECT 1 AS x")

    async def transaction() -> None:
        async with hot.transaction() as tx:
            await tx.fetch("SELECT 1 AS x")

    async def hold_shaped() -> None:
        async with conn.transaction():
            await conn.fetch(LOCK, USERS)
            for _ in range(3):
                await conn.fetch(READ, USERS)
            await conn.execute(WRITE, USERS)

    try:
        return {
            "statement_cpu_ms": await _cpu_per_call(statement, calls),
            "transaction_cpu_ms": await _cpu_per_call(transaction, calls),
            "hold_shaped_transaction_cpu_ms": await _cpu_per_call(hold_shaped, calls),
            "hold_shaped_transaction_p50_ms": await _p50_ms(hold_shaped, calls),
        }
    finally:
        await hot.close()
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the gRPC server's process
    ns = ap.parse_args()
    if ns.serve:
        asyncio.run(_serve(ns.serve))
        return
    result: dict[str, Any] = {"grpc_unary": asyncio.run(grpc_unary(ns.calls))}
    print(json.dumps({"phase": "gRPC unary health call", **result["grpc_unary"]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="mbt-floors-") as tmp:
        pg = start_postgres(Path(tmp))
        try:
            url = sqlalchemy_url(pg.url)
            result["psycopg"] = asyncio.run(psycopg_costs(url, ns.calls))
            result["asyncpg"] = asyncio.run(asyncpg_costs(url, ns.calls))
        finally:
            pg.stop()
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
