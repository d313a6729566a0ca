"""The accounts context's domain: investor profiles, the cash ledger and positions (pure).

Modules, each one idea: ``money`` (where cash is rounded), ``instruments``, ``ledger`` (average
cost fills), ``settlement`` (T+1 cash), ``holds``, ``margin`` (Reg-T), ``option_margin``
(strategy requirements), ``actions`` (dividends, splits), ``interest`` (margin interest),
``valuation`` (EOD snapshots, P&L windows, portfolio history), ``account`` (the aggregate),
``errors`` and ``profiles``.
"""

from services.accounts.domain.account import (
    AccountLedger,
    AccountType,
    Activity,
    ActivityType,
    Fill,
)
from services.accounts.domain.errors import (
    InsufficientBuyingPower,
    InsufficientQuantity,
    LedgerError,
    MissingMark,
)
from services.accounts.domain.holds import BuyingPowerHold
from services.accounts.domain.instruments import (
    Equity,
    Instrument,
    MarkedPosition,
    OptionContract,
    OptionRight,
)
from services.accounts.domain.ledger import FillEffect, Holding, PositionState, apply_fill
from services.accounts.domain.margin import REG_T, MarginRates, MarginSummary
from services.accounts.domain.settlement import CashBalance, PendingSettlement
from services.accounts.domain.valuation import EodSnapshot, PortfolioHistory, WindowPnl

__all__ = [
    "REG_T",
    "AccountLedger",
    "AccountType",
    "Activity",
    "ActivityType",
    "BuyingPowerHold",
    "CashBalance",
    "EodSnapshot",
    "Equity",
    "Fill",
    "FillEffect",
    "Holding",
    "InsufficientBuyingPower",
    "InsufficientQuantity",
    "Instrument",
    "LedgerError",
    "MarginRates",
    "MarginSummary",
    "MarkedPosition",
    "MissingMark",
    "OptionContract",
    "OptionRight",
    "PendingSettlement",
    "PortfolioHistory",
    "PositionState",
    "WindowPnl",
    "apply_fill",
]
