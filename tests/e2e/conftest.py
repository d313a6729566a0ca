"""The whole system started as `mbt up` starts it, in a subprocess, on free ports."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest

from mbt import harness
from mbt.harness import RunningSystem
from tests.conftest import private_tmp

__all__ = ["RunningSystem", "running_system"]


@contextlib.contextmanager
def running_system(*extra: str) -> Iterator[RunningSystem]:
    """`mbt up` in a subprocess on free ports with its own data dir; stopped with SIGINT."""
    data_dir = private_tmp("mbt-up-")
    try:
        system = harness.start(
            data_dir / "data",
            *extra,
            log=data_dir / "up.log",
            env={"MBT_CONFIG_DIR": str(data_dir / "cli-config")},
        )
    except harness.SystemDidNotStart as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(str(exc))
    try:
        yield system
    finally:
        system.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def system() -> Iterator[RunningSystem]:
    with running_system("--speed", "1") as s:
        yield s
