"""How long `mbt up` takes to be usable, and to stop after SIGTERM.

Starts the whole system as `mbt up` does (embedded PostgreSQL and NATS) on free ports in a
temporary directory, R times: seconds from launch to the first answered HTTP request (the
ready line, then `GET /api/mbt/clock`), and from SIGTERM to the launcher's exit.

    python bench/lifecycle.py [--runs 3]

Prints one JSON object: start_s and stop_s (median and max), with each run's figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbt import harness  # noqa: E402


def one(tmp: Path) -> tuple[float, float]:
    t0 = time.monotonic()
    system = harness.start(tmp / "data")
    while httpx.get(f"{system.url}/api/mbt/clock").status_code != 200:
        time.sleep(0.05)
    started = time.monotonic() - t0
    t1 = time.monotonic()
    system.stop(signal.SIGTERM)
    return started, time.monotonic() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ns = ap.parse_args()
    runs = []
    for _ in range(ns.runs):
        tmp = Path(tempfile.mkdtemp(prefix="mbt-bench-lifecycle-"))
        try:
            runs.append(one(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    starts, stops = [r[0] for r in runs], [r[1] for r in runs]
    print(
        json.dumps(
            {
                "start_s_median": round(statistics.median(starts), 2),
                "start_s_max": round(max(starts), 2),
                "stop_s_median": round(statistics.median(stops), 2),
                "stop_s_max": round(max(stops), 2),
                "runs": [{"start_s": round(a, 2), "stop_s": round(b, 2)} for a, b in runs],
                "targets": {"start_s": 10, "stop_s": 3},
            }
        )
    )


if __name__ == "__main__":
    main()
