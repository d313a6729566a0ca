"""What stays of a user after erasure: a keyed hash in the audit logs, nothing else."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

ERASURE_SUBJECT = "mbt.sessions.erased"


def actor_hash(secret: bytes, user_id: str) -> str:
    """A stable, keyed, one-way stand-in for an erased user's id in audit rows."""
    key = hmac.new(secret, b"mbt-audit-actor", hashlib.sha256).digest()
    return "erased:" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:40]


def rows_to_json(tables: dict[str, list[dict[str, object]]]) -> str:
    import json

    def default(o: object) -> str:
        if isinstance(o, bytes | bytearray | memoryview):
            return bytes(o).hex()
        return str(o)

    return json.dumps(tables, default=default, sort_keys=True, indent=1)


async def follow_erasures(
    bus: Any, durable: str, erase: Callable[[str], Awaitable[object]]
) -> None:
    """Run `erase(user_id)` for every erasure event, acking after it finished (at least once:
    each service's erasure is idempotent)."""
    from raxx.mbt.v1 import events_pb2
    from services.platform.bus import SESSIONS_STREAM

    async def on_event(msg: Any) -> None:
        await erase(events_pb2.UserErasedEvent.FromString(msg.data).user_id)
        await msg.ack()

    await bus.consume(
        ERASURE_SUBJECT, durable, on_event, stream=SESSIONS_STREAM.name or "MBT_SESSIONS", batch=10
    )
