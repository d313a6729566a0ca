"""Shared fixtures: real PostgreSQL and NATS (embedded unless DATABASE_URL / NATS_URL are set)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from mbt.infra import Nats, Postgres, start_nats, start_postgres
from services.platform.settings import sqlalchemy_url


@pytest.fixture(scope="session")
def infra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infra")


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
