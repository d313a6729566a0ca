"""The composition root shared by the service entrypoints (`python -m services.<name>`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from services.platform.bus import Bus
from services.platform.credentials import CredentialRegistry
from services.platform.db import SchemaMigrations, make_engine, migrate
from services.platform.flags import RuntimeFlags
from services.platform.grpc_server import ServiceHost, configure_logging
from services.platform.ratelimit import RateLimiter, default_limits
from services.platform.settings import Settings

log = logging.getLogger("mbt.runtime")


@dataclass
class Runtime:
    name: str
    settings: Settings
    engine: AsyncEngine | None
    bus: Bus
    registry: CredentialRegistry = field(default_factory=CredentialRegistry)
    limiter: RateLimiter | None = None
    # kill switches and FLAG_MBT_PAPER_TRADING, watched from NATS KV (env: start-up defaults)
    flags: RuntimeFlags = field(default_factory=RuntimeFlags)


async def start_runtime(
    name: str, settings: Settings, migrations: SchemaMigrations | None
) -> Runtime:
    engine = None
    if migrations is not None:
        engine = make_engine(settings.database_url)
        await migrate(engine, migrations)
    bus = await Bus.connect(settings.nats_url, name=f"mbt-{name}")
    limiter = None
    if settings.rate_limits:
        await _ensure_stream_racing_peers(bus)
        limiter = RateLimiter(bus, tier_limits=settings.tier_limits or default_limits())
    return Runtime(
        name=name,
        settings=settings,
        engine=engine,
        bus=bus,
        limiter=limiter,
        flags=RuntimeFlags.from_settings(settings),
    )


async def _ensure_stream_racing_peers(bus: Bus) -> None:
    """Every service declares the rate-limit stream; peers starting together may race."""
    for _ in range(5):
        try:
            await RateLimiter.ensure_stream(bus)
            return
        except Exception as exc:  # "stream name already in use" from a concurrent create
            log.debug("rate-limit stream: %s; retrying", exc)
            await asyncio.sleep(0.2)
    await RateLimiter.ensure_stream(bus)


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
    host.registry = rt.registry
    host.limiter = rt.limiter
    host.operator_token = settings.operator_token
    host.background.append(lambda: rt.registry.follow(rt.bus))
    host.background.append(lambda: rt.flags.follow(rt.bus))

    async def close() -> None:
        if rt.limiter is not None:
            await rt.limiter.close()
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
