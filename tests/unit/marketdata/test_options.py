"""OCC symbols and option chains built from the recorded contracts."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from services.conventions.occ import (
    InvalidOccSymbol,
    OptionContract,
    OptionRight,
    format_occ,
    is_occ_symbol,
    parse_occ,
)
from services.marketdata.domain.options import option_chain, option_expiries
from services.marketdata.domain.recorded import RecordedArchive, default_archive_root

QUOTES = default_archive_root() / "quotes"


@pytest.fixture(scope="module")
def archive() -> RecordedArchive:
    return RecordedArchive()


def test_parse_the_readme_example() -> None:
    c = parse_occ("GOOG151224C00600000")
    assert c == OptionContract("GOOG", date(2015, 12, 24), Decimal("600"), OptionRight.CALL)
    assert str(c.strike) == "600.000"  # strike x 1000 in 8 digits, kept to the tenth of a cent
    assert c.is_call and c.multiplier == 100
    assert c.symbol == "GOOG151224C00600000"


def test_fractional_strikes_and_puts() -> None:
    put = parse_occ("GOOG151224P00692500")
    assert (put.right, put.strike) == (OptionRight.PUT, Decimal("692.5"))
    assert format_occ("SPY", date(2023, 9, 1), "P", Decimal("0.5")) == "SPY230901P00000500"
    assert format_occ("X", date(2030, 1, 17), OptionRight.CALL, Decimal("99999.999")) == (
        "X300117C99999999"
    )


def test_space_padded_osi_root_is_accepted() -> None:
    assert parse_occ("GOOG  151224C00600000") == parse_occ("GOOG151224C00600000")


@pytest.mark.parametrize(
    "bad",
    [
        "GOOG",
        "151224C00600000",  # no root
        "goog151224C00600000",  # lower case
        "GOOG151324C00600000",  # month 13
        "GOOG151224X00600000",  # neither C nor P
        "GOOG151224C0060000",  # 7-digit strike
        "TOOLONGX151224C00600000",
    ],
)
def test_invalid_symbols(bad: str) -> None:
    with pytest.raises(InvalidOccSymbol):
        parse_occ(bad)
    assert not is_occ_symbol(bad)


def test_format_refuses_what_occ_cannot_write() -> None:
    with pytest.raises(InvalidOccSymbol, match="multiple of 0.001"):
        format_occ("GOOG", date(2015, 12, 24), "C", Decimal("600.0005"))
    with pytest.raises(InvalidOccSymbol, match="strike"):
        format_occ("GOOG", date(2015, 12, 24), "C", Decimal(0))
    with pytest.raises(InvalidOccSymbol, match="strike"):
        format_occ("GOOG", date(2015, 12, 24), "C", Decimal(100000))
    with pytest.raises(InvalidOccSymbol, match="root"):
        format_occ("GOOGLE1", date(2015, 12, 24), "C", Decimal(600))
    with pytest.raises(ValueError):
        format_occ("GOOG", date(2015, 12, 24), "X", Decimal(600))


def test_every_recorded_option_symbol_round_trips(archive: RecordedArchive) -> None:
    symbols = {s for d in archive.days() for s in archive.symbols(d)}
    options = sorted(s for s in symbols if s not in archive.underlyings())
    assert len(options) > 1800
    for s in options:
        c = parse_occ(s)
        assert format_occ(c.root, c.expiry, c.right, c.strike) == s == c.symbol
        # and by hand: strike digits / 1000
        assert c.strike == Decimal(int(s[-8:])) / 1000


def test_goog_chain_expiring_2015_12_24(archive: RecordedArchive) -> None:
    day = date(2015, 12, 24)
    names = [p.name for p in (QUOTES / "GOOG" / "2015-12-24").iterdir()]
    listed = sorted(n.removesuffix(".csv.gz") for n in names if n.startswith("GOOG151224"))
    chain = option_chain(archive, "GOOG", date(2015, 12, 24), day)
    assert len(chain) == len(listed) == 99
    assert sorted(c.symbol for c in chain) == listed
    assert all(c.expiry == date(2015, 12, 24) and c.root == "GOOG" for c in chain)
    keys = [(c.strike, c.right.value) for c in chain]
    assert keys == sorted(keys)  # by strike, call before put
    strikes = {c.strike for c in chain}
    by_name = {(Decimal(n[-8:]) / 1000) for n in listed}
    assert strikes == by_name and Decimal(600) in strikes
    calls = sum(1 for n in listed if n[10] == "C")
    assert sum(c.is_call for c in chain) == calls
    assert calls and calls < len(listed)  # both sides recorded


def test_chain_on_the_day_before_and_other_expiries(archive: RecordedArchive) -> None:
    before = option_chain(archive, "GOOG", date(2015, 12, 24), date(2015, 12, 23))
    assert len(before) == len(list((QUOTES / "GOOG" / "2015-12-23").iterdir())) == 79
    expiries = option_expiries(archive, "GOOG", date(2015, 12, 24))
    by_name = sorted(
        {
            date(2000 + int(m[1][:2]), int(m[1][2:4]), int(m[1][4:]))
            for p in (QUOTES / "GOOG" / "2015-12-24").iterdir()
            if (m := re.fullmatch(r"GOOG(\d{6})[CP]\d{8}\.csv\.gz", p.name))
        }
    )
    assert expiries == by_name and expiries[0] == date(2015, 12, 24) and len(expiries) == 12
    spy = option_chain(archive, "SPY", date(2023, 9, 1), date(2023, 8, 3))
    assert [c.symbol for c in spy] == [
        "SPY230901C00430000",
        "SPY230901P00430000",
        "SPY230901C00470000",
        "SPY230901P00470000",
    ]
    assert option_chain(archive, "IBM", date(2013, 10, 18), date(2013, 10, 7)) == []
