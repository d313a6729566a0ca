"""The NYSE calendar: sessions, early closes, holidays, and the cached window used per quote."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.conventions.calendar import MarketCalendar


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def cal() -> MarketCalendar:
    return MarketCalendar()


@pytest.mark.parametrize(
    ("day", "bounds"),
    [
        # 09:30-16:00 EDT
        (date(2013, 10, 7), ("2013-10-07T13:30:00", "2013-10-07T20:00:00")),
        # 09:30-16:00 EST
        (date(2013, 11, 26), ("2013-11-26T14:30:00", "2013-11-26T21:00:00")),
        # early closes at 13:00 ET: the day after Thanksgiving, Christmas Eve, July 3rd
        (date(2013, 11, 29), ("2013-11-29T14:30:00", "2013-11-29T18:00:00")),
        (date(2015, 12, 24), ("2015-12-24T14:30:00", "2015-12-24T18:00:00")),
        (date(2013, 7, 3), ("2013-07-03T13:30:00", "2013-07-03T17:00:00")),
    ],
)
def test_session_bounds(cal: MarketCalendar, day: date, bounds: tuple[str, str]) -> None:
    assert cal.session_bounds(day) == (utc(bounds[0]), utc(bounds[1]))
    open_, close = cal.session_bounds(day)  # type: ignore[misc]
    assert open_.tzinfo is UTC and close.tzinfo is UTC


@pytest.mark.parametrize(
    "day",
    [date(2013, 11, 28), date(2015, 12, 25), date(2013, 10, 5), date(2013, 10, 6)],
)
def test_no_session_on_holidays_and_weekends(cal: MarketCalendar, day: date) -> None:
    assert cal.session_bounds(day) is None


def test_is_open_is_half_open_at_the_bell(cal: MarketCalendar) -> None:
    assert not cal.is_open(utc("2013-10-07T13:29:59.999"))
    assert cal.is_open(utc("2013-10-07T13:30:00"))
    assert cal.is_open(utc("2013-10-07T19:59:59.999"))
    assert not cal.is_open(utc("2013-10-07T20:00:00"))
    assert not cal.is_open(utc("2013-11-29T18:00:00"))  # early close
    assert not cal.is_open(utc("2013-11-28T16:00:00"))  # Thanksgiving


def test_accepts_any_aware_timezone_and_refuses_naive(cal: MarketCalendar) -> None:
    ny = ZoneInfo("America/New_York")
    assert cal.is_open(datetime(2013, 10, 7, 9, 30, tzinfo=ny))
    assert not cal.is_open(datetime(2013, 10, 7, 16, 0, tzinfo=ny))
    with pytest.raises(ValueError):
        cal.is_open(datetime(2013, 10, 7, 14, 0))


def test_session_close_after(cal: MarketCalendar) -> None:
    assert cal.session_close_after(utc("2013-10-07T15:00:00")) == utc("2013-10-07T20:00:00")
    assert cal.session_close_after(utc("2015-12-24T15:00:00")) == utc("2015-12-24T18:00:00")
    assert cal.session_close_after(utc("2013-10-07T21:00:00")) is None
    assert cal.session_close_after(utc("2013-10-07T12:00:00")) is None


def test_next_open(cal: MarketCalendar) -> None:
    # Friday evening -> Monday; Wednesday before Thanksgiving -> Friday; at the open -> itself.
    assert cal.next_open(utc("2013-10-04T21:00:00")) == utc("2013-10-07T13:30:00")
    assert cal.next_open(utc("2013-11-27T21:30:00")) == utc("2013-11-29T14:30:00")
    assert cal.next_open(utc("2013-10-07T13:30:00")) == utc("2013-10-07T13:30:00")
    assert cal.next_open(utc("2013-10-07T13:30:00.001")) == utc("2013-10-08T13:30:00")


def test_session_window(cal: MarketCalendar) -> None:
    assert cal.session_window(utc("2013-10-07T15:00:00")) == (
        utc("2013-10-07T13:30:00"),
        utc("2013-10-07T20:00:00"),
        True,
    )
    # Closed from Wednesday's close to Friday's open across Thanksgiving.
    assert cal.session_window(utc("2013-11-28T12:00:00")) == (
        utc("2013-11-27T21:00:00"),
        utc("2013-11-29T14:30:00"),
        False,
    )
    assert cal.session_window(utc("2013-10-07T20:00:00"))[2] is False


def test_day_order_expiry(cal: MarketCalendar) -> None:
    assert cal.day_order_expiry(utc("2013-10-07T15:00:00")) == utc("2013-10-07T20:00:00")
    assert cal.day_order_expiry(utc("2013-10-07T22:00:00")) == utc("2013-10-08T20:00:00")
    assert cal.day_order_expiry(utc("2013-11-28T16:00:00")) == utc("2013-11-29T18:00:00")
