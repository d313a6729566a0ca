"""Runtime flags and kill switches: state in one NATS KV bucket, watched by every replica.

Operators change them with `mbt admin kill …` / `mbt admin flag set …` (sessions writes the
bucket and the audit row); every process of every service watches the bucket into memory, so a
change is seen everywhere within milliseconds, without a restart. The environment variables
remain the start-up defaults, used until the bucket holds a value for that flag.

Keys (values are JSON ``{"value", "by", "reason", "at"}``):

* ``kill.trading``       "1" = read-only: submits, replaces and cancels refused (503)
* ``kill.new-orders``    "1" = new orders and replays refused; views and cancels work
* ``kill.live-handoff``  "1" = live enrollment and live orders refused
* ``paper``              FLAG_MBT_PAPER_TRADING for everyone: off | shadow | on
* ``paper.user.<id>``    the same for one user (wins over the global value)
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from services.platform.bus import Bus
from services.platform.settings import Settings

__all__ = [
    "BUCKET",
    "KILL_SWITCHES",
    "PAPER_MODES",
    "FlagValue",
    "RuntimeFlags",
    "flag_key",
]

log = logging.getLogger("mbt.flags")

BUCKET = "MBT_FLAGS"
BUCKET_CONFIG = KeyValueConfig(bucket=BUCKET, history=10, storage=StorageType.FILE)
KILL_SWITCHES = ("trading", "new-orders", "live-handoff")
PAPER_MODES = ("off", "shadow", "on")


def flag_key(name: str, user_id: str = "") -> str:
    """The bucket key of a kill switch ("trading") or of the paper flag ("paper"[, user])."""
    if name in KILL_SWITCHES:
        return f"kill.{name}"
    if name == "paper":
        return f"paper.user.{user_id}" if user_id else "paper"
    raise ValueError(f"unknown flag {name!r}")


@dataclass(frozen=True)
class FlagValue:
    value: str
    by: str = ""
    reason: str = ""
    at: str = ""
    source: str = "runtime"  # "runtime" (the bucket) or "environment" (the start-up default)

    def encode(self) -> bytes:
        return json.dumps(
            {"value": self.value, "by": self.by, "reason": self.reason, "at": self.at}
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> FlagValue | None:
        try:
            d = json.loads(raw)
            return cls(
                str(d["value"]),
                str(d.get("by", "")),
                str(d.get("reason", "")),
                str(d.get("at", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def defaults_from(settings: Settings) -> dict[str, FlagValue]:
    """The start-up defaults: the environment as Settings read it."""
    env = "environment"
    out = {
        "kill.trading": FlagValue("1" if settings.trading_disabled else "0", source=env),
        "kill.new-orders": FlagValue("1" if settings.new_orders_disabled else "0", source=env),
        "kill.live-handoff": FlagValue("1" if settings.live_handoff_disabled else "0", source=env),
    }
    paper = settings.paper_trading if settings.paper_trading in PAPER_MODES else "on"
    out["paper"] = FlagValue(paper, source=env)
    return out


@dataclass
class RuntimeFlags:
    """One process's view of the flags: the bucket watched into memory over env defaults."""

    defaults: dict[str, FlagValue] = field(default_factory=dict)
    values: dict[str, FlagValue] = field(default_factory=dict)
    kv: KeyValue | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeFlags:
        return cls(defaults=defaults_from(settings))

    # ---- reading ----------------------------------------------------------------------------
    def get(self, key: str) -> FlagValue:
        return self.values.get(key) or self.defaults.get(key) or FlagValue("", source="default")

    def killed(self, name: str) -> bool:
        return self.get(flag_key(name)).value == "1"

    def paper_mode(self, user_id: str = "") -> str:
        if user_id and (v := self.values.get(flag_key("paper", user_id))) is not None:
            return v.value
        return self.get("paper").value or "on"

    def users_in(self, mode: str) -> dict[str, str]:
        """The users whose own paper flag is ``mode``, with when it was set (RFC 3339)."""
        prefix = "paper.user."
        return {
            key.removeprefix(prefix): v.at
            for key, v in self.values.items()
            if key.startswith(prefix) and v.value == mode
        }

    def all(self) -> dict[str, FlagValue]:
        return {**self.defaults, **self.values}

    # ---- following --------------------------------------------------------------------------
    @staticmethod
    async def open_bucket(bus: Bus) -> KeyValue:
        try:
            return await bus.js.key_value(BUCKET)
        except (BucketNotFoundError, NotFoundError):
            try:
                return await bus.js.create_key_value(BUCKET_CONFIG)
            except Exception:  # a peer created it meanwhile
                return await bus.js.key_value(BUCKET)

    async def follow(self, bus: Bus) -> None:
        """Load every value, then apply changes as they come (a background task)."""
        while True:
            try:
                self.kv = await self.open_bucket(bus)
                watcher = await self.kv.watchall()
                async for update in watcher:
                    if update is None:  # the initial values are in
                        continue
                    if update.operation in ("DEL", "PURGE") or not update.value:
                        self.values.pop(update.key, None)
                    elif (v := FlagValue.decode(update.value)) is not None:
                        self.values[update.key] = v
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS restarting: watch again
                log.warning("runtime flags watch: %s; re-watching", type(exc).__name__)
                await asyncio.sleep(0.5)

    # ---- writing (the operator's RPC) --------------------------------------------------------
    async def put(self, bus: Bus, key: str, value: str, by: str, reason: str) -> FlagValue:
        kv = self.kv or await self.open_bucket(bus)
        v = FlagValue(value, by[:80], reason[:500], datetime.now(UTC).isoformat())
        await kv.put(key, v.encode())
        self.values[key] = v
        return v

    async def clear(self, bus: Bus, key: str) -> None:
        kv = self.kv or await self.open_bucket(bus)
        await kv.delete(key)
        self.values.pop(key, None)

    def describe(self) -> list[tuple[str, FlagValue]]:
        return sorted(self.all().items())
