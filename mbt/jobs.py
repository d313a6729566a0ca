"""`python -m mbt.jobs <job>`: trigger a scheduled job over NATS (JetStream work queue).

The owning service runs the job idempotently; the trigger's message id (job + period) lets
JetStream drop a duplicate trigger. `mbt up` runs the same schedule locally (see `Scheduler`);
in Kubernetes, CronJobs run this module (deploy/k8s/cronjobs.yaml).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
from datetime import UTC, date, datetime, timedelta

import nats

from services.platform.bus import CLOCK_SUBJECT, JOBS_STREAM, Bus

# job -> the services that own a part of it
JOBS: dict[str, tuple[str, ...]] = {
    "mark-to-market": ("accounts",),
    "retention-purge": ("accounts",),
    "dividends": ("accounts",),
    "margin-interest": ("accounts",),
    "option-expiration": ("accounts",),
    "gdpr-erasure": ("sessions",),
    "verify-parity": ("accounts",),  # shadow users: MBT against Alpaca paper, a report a day
}


def period_key(job: str, as_of: date, now: datetime) -> str:
    """The period a trigger stands for: a trading day, or an hour for the purge."""
    if job in ("retention-purge", "gdpr-erasure"):
        return now.strftime("%Y-%m-%dT%H")
    return as_of.isoformat()


async def trigger(bus: Bus, job: str, as_of: date, now: datetime) -> list[str]:
    if job not in JOBS:
        raise SystemExit(f"unknown job {job!r}; one of {', '.join(JOBS)}")
    await bus.ensure_stream(JOBS_STREAM)
    payload = json.dumps({"job": job, "as_of": as_of.isoformat(), "now": now.isoformat()}).encode()
    subjects = []
    for service in JOBS[job]:
        subject = f"mbt.jobs.{service}.{job}"
        await bus.js_publish(
            subject, payload, msg_id=f"{job}:{service}:{period_key(job, as_of, now)}"
        )
        subjects.append(subject)
    return subjects


class Scheduler:
    """The local schedule `mbt up` runs, on the market clock (simulated when replaying):
    corporate actions before each open, option expiration then mark-to-market after each close,
    the retention purge every hour."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mbt-scheduler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        from raxx.mbt.v1 import events_pb2
        from services.conventions.calendar import MarketCalendar

        bus = await Bus.connect(self.nats_url, name="mbt-scheduler")
        calendar = MarketCalendar()
        state: dict[str, object] = {"now": None}

        async def on_clock(msg: object) -> None:
            ev = events_pb2.ClockEvent.FromString(msg.data)  # type: ignore[attr-defined]
            state["now"] = ev.timestamp.ToDatetime(tzinfo=UTC)

        await bus.nc.subscribe(CLOCK_SUBJECT, cb=on_clock)
        last_close_done: date | None = None
        last_actions_done: date | None = None
        last_expiry_done: date | None = None
        last_purge: datetime | None = None
        try:
            while not self._stop.is_set():
                await asyncio.sleep(1.0)
                now = state["now"]
                if not isinstance(now, datetime):
                    continue
                bounds = calendar.session_bounds(now.date())
                pre_open = bounds is not None and now >= bounds[0] - timedelta(minutes=30)
                if pre_open and last_actions_done != now.date():
                    await trigger(bus, "dividends", now.date(), now)  # ex-date events
                    last_actions_done = now.date()
                if (
                    bounds
                    and now >= bounds[1] + timedelta(minutes=2)
                    and last_expiry_done != now.date()
                ):
                    await trigger(bus, "option-expiration", now.date(), now)
                    last_expiry_done = now.date()
                if (
                    bounds
                    and now >= bounds[1] + timedelta(minutes=5)
                    and last_close_done != now.date()
                ):
                    await trigger(bus, "mark-to-market", now.date(), now)
                    await trigger(bus, "margin-interest", now.date(), now)
                    await trigger(bus, "verify-parity", now.date(), now)  # shadow users only
                    last_close_done = now.date()
                wall = datetime.now(UTC)
                if last_purge is None or wall - last_purge >= timedelta(hours=1):
                    await trigger(bus, "retention-purge", now.date(), wall)
                    await trigger(bus, "gdpr-erasure", now.date(), wall)
                    last_purge = wall
        finally:
            await bus.close()


def main() -> None:
    ap = argparse.ArgumentParser(description="Trigger a scheduled MBT job")
    ap.add_argument("job", choices=sorted(JOBS))
    ap.add_argument("--as-of", help="trading day (default: today, UTC)")
    ap.add_argument("--now", help="run as of this instant (ISO 8601), e.g. for due erasures")
    ns = ap.parse_args()
    now = datetime.fromisoformat(ns.now) if ns.now else datetime.now(UTC)
    as_of = date.fromisoformat(ns.as_of) if ns.as_of else now.date()
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")

    async def run() -> None:
        bus = await Bus.connect(url, name="mbt-jobs")
        try:
            for s in await trigger(bus, ns.job, as_of, now):
                print(f"triggered {ns.job} for {as_of} on {s}")
        finally:
            await bus.close()

    try:
        asyncio.run(run())
    except (OSError, nats.errors.Error) as exc:
        raise SystemExit(f"error: cannot reach NATS at {url}: {exc}") from None


if __name__ == "__main__":
    main()
