"""Request fields and timestamps on the wire: named-field parsing, protobuf Timestamps.

Decimal formatting itself is the kernel's (`services.conventions.decimals`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from google.protobuf.timestamp_pb2 import Timestamp

from services.conventions.decimals import parse_decimal_text
from services.platform.errors import InvalidArgument


def parse_decimal(
    field: str, raw: str, *, required: bool = True, positive: bool = False, strict: bool = True
) -> Decimal | None:
    """Parse a decimal string from a request, naming the field when it is wrong.

    ``strict`` (users' input): the kernel's plain, bounded ASCII grammar. Internal calls between
    services (amounts MBT computed itself) pass ``strict=False``: any finite decimal.
    """
    if raw is None or str(raw).strip() == "":
        if required:
            raise InvalidArgument(field, "is required")
        return None
    try:
        d = parse_decimal_text(str(raw)) if strict else _any_finite(str(raw))
    except ValueError as exc:
        raise InvalidArgument(field, str(exc)) from None
    if positive and d <= 0:
        raise InvalidArgument(field, f"must be greater than zero, got {raw}")
    return d


def _any_finite(raw: str) -> Decimal:
    try:
        d = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {raw[:40]!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {raw[:40]!r}")
    return d


def parse_date(field: str, raw: str, *, required: bool = False) -> date | None:
    """A YYYY-MM-DD request field, naming the field when it is wrong."""
    if not raw:
        if required:
            raise InvalidArgument(field, "is required (YYYY-MM-DD)")
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(field, f"not a YYYY-MM-DD date: {raw!r}") from None


def ts_to_wire(dt: datetime | None) -> Timestamp | None:
    if dt is None:
        return None
    t = Timestamp()
    t.FromDatetime(dt.astimezone(UTC))
    return t


def ts_from_wire(t: Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)
