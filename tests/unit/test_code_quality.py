"""ruff, mypy --strict and the import contracts are part of the test command (CI runs the same)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_is_clean() -> None:
    p = _run("ruff", "check", ".")
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_strict_is_clean() -> None:
    p = _run("mypy")
    assert p.returncode == 0, p.stdout + p.stderr


def test_import_contracts_hold() -> None:
    """Bounded contexts stand apart (contracts in pyproject.toml, docs/architecture.md)."""
    p = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout
