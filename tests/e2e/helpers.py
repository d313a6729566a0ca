"""Helpers for end-to-end tests: run the CLI, sign up over HTTP, read the recorded data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from mbt.client import origin_for
from mbt.passkey import SoftPasskey

T = TypeVar("T")

# a buy that rests and never fills (IBM trades near $180): one durable accept, nothing more
RESTING_BUY = {
    "symbol": "IBM",
    "side": "buy",
    "qty": "1",
    "order_type": "limit",
    "limit_price": "1.00",
    "time_in_force": "gtc",
}


def run_cli(
    config_dir: Path, url: str, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MBT_CONFIG_DIR": str(config_dir), "MBT_URL": url}
    p = subprocess.run(
        [sys.executable, "-m", "mbt.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok and p.returncode != 0:
        raise AssertionError(
            f"mbt {' '.join(args)} failed ({p.returncode}): {p.stderr or p.stdout}"
        )
    return p


def cli_json(config_dir: Path, url: str, *args: str) -> Any:
    return json.loads(run_cli(config_dir, url, *args, "--json").stdout)


def wait_for(fn: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def signup_http(url: str, email: str) -> tuple[str, SoftPasskey]:
    """Register a passkey over HTTP; returns the session cookie value and the passkey."""
    key = SoftPasskey.generate()
    r = httpx.post(f"{url}/api/mbt/sessions/registrations", json={"email": email})
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    cred = key.create(d["options_json"], origin_for(url))
    r = httpx.post(
        f"{url}/api/mbt/sessions/registrations/{d['ceremony_id']}:finish",
        json={"credential_json": cred},
    )
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    token = cookie.split("mbt_session=", 1)[1].split(";", 1)[0]
    return token, key


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def run_admin(
    data_dir: Path, *args: str, ok: bool = True, operator: str = "ci"
) -> subprocess.CompletedProcess[str]:
    """`mbt admin ...` as an operator of the system whose data dir is ``data_dir``."""
    env = {**os.environ, "MBT_DATA_DIR": str(data_dir)}
    p = subprocess.run(
        [sys.executable, "-m", "mbt.cli", "admin", *args, "--operator", operator],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def set_tier(data_dir: Path, email: str, tier: str) -> None:
    """`mbt admin tier set` as an operator of the system whose data dir is ``data_dir``."""
    run_admin(data_dir, "tier", "set", email, tier, "--reason", "test")
