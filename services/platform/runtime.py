"""The composition root shared by the service entrypoints (`python -m services.<name>`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.platform.bus import Bus
from services.platform.db import SchemaMigrations, make_engine, migrate
from services.platform.grpc_server import ServiceHost, configure_logging
from services.platform.revocation_feed import follow_revocations
from services.platform.settings import Settings


@dataclass
class Runtime:
    name: str
    settings: Settings
    engine: AsyncEngine | None
    bus: Bus


async def start_runtime(
    name: str, settings: Settings, migrations: SchemaMigrations | None
) -> Runtime:
    engine = None
    if migrations is not None:
        engine = make_engine(settings.database_url)
        await migrate(engine, migrations)
    bus = await Bus.connect(settings.nats_url, name=f"mbt-{name}")
    return Runtime(name=name, settings=settings, engine=engine, bus=bus)


async def serve(
    name: str,
    migrations: SchemaMigrations | None,
    build: Callable[[Runtime], Awaitable[ServiceHost]],
    settings: Settings | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Start a service: migrations, bus, its host (servicers + background jobs); run to exit."""
    settings = settings or Settings.from_env()
    rt = await start_runtime(name, settings, migrations)
    host = await build(rt)
    host.host = settings.grpc_host
    host.background.append(lambda: follow_revocations(rt.bus, host.revocations))

    async def close() -> None:
        await rt.bus.close()
        if rt.engine is not None:
            await rt.engine.dispose()

    host.on_shutdown.append(close)
    await host.run(ready=ready)


def main(
    name: str,
    migrations: SchemaMigrations | None,
    build: Callable[[Runtime], Awaitable[ServiceHost]],
) -> None:
    configure_logging(name)
    asyncio.run(serve(name, migrations, build))
