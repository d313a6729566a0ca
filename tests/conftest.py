"""Shared fixtures: real PostgreSQL and NATS (embedded unless DATABASE_URL / NATS_URL are set)."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mbt.infra import Nats, Postgres, start_nats, start_postgres
from services.platform.settings import sqlalchemy_url


def private_tmp(prefix: str) -> Path:
    """A temp dir outside pytest's basetemp: embedded PostgreSQL runs as its own system user
    (when tests run as root) and must traverse the path, which pytest keeps at mode 0700."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def infra_dir() -> Iterator[Path]:
    path = private_tmp("mbt-infra-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(infra_dir: Path) -> Iterator[Postgres]:
    pg = start_postgres(infra_dir)
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def database_url(postgres: Postgres) -> str:
    return sqlalchemy_url(postgres.url)


@pytest.fixture(scope="session")
def nats_server(infra_dir: Path) -> Iterator[Nats]:
    n = start_nats(infra_dir)
    yield n
    n.stop()


@pytest.fixture(scope="session")
def jwt_secret() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
