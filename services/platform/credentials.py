"""The credential registry: sessions, API keys and tiers, as every service sees them.

The sessions service owns the truth (its tables) and projects it into one NATS KV bucket,
``MBT_CREDENTIALS``; every service of every replica watches the bucket into memory, so a
revocation or a tier change reaches all of them within milliseconds, and a token check costs a
dict lookup. A key the cache has not seen yet (a session minted a moment ago) is read from the
bucket before the caller is refused: an unknown session is refused, never accepted.

Keys (NATS KV tokens): ``session.<sid>``, ``apikey.<key id>``, ``user.<user id>``; values are
small JSON objects (`SessionEntry`, `ApiKeyEntry`, `UserEntry`). Secrets never enter the
bucket: an API key is stored as a keyed hash (HMAC-SHA256 under a key derived from the
platform secret), which is also how a presented secret is checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from services.platform.bus import Bus

__all__ = [
    "BUCKET",
    "ApiKeyEntry",
    "CredentialRegistry",
    "SessionEntry",
    "UserEntry",
    "api_key_hash",
]

log = logging.getLogger("mbt.credentials")

BUCKET = "MBT_CREDENTIALS"
BUCKET_CONFIG = KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE)
_HASH_CONTEXT = b"mbt api key secret v1"


def api_key_hash(platform_secret: bytes, secret: str) -> str:
    """The keyed hash an API key secret is stored (and compared) as."""
    pepper = hmac.new(platform_secret, _HASH_CONTEXT, hashlib.sha256).digest()
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SessionEntry:
    user_id: str
    expires_at: int  # epoch seconds: the session's absolute end (refreshes stop there)
    revoked: bool = False


@dataclass(frozen=True)
class ApiKeyEntry:
    user_id: str
    secret_hash: str
    scopes: tuple[str, ...] = ("trading", "data")
    read_only: bool = False
    revoked: bool = False


@dataclass(frozen=True)
class UserEntry:
    tier: str


def _encode(entry: SessionEntry | ApiKeyEntry | UserEntry) -> bytes:
    return json.dumps(asdict(entry), separators=(",", ":")).encode()


def _decode(kind: str, raw: bytes) -> SessionEntry | ApiKeyEntry | UserEntry | None:
    try:
        d: dict[str, Any] = json.loads(raw)
        if kind == "session":
            return SessionEntry(str(d["user_id"]), int(d["expires_at"]), bool(d["revoked"]))
        if kind == "apikey":
            return ApiKeyEntry(
                str(d["user_id"]),
                str(d["secret_hash"]),
                tuple(str(s) for s in d["scopes"]),
                bool(d["read_only"]),
                bool(d["revoked"]),
            )
        if kind == "user":
            return UserEntry(str(d["tier"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignored a malformed %s entry in %s", kind, BUCKET)
    return None


def _valid_token(value: str) -> bool:
    return bool(value) and len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


@dataclass
class CredentialRegistry:
    """A service's view of the bucket: watched into memory, read through on a miss."""

    sessions: dict[str, SessionEntry] = field(default_factory=dict)
    api_keys: dict[str, ApiKeyEntry] = field(default_factory=dict)
    users: dict[str, UserEntry] = field(default_factory=dict)
    kv: KeyValue | None = None

    # ---- the writer's side (sessions) ------------------------------------------------------
    @staticmethod
    async def open_bucket(bus: Bus) -> KeyValue:
        """The bucket, created if missing (idempotent; the sessions service calls it)."""
        try:
            return await bus.js.key_value(BUCKET)
        except (BucketNotFoundError, NotFoundError):
            return await bus.js.create_key_value(BUCKET_CONFIG)

    async def put(self, key: str, entry: SessionEntry | ApiKeyEntry | UserEntry) -> None:
        """Write one entry (and apply it locally at once, before the watch echoes it)."""
        assert self.kv is not None, "the registry is not connected"
        await self.kv.put(key, _encode(entry))
        self._apply(key, entry)

    async def delete(self, key: str) -> None:
        assert self.kv is not None, "the registry is not connected"
        await self.kv.purge(key)
        self._apply(key, None)

    # ---- every service's side -------------------------------------------------------------
    async def follow(self, bus: Bus) -> None:
        """Load every entry, then apply changes as they come (run as a background task)."""
        while self.kv is None:
            try:
                self.kv = await bus.js.key_value(BUCKET)
            except (BucketNotFoundError, NotFoundError):
                await asyncio.sleep(0.2)  # the sessions service creates it
        watcher = await self.kv.watchall()
        async for update in watcher:
            if update is None:  # the end of the initial values
                continue
            kind = update.key.split(".", 1)[0]
            deleted = update.operation in ("DEL", "PURGE") or not update.value
            self._apply(update.key, None if deleted else _decode(kind, update.value or b""))

    def _apply(self, key: str, entry: SessionEntry | ApiKeyEntry | UserEntry | None) -> None:
        kind, _, ident = key.partition(".")
        tables: dict[str, dict[str, Any]] = {
            "session": self.sessions,
            "apikey": self.api_keys,
            "user": self.users,
        }
        table = tables.get(kind)
        if table is None:
            return
        if entry is None:
            table.pop(ident, None)
        else:
            table[ident] = entry

    async def _read_through(self, kind: str, ident: str) -> Any:
        if self.kv is None or not _valid_token(ident):
            return None
        try:
            got = await self.kv.get(f"{kind}.{ident}")
        except (KeyNotFoundError, NotFoundError):
            return None
        except Exception as exc:  # the bus is down: refuse rather than guess
            log.warning("credential lookup failed: %s", exc)
            return None
        entry = _decode(kind, got.value or b"") if got.value else None
        if entry is not None:
            self._apply(f"{kind}.{ident}", entry)
        return entry

    async def session(self, session_id: str) -> SessionEntry | None:
        entry = self.sessions.get(session_id)
        if entry is None:
            entry = await self._read_through("session", session_id)
        return entry if isinstance(entry, SessionEntry) else None

    async def api_key(self, key_id: str) -> ApiKeyEntry | None:
        entry = self.api_keys.get(key_id)
        if entry is None:
            entry = await self._read_through("apikey", key_id)
        return entry if isinstance(entry, ApiKeyEntry) else None

    async def tier(self, user_id: str, fallback: str) -> str:
        """The user's current tier (operators change it at run time)."""
        entry = self.users.get(user_id)
        if entry is None:
            entry = await self._read_through("user", user_id)
        return entry.tier if isinstance(entry, UserEntry) else fallback

    @staticmethod
    def session_live(entry: SessionEntry | None, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return entry is not None and not entry.revoked and now.timestamp() < entry.expires_at
