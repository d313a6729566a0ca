"""Investor profiles and tiers (seeds §14, BRIEF §5)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Tier(StrEnum):
    FREE = "free"
    PRO = "pro"
    PRO_PLUS = "pro_plus"


@dataclass(frozen=True)
class InvestorProfile:
    name: str
    starting_cash: Decimal
    fill_preference: str


PROFILES: dict[str, InvestorProfile] = {
    "trial": InvestorProfile("trial", Decimal("10000"), "conservative"),
    "income_builder": InvestorProfile("income_builder", Decimal("50000"), "mid"),
    "diversifier": InvestorProfile("diversifier", Decimal("100000"), "aggressive"),
}
DEFAULT_PROFILE = "diversifier"

# The most starting cash a user may choose, per tier.
STARTING_CASH_CAP: dict[Tier, Decimal] = {
    Tier.FREE: Decimal("100000"),
    Tier.PRO: Decimal("1000000"),
    Tier.PRO_PLUS: Decimal("10000000"),
}


class ProfileError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def starting_cash(profile: str, tier: Tier, override: Decimal | None) -> Decimal:
    """The profile's starting cash, or a user override within the tier's cap."""
    if profile not in PROFILES:
        raise ProfileError("profile", f"unknown profile {profile!r}; one of {sorted(PROFILES)}")
    if override is None:
        return PROFILES[profile].starting_cash
    if override <= 0:
        raise ProfileError("starting_cash", "must be positive")
    cap = STARTING_CASH_CAP[tier]
    if override > cap:
        raise ProfileError("starting_cash", f"{override} exceeds the {tier.value} tier cap {cap}")
    return override
