"""Pushed trade updates: fill commit -> client receipt latency, and updates/s through one gateway.

Starts the whole system as `mbt up` does, signs up U users, opens S subscribers per user on
the gateway's Alpaca `trade_updates` WebSocket (`/stream`, 100 in all by default), then each
user submits market orders (which fill on the next IBM quote). Every subscriber measures, for
each fill it receives, wall-clock receipt minus `recorded_at` (when orders wrote the fill, in
its transaction): that covers the commit, the outbox relay, JetStream, the orders stream and
the gateway.

    python bench/stream.py [--users 10] [--per-user 10] [--orders 10]

Prints one JSON object: p50/p99 latency (ms), updates delivered per second, counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbt import harness  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * (len(xs) - 1)))], 2) if xs else float("nan")


async def subscriber(
    ws_url: str, token: str, expect: int, latencies: list[float], ready: asyncio.Event
) -> int:
    got = 0
    async with websockets.connect(ws_url, max_size=2**20) as ws:
        auth = {"action": "authenticate", "data": {"oauth_token": token}}
        await ws.send(json.dumps(auth))
        assert json.loads(await ws.recv())["data"]["status"] == "authorized"
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert json.loads(await ws.recv())["stream"] == "listening"
        ready.set()
        while got < expect:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            now = time.time()
            data = msg.get("data", {})
            if msg.get("stream") == "trade_updates" and data.get("event") == "fill":
                sent = datetime.fromisoformat(data["recorded_at"].replace("Z", "+00:00"))
                latencies.append((now - sent.timestamp()) * 1000)
                got += 1
    return got


async def trader(url: str, token: str, orders: int, tag: str) -> None:
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for i in range(orders):
            r = await http.post(
                "/api/mbt/orders",
                json={
                    "symbol": "IBM",
                    "side": "buy",
                    "qty": "1",
                    "order_type": "market",
                    "client_order_id": f"{tag}-{i}",
                },
            )
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.05)


async def bench(url: str, users: int, per_user: int, orders: int) -> dict[str, Any]:
    tokens = [harness.signup_http(url, f"bench-stream-{u}@example.com") for u in range(users)]
    ws_url = url.replace("http", "ws") + "/stream"
    latencies: list[float] = []
    readies = [asyncio.Event() for _ in range(users * per_user)]
    subs = [
        asyncio.create_task(
            subscriber(ws_url, tokens[i // per_user], orders, latencies, readies[i])
        )
        for i in range(users * per_user)
    ]
    await asyncio.wait_for(asyncio.gather(*[r.wait() for r in readies]), 120)
    t0 = time.perf_counter()
    await asyncio.gather(*[trader(url, t, orders, f"u{k}") for k, t in enumerate(tokens)])
    delivered = sum(await asyncio.gather(*subs))
    wall = time.perf_counter() - t0
    return {
        "subscribers": users * per_user,
        "fills_delivered": delivered,
        "fill_latency_p50_ms": _pct(latencies, 0.5),
        "fill_latency_p99_ms": _pct(latencies, 0.99),
        "fill_latency_max_ms": _pct(latencies, 1.0),
        "updates_per_s": round(2 * delivered / wall, 1),  # a "new" and a "fill" per order
        "wall_s": round(wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--per-user", type=int, default=10)
    ap.add_argument("--orders", type=int, default=10)
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mbt-bench-stream-"))
    tmp.chmod(0o755)
    generous = {"MBT_TIER_RATE_LIMITS": "free=1000000,pro=1000000,pro_plus=1000000,ip=1000000"}
    try:
        with harness.running_system(tmp / "data", "--speed", "1", env=generous) as system:
            result = asyncio.run(bench(system.url, ns.users, ns.per_user, ns.orders))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
