"""Ctrl-C stops everything cleanly; data under --data-dir survives a restart."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from mbt import harness
from mbt.launcher import free_port
from services.platform.settings import DEFAULT_PORTS
from tests.conftest import private_tmp
from tests.e2e.helpers import cli_json, run_cli

pytestmark = pytest.mark.e2e


def start(data_dir: Path, port: int, base: int, log: Path) -> subprocess.Popen[bytes]:
    return harness.start(
        data_dir, "--speed", "max", log=log, gateway_port=port, grpc_port_base=base
    ).process


def descendants(p: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return psutil.Process(p.pid).children(recursive=True)


def test_stop_leaves_nothing_running_and_data_survives(tmp_path: Path) -> None:
    data, cfg = private_tmp("mbt-restart-") / "data", tmp_path / "cfg"
    port, base = free_port(), free_port(len(DEFAULT_PORTS))
    p = start(data, port, base, tmp_path / "up1.log")
    url = f"http://127.0.0.1:{port}"
    run_cli(cfg, url, "signup", "--email", "restart@example.com", "--json")
    before = cli_json(cfg, url, "account")
    children = descendants(p)
    assert len(children) >= 7  # 5 services + gateway + nats (+ postgres)
    p.send_signal(signal.SIGINT)
    assert p.wait(60) == 0
    assert "stopped." in (tmp_path / "up1.log").read_text()
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {[c.cmdline() for c in alive]}"
    postgres = [
        x
        for x in psutil.process_iter(["cmdline"])
        if str(data / "postgres") in " ".join(x.info["cmdline"] or [])
    ]
    assert postgres == []

    p2 = start(data, port, base, tmp_path / "up2.log")
    try:
        run_cli(cfg, url, "login", "--email", "restart@example.com")
        after = cli_json(cfg, url, "account")
        assert after["id"] == before["id"] and after["cash"] == before["cash"]
    finally:
        p2.send_signal(signal.SIGTERM)
        assert p2.wait(60) == 0
