"""Decimals and timestamps on the wire: strings for money, protobuf Timestamps for time."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from google.protobuf.timestamp_pb2 import Timestamp

from services.platform.errors import InvalidArgument


def dec_to_wire(d: Decimal | None, places: int | None = None) -> str:
    """Decimal -> plain string ("185.1", "100000.00"), never scientific notation."""
    if d is None:
        return ""
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
    elif d == d.to_integral_value():
        d = d.quantize(Decimal(1))
    else:
        d = d.normalize()
    return f"{d:f}"


def money(d: Decimal) -> str:
    return dec_to_wire(d, 2)


def parse_decimal(
    field: str, raw: str, *, required: bool = True, positive: bool = False
) -> Decimal | None:
    """Parse a decimal string from a request, naming the field when it is wrong."""
    if raw is None or str(raw).strip() == "":
        if required:
            raise InvalidArgument(field, "is required")
        return None
    try:
        d = Decimal(str(raw).strip())
    except InvalidOperation as exc:
        raise InvalidArgument(field, f"not a decimal number: {raw!r}") from exc
    if not d.is_finite():
        raise InvalidArgument(field, f"not a finite number: {raw!r}")
    if positive and d <= 0:
        raise InvalidArgument(field, f"must be greater than zero, got {raw}")
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
