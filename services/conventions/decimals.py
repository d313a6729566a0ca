"""Exact decimals for money and quantities, and how they are written on the wire.

Money and quantities are ``Decimal`` end to end and travel as plain strings ("185.1",
"100000.00"), never floats and never scientific notation.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = ["dec_to_wire", "money", "parse_decimal_text"]


def dec_to_wire(d: Decimal | None, places: int | None = None) -> str:
    """Decimal -> plain string ("185.1", "100000.00"), never scientific notation; None -> ""."""
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
    """An amount of cash on the wire: two decimals."""
    return dec_to_wire(d, 2)


def parse_decimal_text(raw: str) -> Decimal:
    """A finite decimal from its text; ValueError saying what is wrong otherwise."""
    try:
        d = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {raw!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {raw!r}")
    return d
