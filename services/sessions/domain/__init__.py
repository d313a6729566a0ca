"""Sessions domain: passkey ceremonies (pure; no storage, no transport)."""

from services.sessions.domain.passkeys import (
    PasskeyRejected,
    RegisteredPasskey,
    begin_login,
    begin_registration,
    credential_id_of,
    finish_login,
    finish_registration,
    user_handle_of,
)

__all__ = [
    "PasskeyRejected",
    "RegisteredPasskey",
    "begin_login",
    "begin_registration",
    "credential_id_of",
    "finish_login",
    "finish_registration",
    "user_handle_of",
]
