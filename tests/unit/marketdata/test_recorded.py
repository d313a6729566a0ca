"""The packaged archive of recorded quotes, and the corporate actions in its factor files.

Expected values are read from the files independently (gzip + csv), never from the code under test.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from services.conventions.calendar import MarketCalendar
from services.conventions.quote import Quote
from services.marketdata.domain.corporate_actions import (
    CashDividend,
    FactorRow,
    Split,
    corporate_actions,
    load_corporate_actions,
    parse_factor_file,
)
from services.marketdata.domain.recorded import (
    RecordedArchive,
    RecordedFileError,
    default_archive_root,
    parse_quote_csv,
)

ROOT = default_archive_root()
IBM_DAY = date(2013, 10, 7)
IBM_FILE = ROOT / "quotes" / "IBM" / "2013-10-07" / "IBM.csv.gz"


@functools.cache
def raw_rows(path: Path) -> list[list[str]]:
    """The file's data rows as text: t, bp, bs, ap, as."""
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["t", "bp", "bs", "ap", "as"]
    return rows[1:]


def ts(t: str) -> datetime:
    """YYYY-MM-DDTHH:MM:SS.mmmZ, cut by position."""
    assert len(t) == 24 and t[10] == "T" and t[-1] == "Z"
    ymd = int(t[0:4]), int(t[5:7]), int(t[8:10])
    hms = int(t[11:13]), int(t[14:16]), int(t[17:19])
    return datetime(*ymd, *hms, int(t[20:23]) * 1000, tzinfo=UTC)


def as_row(q: Quote) -> list[str]:
    """A quote written back as the file's text (Decimal keeps the digits it was given)."""
    t = q.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [t, str(q.bid), str(q.bid_size), str(q.ask), str(q.ask_size)]


def as_quote(symbol: str, row: list[str]) -> Quote:
    t, bp, bs, ap, asz = row
    return Quote(symbol, ts(t), Decimal(bp), Decimal(ap), int(bs), int(asz))


@pytest.fixture(scope="module")
def archive() -> RecordedArchive:
    return RecordedArchive()


def test_default_root_is_the_packaged_data_dir() -> None:
    assert (ROOT / "README.md").is_file()
    assert (ROOT / "quotes").is_dir() and (ROOT / "corporate_actions").is_dir()


def test_index_matches_the_directory_tree(archive: RecordedArchive) -> None:
    quotes = ROOT / "quotes"
    underlyings = sorted(p.name for p in quotes.iterdir() if p.is_dir())
    assert archive.underlyings() == underlyings == ["AAPL", "GOOG", "IBM", "SPY"]
    days = sorted({date.fromisoformat(d.name) for u in quotes.iterdir() for d in u.iterdir()})
    assert archive.days() == days
    assert archive.days("IBM") == [date(2013, 10, 7), date(2013, 10, 8)]
    goog_files = sorted(
        f.name.removesuffix(".csv.gz") for f in (quotes / "GOOG" / "2015-12-24").iterdir()
    )
    assert archive.symbols(date(2015, 12, 24)) == goog_files
    assert len(goog_files) == 1841
    assert archive.symbols(date(2013, 10, 7)) == ["IBM", "SPY"]
    assert archive.symbols(date(2013, 10, 7), underlying="SPY") == ["SPY"]
    assert archive.underlying_of("GOOG151224C00600000", date(2015, 12, 24)) == "GOOG"


def test_load_ibm_day_matches_the_file_row_for_row(archive: RecordedArchive) -> None:
    rows = raw_rows(IBM_FILE)
    quotes = archive.load("IBM", IBM_DAY)
    assert len(quotes) == len(rows) == 46112
    assert [as_row(q) for q in quotes] == rows
    # the first row, by eye from the file: 2013-10-07T08:00:00.241Z,180.01,300,183.63,100
    assert quotes[0] == Quote(
        "IBM", datetime(2013, 10, 7, 8, 0, 0, 241000, UTC), Decimal("180.01"),
        Decimal("183.63"), 300, 100,
    )  # fmt: skip
    assert all(type(q.bid) is Decimal and q.ts.utcoffset() == timedelta(0) for q in quotes)
    assert all(a.ts <= b.ts for a, b in zip(quotes, quotes[1:], strict=False))
    # the directory is the New York trading day: its last row is stamped on the next UTC date
    assert quotes[-1].ts == datetime(2013, 10, 8, 0, 0, 0, 122000, UTC)


def test_load_is_cached_and_returns_a_fresh_list(archive: RecordedArchive) -> None:
    a = archive.load("IBM", IBM_DAY)
    b = archive.load("IBM", IBM_DAY)
    assert a == b and a is not b
    assert archive.load_shared("IBM", IBM_DAY) is archive.load_shared("IBM", IBM_DAY)
    a.clear()
    assert len(archive.load("IBM", IBM_DAY)) == 46112


def test_unknown_symbol_or_day(archive: RecordedArchive) -> None:
    with pytest.raises(KeyError, match="IBM on 2013-10-09"):
        archive.load("IBM", date(2013, 10, 9))
    assert not archive.has("MSFT", IBM_DAY)


def test_quotes_between_crosses_the_day_files(archive: RecordedArchive) -> None:
    start = datetime(2013, 10, 7, 19, 59, 0, tzinfo=UTC)
    end = datetime(2013, 10, 8, 13, 31, 0, tzinfo=UTC)
    # the fixed-width timestamps sort as text
    lo, hi = "2013-10-07T19:59:00.000Z", "2013-10-08T13:31:00.000Z"
    expected = [
        r
        for day in ("2013-10-07", "2013-10-08")
        for r in raw_rows(ROOT / "quotes" / "IBM" / day / "IBM.csv.gz")
        if lo <= r[0] < hi
    ]
    got = archive.quotes_between("IBM", start, end)
    assert [as_row(q) for q in got] == expected
    assert {q.ts.date() for q in got} == {date(2013, 10, 7), date(2013, 10, 8)}
    assert archive.quotes_between("IBM", end, end) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        archive.quotes_between("IBM", start.replace(tzinfo=None), end)


def test_parse_errors_name_the_line() -> None:
    with pytest.raises(RecordedFileError, match="header"):
        parse_quote_csv("X", "time,bid,ask\n")
    bad_ts = "t,bp,bs,ap,as\n2013-10-07T08:00:00.241Z,1,1,2,1\n2013-10-07 08:00:01,1,1,2,1\n"
    with pytest.raises(RecordedFileError, match="<text>:3"):
        parse_quote_csv("X", bad_ts)
    with pytest.raises(RecordedFileError, match="f.csv:2"):
        parse_quote_csv("X", "t,bp,bs,ap,as\n2013-10-07T08:00:00.241Z,1,x,2,1\n", source="f.csv")


def test_a_custom_root(tmp_path: Path) -> None:
    day_dir = tmp_path / "quotes" / "ABC" / "2020-01-02"
    day_dir.mkdir(parents=True)
    with gzip.open(day_dir / "ABC.csv.gz", "wt") as fh:
        fh.write("t,bp,bs,ap,as\n2020-01-02T15:00:00.000Z,0,0,0.05,10\n")
    archive = RecordedArchive(tmp_path)
    assert archive.days() == [date(2020, 1, 2)]
    assert archive.load("ABC", date(2020, 1, 2)) == [
        Quote("ABC", datetime(2020, 1, 2, 15, tzinfo=UTC), Decimal(0), Decimal("0.05"), 0, 10)
    ]
    with pytest.raises(FileNotFoundError):
        RecordedArchive(tmp_path / "nowhere").days()


# -- corporate actions --------------------------------------------------------------------------


class WeekdayCalendar:
    """Every weekday is a session (enough for synthetic factor files)."""

    def session_bounds(self, d: date) -> tuple[datetime, datetime] | None:
        if d.weekday() >= 5:
            return None
        return (datetime(d.year, d.month, d.day, 14, 30, tzinfo=UTC),) * 2


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar(start=date(1998, 1, 1), end=date(2025, 12, 31))


@pytest.fixture(scope="module")
def aapl(calendar: MarketCalendar) -> list[CashDividend | Split]:
    return load_corporate_actions("AAPL", calendar=calendar)


def test_aapl_dividend_of_2013_05_09(aapl: list[CashDividend | Split]) -> None:
    # README: row R = 20130508,0.8740796,0.03571430,463.84; next row N = 20130807,0.8798652,...
    # dividend = 463.84 * (1 - 0.8740796 / 0.8798652) = 463.84 * 0.006575...= 3.0500... -> $3.05,
    # ex-date = the first trading day after 2013-05-08 = Thursday 2013-05-09.
    by_hand = Decimal("463.84") * (1 - Decimal("0.8740796") / Decimal("0.8798652"))
    assert by_hand.quantize(Decimal("0.01"), ROUND_HALF_UP) == Decimal("3.05")
    assert CashDividend("AAPL", date(2013, 5, 9), Decimal("3.05")) in aapl


def test_aapl_seven_for_one_split(aapl: list[CashDividend | Split]) -> None:
    # R = 20140606 (split_factor 0.0357143, i.e. 1/28 printed to 7 places), N = 20140806 (0.25):
    # 0.25 / 0.0357143 = 6.99999720..., which is 7 within the printed factors' rounding.
    # Friday 2014-06-06 -> ex-date Monday 2014-06-09, the day the archive's AAPL prices drop ~7x.
    splits = [e for e in aapl if isinstance(e, Split)]
    assert Split("AAPL", date(2014, 6, 9), Fraction(7)) in splits
    assert [s.ratio for s in splits] == [Fraction(2), Fraction(2), Fraction(7), Fraction(4)]
    assert all(isinstance(e.amount, Decimal) for e in aapl if isinstance(e, CashDividend))
    assert aapl == sorted(aapl, key=lambda e: e.ex_date)


def test_ibm_two_for_one_split_in_1999(calendar: MarketCalendar) -> None:
    # 19990526,...,0.5 -> 19990805,...,1: 1 / 0.5 = 2 new shares per old, ex Thursday 1999-05-27
    events = load_corporate_actions("IBM", calendar=calendar)
    assert Split("IBM", date(1999, 5, 27), Fraction(2)) in events


def test_ex_date_skips_weekends_and_holidays(calendar: MarketCalendar) -> None:
    # 2013-11-27 (Wed) -> 2013-11-28 is Thanksgiving -> Friday 2013-11-29
    rows = [
        FactorRow(date(2013, 11, 27), Decimal("0.99"), Decimal(1), Decimal("100")),
        FactorRow(date(2050, 12, 31), Decimal(1), Decimal(1), Decimal(0)),
    ]
    # 100 * (1 - 0.99 / 1) = 1.00
    assert corporate_actions("X", rows, calendar) == [
        CashDividend("X", date(2013, 11, 29), Decimal("1.00"))
    ]


def test_dividend_rounds_half_up_and_unchanged_rows_give_nothing() -> None:
    text = "20200102,0.9,1,10.05\n20200103,0.9,1,10\n20200106,1,1,0\n"
    # 20200103 (Fri) -> ex Monday 2020-01-06: 10 * (1 - 0.9 / 1) = 1.00
    assert corporate_actions("X", parse_factor_file(text), WeekdayCalendar()) == [
        CashDividend("X", date(2020, 1, 6), Decimal("1.00"))
    ]
    half = "20200102,0.9975,1,2\n20200103,1,1,0\n"  # 2 * 0.0025 = 0.005, half up -> 0.01
    assert corporate_actions("X", parse_factor_file(half), WeekdayCalendar()) == [
        CashDividend("X", date(2020, 1, 3), Decimal("0.01"))
    ]


def test_factor_file_errors() -> None:
    assert load_corporate_actions("NOPE") == []  # no file: no events, no calendar built
    with pytest.raises(ValueError, match="f:2"):
        parse_factor_file("20200102,1,1,1\n2020-01-03,1,1,1\n", source="f")
    with pytest.raises(ValueError, match="sorted"):
        parse_factor_file("20200103,1,1,1\n20200102,1,1,1\n")
    with pytest.raises(ValueError, match="positive"):
        parse_factor_file("20200103,0,1,1\n")


def test_reading_the_file_matches_csv(aapl: list[CashDividend | Split]) -> None:
    text = (ROOT / "corporate_actions" / "AAPL.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    changes = sum(
        (r[1] != n[1]) + (Decimal(r[2]) != Decimal(n[2]))
        for r, n in zip(rows, rows[1:], strict=False)
    )
    assert len(aapl) == changes
