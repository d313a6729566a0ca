"""Keep a service's RevocationList current from the `mbt.sessions.revoked` events."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js.api import DeliverPolicy

from raxx.mbt.v1 import events_pb2
from services.platform.auth import RevocationList
from services.platform.bus import SESSION_REVOKED_SUBJECT, SESSIONS_STREAM, Bus


async def follow_revocations(bus: Bus, revocations: RevocationList) -> None:
    """Replay every revocation still in the stream, then follow new ones (ordered consumer)."""
    assert SESSIONS_STREAM.name is not None
    await bus.wait_for_stream(SESSIONS_STREAM.name)

    async def on_msg(msg: object) -> None:
        ev = events_pb2.SessionRevokedEvent.FromString(msg.data)  # type: ignore[attr-defined]
        revocations.revoke(ev.session_id, ev.expires_at.ToDatetime(tzinfo=UTC))
        revocations.prune(datetime.now(UTC))

    await bus.js.subscribe(
        SESSION_REVOKED_SUBJECT,
        cb=on_msg,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    # also listen on core NATS so a revocation is seen even before JetStream redelivers
    await bus.nc.subscribe(SESSION_REVOKED_SUBJECT + ".now", cb=on_msg)
