"""Exact decimals for money and quantities, and how they are written on the wire.

Money and quantities are ``Decimal`` end to end and travel as plain strings ("185.1",
"100000.00"), never floats and never scientific notation.
"""

from __future__ import annotations

import re
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


# Plain ASCII decimals only: no exponent, no underscores, no other scripts' digits, bounded
# (12 integer digits, 9 decimal places: more than any price or quantity MBT trades).
_DECIMAL = re.compile(r"[+-]?[0-9]{1,12}(\.[0-9]{1,9})?|[+-]?\.[0-9]{1,9}")


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def parse_decimal_text(raw: str) -> Decimal:
    """A decimal from plain ASCII text (``-12.50``); ValueError saying what is wrong otherwise.

    Refused: exponents (``1e30``), underscores (``1_000``), non-ASCII digits (``１０``), more
    than 12 integer digits or 9 decimal places, NaN and infinities.
    """
    text = raw.strip()
    if not _DECIMAL.fullmatch(text):
        if text.isascii() and any(c in text for c in "eE_") or not text.isascii():
            raise ValueError(f"not a plain decimal number: {_shown(raw)}")
        raise ValueError(
            f"not a decimal number (at most 12 digits before the point, 9 after): {_shown(raw)}"
        )
    try:
        return Decimal(text)
    except InvalidOperation:  # unreachable after the grammar, kept as a guard
        raise ValueError(f"not a decimal number: {_shown(raw)}") from None
