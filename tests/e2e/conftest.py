"""The whole system started as `mbt up` starts it, in a subprocess, on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

from mbt import harness
from mbt.harness import RunningSystem
from tests.conftest import private_tmp

__all__ = ["RunningSystem", "running_system"]


# Most end-to-end tests drive one user hard (polling, hundreds of orders); they run with the
# limiter on but its limits raised. test_keys_and_limits runs a system with BRIEF's limits.
GENEROUS_LIMITS = "free=100000,pro=100000,pro_plus=100000,ip=100000"


@contextlib.contextmanager
def running_system(*extra: str, real_limits: bool = False) -> Iterator[RunningSystem]:
    """`mbt up` in a subprocess on free ports with its own data dir; stopped with SIGINT."""
    data_dir = private_tmp("mbt-up-")
    env = {"MBT_CONFIG_DIR": str(data_dir / "cli-config")}
    if not real_limits:
        env["MBT_TIER_RATE_LIMITS"] = GENEROUS_LIMITS
    try:
        system = harness.start(data_dir / "data", *extra, log=data_dir / "up.log", env=env)
    except harness.SystemDidNotStart as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(str(exc))
    try:
        yield system
    finally:
        system.stop()
        if not os.environ.get("MBT_KEEP_E2E_DATA"):  # set it to read a failed run's logs
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def system() -> Iterator[RunningSystem]:
    with running_system("--speed", "1") as s:
        yield s
