"""What the per-user rate limiter costs: gateway throughput and latency with and without it.

Runs the whole system twice in one invocation, as `mbt up` does: once with the limiter off
(MBT_RATE_LIMITS=0, the reference) and once with it on, its Pro+ limit raised so the load is
never refused (so every request takes the limiter's normal path: a JetStream counter
increment). Each run signs a user up and drives GET /api/mbt/account through the gateway
with C concurrent HTTP clients for a fixed number of requests. Then, against the second run's
NATS, it times the limiter itself: the local-view path (far from the limit) and the
synchronous path (near the limit: wait for the shared total).

    python bench/ratelimit.py [--requests N] [--clients C]

Prints one JSON line per phase and, last, one JSON object with the ratio and the added p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbt import harness  # noqa: E402
from services.platform.bus import Bus  # noqa: E402
from services.platform.ratelimit import RateLimiter  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * (len(xs) - 1)))], 3)


async def drive(url: str, token: str, total: int, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    counter = iter(range(total))
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for _ in range(50):  # warm up connections and caches
            await http.get("/api/mbt/account")

        async def client() -> None:
            for _ in counter:
                t0 = time.perf_counter()
                r = await http.get("/api/mbt/account")
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"unexpected {r.status_code}: {r.text}")

        t0 = time.perf_counter()
        await asyncio.gather(*[client() for _ in range(clients)])
        wall = time.perf_counter() - t0
    return {
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
        "mean_ms": round(statistics.fmean(latencies), 3),
    }


async def limiter_alone(nats_url: str, n: int) -> dict[str, Any]:
    bus = await Bus.connect(nats_url, name="bench-ratelimit")
    try:
        out: dict[str, Any] = {}
        for label, margin in (("local_view", 0.2), ("synchronous", 1.0)):
            lim = RateLimiter(bus, sync_margin=margin)
            key = f"bench_{uuid.uuid4().hex}"
            lat = []
            for _ in range(n):
                t0 = time.perf_counter()
                await lim.hit(key, 10_000_000)
                lat.append((time.perf_counter() - t0) * 1000)
            await lim.close()
            out[label] = {"p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99)}
        return out
    finally:
        await bus.close()


def run(tmp: Path, env: dict[str, str], total: int, clients: int, tag: str) -> dict[str, Any]:
    with harness.running_system(tmp / tag, "--speed", "1", env=env) as system:
        token = harness.signup_http(system.url, f"bench-{tag}@example.com")
        result = asyncio.run(drive(system.url, token, total, clients))
        nats = re.search(r"nats\s+(nats://\S+)", system.log.read_text())
        if nats and tag == "limited":
            result["limiter_alone"] = asyncio.run(limiter_alone(nats.group(1), 2000))
    print(json.dumps({"phase": tag, **result}), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=16)
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mbt-bench-rl-"))
    tmp.chmod(0o755)
    try:
        off = run(tmp, {"MBT_RATE_LIMITS": "0"}, ns.requests, ns.clients, "unlimited")
        on = run(
            tmp,
            {"MBT_TIER_RATE_LIMITS": "free=10000000,pro=10000000,pro_plus=10000000"},
            ns.requests,
            ns.clients,
            "limited",
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "throughput_ratio": round(on["requests_per_s"] / off["requests_per_s"], 3),
                "added_p50_ms": round(on["p50_ms"] - off["p50_ms"], 3),
                "added_p99_ms": round(on["p99_ms"] - off["p99_ms"], 3),
                "limiter_local_view_p99_ms": on["limiter_alone"]["local_view"]["p99_ms"],
                "limiter_synchronous_p99_ms": on["limiter_alone"]["synchronous"]["p99_ms"],
                "unlimited": off,
                "limited": on,
                "clients": ns.clients,
            }
        )
    )


if __name__ == "__main__":
    main()
