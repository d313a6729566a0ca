"""Start the whole system as `mbt up` does, in a subprocess on free ports: for tests and benches.

One place knows how to launch `mbt up` out of process, wait until it says "MBT is up", and stop
it with a signal, so the end-to-end tests, the restart test and the benchmarks start the same
system the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbt.launcher import free_port
from services.platform.settings import DEFAULT_PORTS

__all__ = [
    "RunningSystem",
    "SystemDidNotStart",
    "running_system",
    "signup_http",
    "start",
]

READY_LINE = "MBT is up"


class SystemDidNotStart(RuntimeError):
    """`mbt up` exited or did not become ready in time; the message carries its log."""


@dataclass
class RunningSystem:
    url: str
    gateway_port: int
    grpc_ports: dict[str, int]
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def grpc_addr(self, service: str) -> str:
        return f"127.0.0.1:{self.grpc_ports[service]}"

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 60) -> int:
        """Signal `mbt up` and wait for it; kill it (and raise) if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _with_service_logs(text: str, lines: int = 40) -> str:
    """``mbt up``'s output, followed by the tail of each service log it points to."""
    for path in dict.fromkeys(re.findall(r"see (\S+\.log)", text)):
        try:
            tail = Path(path).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        text += f"\n--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)
    return text


def start(
    data_dir: Path,
    *extra: str,
    log: Path | None = None,
    gateway_port: int | None = None,
    grpc_port_base: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> RunningSystem:
    """`mbt up --data-dir DATA_DIR ...extra` on free ports (or the given ones), once ready.

    The embedded PostgreSQL and NATS are used (``DATABASE_URL`` / ``NATS_URL`` are dropped from
    the environment); ``env`` adds or overrides variables.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    gw = gateway_port or free_port()
    base = grpc_port_base or free_port(len(DEFAULT_PORTS))
    log = log or data_dir / "up.log"
    child_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    child_env.update(env or {})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mbt.cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(gw),
                "--grpc-port-base",
                str(base),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while READY_LINE not in log.read_text():
        if proc.poll() is not None:
            raise SystemDidNotStart(f"mbt up exited early:\n{_with_service_logs(log.read_text())}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemDidNotStart(
                f"mbt up did not come up in {timeout:.0f} s:\n{_with_service_logs(log.read_text())}"
            )
        time.sleep(0.2)
    ports = {name: base + i for i, name in enumerate(DEFAULT_PORTS)}
    return RunningSystem(f"http://127.0.0.1:{gw}", gw, ports, data_dir, proc, log)


def signup_http(url: str, email: str) -> str:
    """Register a new user with a software passkey over HTTP; their access token."""
    import re

    import httpx

    from mbt.client import origin_for
    from mbt.passkey import SoftPasskey

    key = SoftPasskey.generate()
    d = httpx.post(f"{url}/api/mbt/sessions/registrations", json={"email": email}).json()["data"]
    r = httpx.post(
        f"{url}/api/mbt/sessions/registrations/{d['ceremony_id']}:finish",
        json={"credential_json": key.create(d["options_json"], origin_for(url))},
    )
    m = re.search(r"mbt_session=([^;]+)", r.headers.get("set-cookie", ""))
    if m is None:
        raise RuntimeError(f"signup of {email} failed: {r.status_code} {r.text}")
    return m.group(1)


@contextlib.contextmanager
def running_system(data_dir: Path, *extra: str, **kwargs: Any) -> Iterator[RunningSystem]:
    """`start`, then stop with SIGINT when the block ends."""
    system = start(data_dir, *extra, **kwargs)
    try:
        yield system
    finally:
        system.stop()
