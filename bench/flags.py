"""How fast a runtime kill switch reaches every orders instance.

Starts the system as `mbt up --orders-instances 2` does, signs a user up, then N times flips
`kill new-orders` on and off through the operator RPC (what `mbt admin kill` calls) and measures,
for each instance's gRPC port, the time from the flip's reply to the first submit refused (on)
or accepted (off) there. Probes go straight to each instance every 10 ms.

    python bench/flags.py [--flips 10]

Prints one JSON object: p50/p99/max seconds from flip to effect, over every instance and flip
(the target is 1 s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbt import harness  # noqa: E402
from raxx.mbt.v1 import orders_service_pb2 as opb  # noqa: E402
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc  # noqa: E402
from raxx.mbt.v1 import sessions_service_pb2 as spb  # noqa: E402
from raxx.mbt.v1 import sessions_service_pb2_grpc as sgrpc  # noqa: E402
from tests.e2e.helpers import signup_http  # noqa: E402


def refused(stub: ogrpc.OrdersServiceStub, token: str) -> bool:
    req = opb.SubmitOrderRequest(
        symbol="IBM",
        side="buy",
        qty="1",
        order_type="limit",
        limit_price="1.00",
        time_in_force="gtc",
        client_order_id=str(uuid.uuid4()),
    )
    try:
        stub.SubmitOrder(req, metadata=(("authorization", f"Bearer {token}"),), timeout=5)
    except grpc.RpcError:
        return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flips", type=int, default=10)
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mbt-bench-flags-"))
    env = {"MBT_TIER_RATE_LIMITS": "free=1000000,pro=1000000,pro_plus=1000000,ip=1000000"}
    system = harness.start(tmp / "data", "--orders-instances", "2", env=env)
    try:
        token, _ = signup_http(system.url, "flags-bench@example.com")
        data = system.data_dir
        endpoints = json.loads((data / "endpoints.json").read_text())
        op = (
            ("x-mbt-operator-token", (data / "operator-token").read_text().strip()),
            ("x-mbt-operator", "bench"),
        )
        sessions = sgrpc.SessionsServiceStub(grpc.insecure_channel(endpoints["sessions"]))
        stubs = [
            ogrpc.OrdersServiceStub(grpc.insecure_channel(a)) for a in endpoints["orders_instances"]
        ]
        lags: list[float] = []
        for i in range(ns.flips * 2):
            on = i % 2 == 0
            sessions.SetRuntimeFlag(
                spb.SetRuntimeFlagRequest(
                    name="new-orders", value="on" if on else "off", reason="bench"
                ),
                metadata=op,
                timeout=10,
            )
            t0 = time.monotonic()
            for stub in stubs:
                while refused(stub, token) != on:
                    time.sleep(0.01)
                lags.append(time.monotonic() - t0)
        lags.sort()
        print(
            json.dumps(
                {
                    "bench": "runtime flags: flip to effect on every orders instance",
                    "instances": len(stubs),
                    "flips": ns.flips * 2,
                    "p50_s": round(statistics.median(lags), 4),
                    "p99_s": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 4),
                    "max_s": round(lags[-1], 4),
                    "target_s": 1.0,
                }
            )
        )
    finally:
        system.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
