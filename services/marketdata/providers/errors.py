"""Errors a market-data provider raises to the service.

    ProviderError
     ├── ProviderConfigError   settings missing or malformed (also a ValueError)
     ├── ProviderAuthError     the data vendor refused the credentials
     └── ProviderStreamError   the live stream ended on its own (not by cancellation)

Messages name the key id at most, never a secret.
"""

from __future__ import annotations

__all__ = ["ProviderAuthError", "ProviderConfigError", "ProviderError", "ProviderStreamError"]


class ProviderError(Exception):
    """A market-data provider failed."""


class ProviderConfigError(ProviderError, ValueError):
    """The provider's settings are missing or malformed."""


class ProviderAuthError(ProviderError):
    """The vendor rejected the credentials; retrying with the same ones cannot help."""


class ProviderStreamError(ProviderError):
    """The live stream stopped for a reason other than the caller cancelling it."""
