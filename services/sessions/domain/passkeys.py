"""WebAuthn ceremonies for the relying party, wrapped around py_webauthn.

Pure: no storage, no transport. The caller stores each challenge server-side, consumes it
(deletes it) *before* calling a ``finish_*`` function so a failed attempt burns it too, looks the
credential row up by :func:`credential_id_of`, checks that the row belongs to the expected user
(py_webauthn never checks ownership), and stores the returned sign count.

Every failure raises :class:`PasskeyRejected`; its reason names the problem and never carries key
material, challenges or client data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import InvalidJSONStructure, WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

SUPPORTED_ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
# A credential response is a few KiB at most; refuse to parse anything far larger.
MAX_CREDENTIAL_JSON_CHARS = 64 * 1024
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn L3 §7.1: longer ids must be rejected

# py_webauthn signals every failure with a message; map the ones we rely on to stable reasons.
_REASONS = (
    ("challenge was not expected challenge", "challenge mismatch"),
    ("Unexpected client data origin", "origin mismatch"),
    ("Unexpected client data type", "wrong ceremony type"),
    ("Unexpected RP ID hash", "unexpected RP ID hash"),
    ("User verification is required", "user verification required"),
    ("User was not present", "user presence required"),
    ("User presence was required", "user presence required"),
    ("Could not verify authentication signature", "signature invalid"),
    ("was not greater than current count", "sign count regression"),
    ("Unsupported credential public key alg", "unsupported public key algorithm"),
    ("id and raw_id were not equivalent", "malformed credential JSON"),
    ("was malformed", "malformed credential JSON"),
    ("Could not parse", "malformed credential JSON"),
)


class PasskeyRejected(Exception):
    """A passkey ceremony failed; ``reason`` says why (e.g. "challenge mismatch")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RegisteredPasskey:
    """What the relying party stores for a newly registered credential."""

    credential_id: bytes
    public_key: bytes  # COSE-encoded
    sign_count: int
    transports: list[str]
    aaguid: str
    user_verified: bool


def _descriptors(credential_ids: list[bytes]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=cid) for cid in credential_ids]


def _rejection(exc: Exception) -> PasskeyRejected:
    if isinstance(exc, InvalidJSONStructure):
        return PasskeyRejected("malformed credential JSON")
    message = str(exc)
    for fragment, reason in _REASONS:
        if fragment in message:
            return PasskeyRejected(reason)
    if isinstance(exc, WebAuthnException):
        return PasskeyRejected(f"credential rejected: {message}")
    return PasskeyRejected("malformed credential")


def _parse(credential_json: str) -> dict[str, Any]:
    if len(credential_json) > MAX_CREDENTIAL_JSON_CHARS:
        raise PasskeyRejected("malformed credential JSON: too large")
    try:
        parsed = json.loads(credential_json)
    except ValueError:
        raise PasskeyRejected("malformed credential JSON") from None
    if not isinstance(parsed, dict):
        raise PasskeyRejected("malformed credential JSON")
    return parsed


def _require_challenge(challenge: bytes) -> None:
    if not challenge:
        raise PasskeyRejected("challenge mismatch: no challenge was issued")


def begin_registration(
    *,
    rp_id: str,
    rp_name: str,
    user_name: str,
    user_handle: bytes,
    exclude_credential_ids: list[bytes],
) -> tuple[str, bytes]:
    """Return (options JSON for the client, challenge to store server-side).

    Asks for a discoverable credential with user verification and no attestation;
    ``exclude_credential_ids`` stops the user registering one authenticator twice.
    """
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_name=user_name,
        user_id=user_handle,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(exclude_credential_ids),
        supported_pub_key_algs=SUPPORTED_ALGORITHMS,
    )
    return options_to_json(options), options.challenge


def finish_registration(
    *, credential_json: str, challenge: bytes, rp_id: str, origin: str
) -> RegisteredPasskey:
    """Verify a registration response against the stored challenge, RP ID and exact origin.

    User verification is required. The caller must still refuse a credential id that is
    already registered (to anyone).
    """
    _require_challenge(challenge)
    body = _parse(credential_json)
    try:
        credential = parse_registration_credential_json(body)
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
            supported_pub_key_algs=SUPPORTED_ALGORITHMS,
        )
    except Exception as exc:  # py_webauthn raises several unrelated types on bad input
        raise _rejection(exc) from None
    if verified.credential_id != credential.raw_id:
        raise PasskeyRejected("malformed credential JSON: rawId differs from the attested id")
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise PasskeyRejected("credential id too long")
    # The verified result lacks transports; they come from the request (security.md §1).
    transports = [t.value for t in credential.response.transports or []]
    return RegisteredPasskey(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=transports,
        aaguid=verified.aaguid,
        user_verified=verified.user_verified,
    )


def begin_login(
    *, rp_id: str, allow_credential_ids: list[bytes], challenge: bytes | None = None
) -> tuple[str, bytes]:
    """Return (options JSON for the client, challenge to store server-side); UV is required.

    An empty ``allow_credential_ids`` asks for any discoverable credential (usernameless login).
    ``challenge`` (default: 64 random bytes) lets a step-up carry the digest of what it approves.
    """
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=_descriptors(allow_credential_ids),
        user_verification=UserVerificationRequirement.REQUIRED,
        challenge=challenge,
    )
    return options_to_json(options), options.challenge


def credential_id_of(credential_json: str) -> bytes:
    """Return the raw credential id of a response, to load its row before verifying it."""
    body = _parse(credential_json)
    raw_id, claimed_id = body.get("rawId"), body.get("id")
    if not isinstance(raw_id, str) or not raw_id or raw_id != claimed_id:
        raise PasskeyRejected("malformed credential JSON: id/rawId")
    try:
        credential_id = base64url_to_bytes(raw_id)
    except ValueError:
        raise PasskeyRejected("malformed credential JSON: rawId is not base64url") from None
    if bytes_to_base64url(credential_id) != raw_id:
        raise PasskeyRejected("malformed credential JSON: rawId is not canonical base64url")
    return credential_id


def user_handle_of(credential_json: str) -> bytes | None:
    """Return the assertion's userHandle (None if absent), to cross-check the row's owner."""
    response = _parse(credential_json).get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    if handle is None or handle == "":
        return None
    if not isinstance(handle, str):
        raise PasskeyRejected("malformed credential JSON: userHandle")
    try:
        return base64url_to_bytes(handle)
    except ValueError:
        raise PasskeyRejected("malformed credential JSON: userHandle") from None


def finish_login(
    *,
    credential_json: str,
    challenge: bytes,
    rp_id: str,
    origin: str,
    public_key: bytes,
    sign_count: int,
) -> int:
    """Verify an assertion with the stored public key; return the new sign count to store.

    User verification is required. A counter that does not move forward is rejected unless both
    sides report 0 (synced passkeys do).
    """
    _require_challenge(challenge)
    body = _parse(credential_json)
    try:
        verified = verify_authentication_response(
            credential=body,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=public_key,
            credential_current_sign_count=sign_count,
            require_user_verification=True,
        )
    except Exception as exc:  # py_webauthn raises several unrelated types on bad input
        raise _rejection(exc) from None
    return verified.new_sign_count
