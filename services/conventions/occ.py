"""OCC (OSI) option symbology: the one way every context names a listed option.

An OCC symbol is ``ROOT + YYMMDD + C|P + strike x 1000 in 8 digits``, e.g.
``GOOG151224C00600000`` = GOOG, expiring 2015-12-24, call, strike 600.000. The OCC's own form
pads the root to 6 characters with spaces (``GOOG  151224C00600000``); Alpaca and the archive
use the compact form, which ``format_occ`` writes and ``parse_occ`` reads (it accepts both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "InvalidOccSymbol",
    "OptionContract",
    "OptionRight",
    "format_occ",
    "is_occ_symbol",
    "parse_occ",
]

_TAIL = re.compile(r"(\d{2})(\d{2})(\d{2})([CP])(\d{8})")
_ROOT = re.compile(r"[A-Z0-9]{1,6}")
_STRIKE_SCALE = Decimal(1000)
_MAX_STRIKE_MILLIS = 99_999_999


class InvalidOccSymbol(ValueError):
    """The text is not an OCC option symbol."""


class OptionRight(StrEnum):
    CALL = "C"
    PUT = "P"


@dataclass(frozen=True, order=True)
class OptionContract:
    """One listed option. Ordering (root, expiry, strike, right) is the chain's display order."""

    root: str
    expiry: date
    strike: Decimal
    right: OptionRight
    multiplier: int = 100

    @property
    def symbol(self) -> str:
        return format_occ(self.root, self.expiry, self.right, self.strike)

    @property
    def is_call(self) -> bool:
        return self.right is OptionRight.CALL


def parse_occ(symbol: str) -> OptionContract:
    """Parse an OCC symbol (compact or space-padded root) into an ``OptionContract``."""
    if len(symbol) < 16:
        raise InvalidOccSymbol(f"{symbol!r} is too short for an OCC option symbol")
    root, tail = symbol[:-15].rstrip(" "), symbol[-15:]
    m = _TAIL.fullmatch(tail)
    if m is None or _ROOT.fullmatch(root) is None:
        raise InvalidOccSymbol(f"{symbol!r} is not ROOT + YYMMDD + C|P + 8-digit strike")
    yy, mm, dd, right, millis = m.groups()
    try:
        expiry = date(2000 + int(yy), int(mm), int(dd))
    except ValueError as exc:
        raise InvalidOccSymbol(f"{symbol!r} has an invalid expiry date: {exc}") from None
    strike = Decimal(int(millis)).scaleb(-3)
    return OptionContract(root=root, expiry=expiry, strike=strike, right=OptionRight(right))


def format_occ(root: str, expiry: date, right: OptionRight | str, strike: Decimal) -> str:
    """The compact OCC symbol; ``strike`` must be a multiple of 0.001 below 100000."""
    if _ROOT.fullmatch(root) is None:
        raise InvalidOccSymbol(f"root {root!r} must be 1-6 upper-case letters or digits")
    if not 2000 <= expiry.year <= 2099:
        raise InvalidOccSymbol(f"expiry {expiry.isoformat()} is outside 2000-2099")
    millis = strike * _STRIKE_SCALE
    if millis != millis.to_integral_value() or not 0 < millis <= _MAX_STRIKE_MILLIS:
        raise InvalidOccSymbol(f"strike {strike} is not a positive multiple of 0.001 < 100000")
    return f"{root}{expiry:%y%m%d}{OptionRight(right).value}{int(millis):08d}"


def is_occ_symbol(symbol: str) -> bool:
    try:
        parse_occ(symbol)
    except InvalidOccSymbol:
        return False
    return True
