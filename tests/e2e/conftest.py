"""The whole system started as `mbt up` starts it, in a subprocess, on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mbt.launcher import free_port
from services.platform.settings import DEFAULT_PORTS
from tests.conftest import private_tmp


@dataclass
class RunningSystem:
    url: str
    grpc_ports: dict[str, int]
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def grpc_addr(self, service: str) -> str:
        return f"127.0.0.1:{self.grpc_ports[service]}"


def _free_block(n: int) -> int:
    """A base port with n free consecutive ports after it."""
    for _ in range(50):
        base = free_port()
        if base + n < 65000 and all(_is_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port block")


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def running_system(*extra: str) -> Iterator[RunningSystem]:
    """`mbt up` in a subprocess on free ports with its own data dir; stopped with SIGINT."""
    data_dir = private_tmp("mbt-up-")
    gw_port = free_port()
    base = _free_block(len(DEFAULT_PORTS))
    ports = {name: base + i for i, name in enumerate(DEFAULT_PORTS)}
    log = data_dir / "up.log"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    env["MBT_CONFIG_DIR"] = str(data_dir / "cli-config")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mbt.cli",
            "up",
            "--data-dir",
            str(data_dir / "data"),
            "--port",
            str(gw_port),
            "--grpc-port-base",
            str(base),
            *extra,
        ],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{gw_port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mbt up exited early:\n{log.read_text()}")
        if "MBT is up" in log.read_text():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"mbt up did not come up:\n{log.read_text()}")
    try:
        yield RunningSystem(url=url, grpc_ports=ports, data_dir=data_dir, process=proc, log=log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def system() -> Iterator[RunningSystem]:
    with running_system("--speed", "1") as s:
        yield s
