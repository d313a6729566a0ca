"""Option chains built from the recorded archive (the symbology is the kernel's `occ`)."""

from __future__ import annotations

from datetime import date

from services.conventions.occ import OptionContract, is_occ_symbol, parse_occ
from services.marketdata.domain.recorded import RecordedArchive

__all__ = ["option_chain", "option_expiries"]


def _recorded_contracts(
    archive: RecordedArchive, underlying: str, day: date
) -> list[OptionContract]:
    return [
        parse_occ(s)
        for s in archive.symbols(day, underlying=underlying)
        if s != underlying and is_occ_symbol(s)
    ]


def option_chain(
    archive: RecordedArchive, underlying: str, expiry: date, day: date
) -> list[OptionContract]:
    """Contracts on ``underlying`` expiring ``expiry`` with quotes recorded on ``day``.

    Sorted by strike, the call before the put at each strike. Empty when nothing was recorded.
    """
    chain = [c for c in _recorded_contracts(archive, underlying, day) if c.expiry == expiry]
    return sorted(chain, key=lambda c: (c.strike, c.right.value))


def option_expiries(archive: RecordedArchive, underlying: str, day: date) -> list[date]:
    """Expiry dates of the contracts on ``underlying`` recorded on ``day``, ascending."""
    return sorted({c.expiry for c in _recorded_contracts(archive, underlying, day)})
