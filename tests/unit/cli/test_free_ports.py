"""Ports for local systems are chosen where outgoing connections cannot take them first."""

from __future__ import annotations

import socket
from pathlib import Path

from mbt import harness, launcher


def test_a_port_block_is_free_and_below_the_ephemeral_range() -> None:
    low, high = launcher._ephemeral_range()
    for _ in range(20):
        base = launcher.free_port(7)
        assert not (low <= base <= high) and not (low <= base + 6 <= high)
        assert all(launcher.port_is_free(base + i) for i in range(7))


def test_a_taken_port_is_not_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not launcher.port_is_free(s.getsockname()[1])


def test_a_failed_start_carries_the_failing_service_log(tmp_path: Path) -> None:
    log = tmp_path / "accounts.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)) + "\nOSError: address in use\n")
    text = harness._with_service_logs(f"error: accounts failed to start; see {log}\n")
    assert "OSError: address in use" in text and "line 99" in text and "line 10\n" not in text
