"""RFC 3339 timestamps as brokers' JSON carries them (``2024-03-04T15:00:01Z``, offsets too)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_rfc3339"]


def parse_rfc3339(raw: object) -> datetime | None:
    """The instant in UTC, or None for an empty or unreadable value."""
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
