"""Fixtures for the matching-engine tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.conventions.calendar import MarketCalendar
from services.orders.domain import EngineConfig, MatchingEngine
from tests.unit.orders.matching_support import shared_calendar


@pytest.fixture(scope="session")
def calendar() -> MarketCalendar:
    return shared_calendar()


@pytest.fixture
def engine(calendar: MarketCalendar) -> MatchingEngine:
    return MatchingEngine(calendar)


@pytest.fixture
def make_engine(calendar: MarketCalendar) -> Callable[..., MatchingEngine]:
    def make(**config: Any) -> MatchingEngine:
        return MatchingEngine(calendar, EngineConfig(**config))

    return make
