"""Passkey ceremonies end to end: the CLI's soft passkey against py_webauthn's verification."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.webauthn import AttestationObject, AuthenticatorData, CollectedClientData
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from mbt.passkey import SoftPasskey
from services.sessions.domain import (
    PasskeyRejected,
    RegisteredPasskey,
    begin_login,
    begin_registration,
    credential_id_of,
    finish_login,
    finish_registration,
    user_handle_of,
)

RP_ID = "mbt.raxx.dev"
ORIGIN = "https://mbt.raxx.dev"
FLAG = AuthenticatorData.FLAG


def _registration_options(*exclude: bytes) -> tuple[str, bytes]:
    return begin_registration(
        rp_id=RP_ID,
        rp_name="MBT",
        user_name="pat@example.com",
        user_handle=b"\x01" * 64,
        exclude_credential_ids=list(exclude),
    )


def _register(passkey: SoftPasskey) -> RegisteredPasskey:
    options, challenge = _registration_options()
    credential = passkey.create(options, ORIGIN)
    return finish_registration(
        credential_json=credential, challenge=challenge, rp_id=RP_ID, origin=ORIGIN
    )


def _login(
    passkey: SoftPasskey, stored: RegisteredPasskey, sign_count: int | None = None, **overrides: Any
) -> int:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[stored.credential_id])
    arguments: dict[str, Any] = {
        "credential_json": passkey.get(options, ORIGIN),
        "challenge": challenge,
        "rp_id": RP_ID,
        "origin": ORIGIN,
        "public_key": stored.public_key,
        "sign_count": stored.sign_count if sign_count is None else sign_count,
    }
    return finish_login(**{**arguments, **overrides})


def _edit_response(credential_json: str, edit: Callable[[dict[str, Any]], None]) -> str:
    credential = json.loads(credential_json)
    edit(credential["response"])
    return json.dumps(credential)


def _resign_assertion(passkey: SoftPasskey, assertion_json: str, flags: FLAG) -> str:
    """Rebuild the authenticator data with ``flags`` and sign it validly with the passkey's key."""

    def edit(response: dict[str, Any]) -> None:
        old = AuthenticatorData(base64url_to_bytes(response["authenticatorData"]))
        new = AuthenticatorData.create(old.rp_id_hash, flags, old.counter)
        client_hash = hashlib.sha256(base64url_to_bytes(response["clientDataJSON"])).digest()
        signature = passkey.private_key.sign(bytes(new) + client_hash, ec.ECDSA(hashes.SHA256()))
        response["authenticatorData"] = bytes_to_base64url(new)
        response["signature"] = bytes_to_base64url(signature)

    return _edit_response(assertion_json, edit)


@pytest.fixture
def passkey() -> SoftPasskey:
    return SoftPasskey.generate()


@pytest.fixture
def stored(passkey: SoftPasskey) -> RegisteredPasskey:
    return _register(passkey)


# --- options -------------------------------------------------------------------------------


def test_registration_options_require_a_discoverable_user_verified_credential() -> None:
    existing = os.urandom(32)
    options_json, challenge = _registration_options(existing)
    options = json.loads(options_json)
    assert options["rp"] == {"name": "MBT", "id": RP_ID}
    assert base64url_to_bytes(options["user"]["id"]) == b"\x01" * 64
    assert base64url_to_bytes(options["challenge"]) == challenge
    assert len(challenge) >= 32
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
    assert [base64url_to_bytes(c["id"]) for c in options["excludeCredentials"]] == [existing]


def test_login_options_require_user_verification() -> None:
    allowed = os.urandom(32)
    options_json, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[allowed])
    options = json.loads(options_json)
    assert options["rpId"] == RP_ID
    assert options["userVerification"] == "required"
    assert base64url_to_bytes(options["challenge"]) == challenge
    assert [base64url_to_bytes(c["id"]) for c in options["allowCredentials"]] == [allowed]


def test_each_ceremony_gets_a_fresh_challenge() -> None:
    assert _registration_options()[1] != _registration_options()[1]
    assert (
        begin_login(rp_id=RP_ID, allow_credential_ids=[])[1]
        != (begin_login(rp_id=RP_ID, allow_credential_ids=[])[1])
    )


# --- the happy path ------------------------------------------------------------------------


def test_register_then_log_in_twice(passkey: SoftPasskey, stored: RegisteredPasskey) -> None:
    assert stored.credential_id == passkey.credential_id
    assert stored.sign_count == 0
    assert stored.transports == ["internal"]
    assert stored.aaguid == "00000000-0000-0000-0000-000000000000"
    assert stored.user_verified is True

    first = _login(passkey, stored)
    second = _login(passkey, stored, sign_count=first)
    assert (first, second) == (1, 2)


def test_usernameless_login_identifies_the_credential_and_its_user(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    assertion = passkey.get(options, ORIGIN)
    assert credential_id_of(assertion) == stored.credential_id
    assert user_handle_of(assertion) == b"\x01" * 64
    new_count = finish_login(
        credential_json=assertion,
        challenge=challenge,
        rp_id=RP_ID,
        origin=ORIGIN,
        public_key=stored.public_key,
        sign_count=stored.sign_count,
    )
    assert new_count == 1


# --- registration rejected -----------------------------------------------------------------


def _finish_registration_with(passkey: SoftPasskey, **overrides: Any) -> RegisteredPasskey:
    options, challenge = _registration_options()
    arguments: dict[str, Any] = {
        "credential_json": passkey.create(options, ORIGIN),
        "challenge": challenge,
        "rp_id": RP_ID,
        "origin": ORIGIN,
    }
    return finish_registration(**{**arguments, **overrides})


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"challenge": os.urandom(64)}, "challenge mismatch"),
        ({"challenge": b""}, "challenge mismatch: no challenge was issued"),
        ({"origin": "https://mbt.raxx.dev:8443"}, "origin mismatch"),
        ({"origin": "http://mbt.raxx.dev"}, "origin mismatch"),
        ({"rp_id": "raxx.dev"}, "unexpected RP ID hash"),
        ({"credential_json": "{not json"}, "malformed credential JSON"),
        ({"credential_json": "[]"}, "malformed credential JSON"),
        ({"credential_json": '{"id": "AA", "rawId": "AA"}'}, "malformed credential JSON"),
    ],
)
def test_registration_is_rejected(
    passkey: SoftPasskey, overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PasskeyRejected) as caught:
        _finish_registration_with(passkey, **overrides)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_registration_response_replayed_for_another_challenge_is_rejected(
    passkey: SoftPasskey,
) -> None:
    options, _ = _registration_options()
    credential = passkey.create(options, ORIGIN)
    _, second_challenge = _registration_options()
    with pytest.raises(PasskeyRejected, match="challenge mismatch"):
        finish_registration(
            credential_json=credential, challenge=second_challenge, rp_id=RP_ID, origin=ORIGIN
        )


def test_registration_without_user_verification_is_rejected(passkey: SoftPasskey) -> None:
    options, challenge = _registration_options()

    def drop_uv(response: dict[str, Any]) -> None:
        attestation = AttestationObject(base64url_to_bytes(response["attestationObject"]))
        auth_data = attestation.auth_data
        assert auth_data.credential_data is not None
        stripped = AuthenticatorData.create(
            auth_data.rp_id_hash,
            auth_data.flags & ~FLAG.UV,
            auth_data.counter,
            auth_data.credential_data,
        )
        response["attestationObject"] = bytes_to_base64url(
            AttestationObject.create("none", stripped, {})
        )

    credential = _edit_response(passkey.create(options, ORIGIN), drop_uv)
    with pytest.raises(PasskeyRejected, match="user verification required"):
        finish_registration(
            credential_json=credential, challenge=challenge, rp_id=RP_ID, origin=ORIGIN
        )


def test_a_login_assertion_is_not_a_registration(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    with pytest.raises(PasskeyRejected, match="malformed credential JSON"):
        finish_registration(
            credential_json=passkey.get(options, ORIGIN),
            challenge=challenge,
            rp_id=RP_ID,
            origin=ORIGIN,
        )


# --- login rejected ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"challenge": os.urandom(64)}, "challenge mismatch"),
        ({"challenge": b""}, "challenge mismatch: no challenge was issued"),
        ({"origin": "https://evil.example"}, "origin mismatch"),
        ({"origin": "https://mbt.raxx.dev:8443"}, "origin mismatch"),
        ({"origin": "http://mbt.raxx.dev"}, "origin mismatch"),
        ({"rp_id": "raxx.dev"}, "unexpected RP ID hash"),
        ({"rp_id": "evil.example"}, "unexpected RP ID hash"),
        ({"public_key": b"\xa0"}, "malformed credential"),
        ({"credential_json": "{not json"}, "malformed credential JSON"),
        ({"credential_json": json.dumps({"id": "AA", "rawId": "AA"})}, "malformed credential JSON"),
    ],
)
def test_login_is_rejected(
    passkey: SoftPasskey, stored: RegisteredPasskey, overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PasskeyRejected) as caught:
        _login(passkey, stored, **overrides)
    assert caught.value.reason == reason


def test_replayed_assertion_is_rejected(passkey: SoftPasskey, stored: RegisteredPasskey) -> None:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[stored.credential_id])
    assertion = passkey.get(options, ORIGIN)
    common: dict[str, Any] = {"rp_id": RP_ID, "origin": ORIGIN, "public_key": stored.public_key}
    new_count = finish_login(credential_json=assertion, challenge=challenge, sign_count=0, **common)

    _, next_challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[stored.credential_id])
    with pytest.raises(PasskeyRejected, match="challenge mismatch"):
        finish_login(
            credential_json=assertion, challenge=next_challenge, sign_count=new_count, **common
        )
    # Even if the RP failed to burn the challenge, the stored counter stops the replay.
    with pytest.raises(PasskeyRejected, match="sign count regression"):
        finish_login(credential_json=assertion, challenge=challenge, sign_count=new_count, **common)


def test_tampered_client_data_breaks_the_signature(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])

    def add_field(response: dict[str, Any]) -> None:
        client_data = json.loads(base64url_to_bytes(response["clientDataJSON"]))
        client_data["crossOrigin"] = True  # challenge and origin stay valid
        response["clientDataJSON"] = bytes_to_base64url(json.dumps(client_data).encode())

    assertion = _edit_response(passkey.get(options, ORIGIN), add_field)
    with pytest.raises(PasskeyRejected, match="signature invalid"):
        finish_login(
            credential_json=assertion,
            challenge=challenge,
            rp_id=RP_ID,
            origin=ORIGIN,
            public_key=stored.public_key,
            sign_count=0,
        )


def test_client_data_for_registration_is_not_a_login(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    forged = CollectedClientData.create("webauthn.create", challenge, ORIGIN)
    assertion = _edit_response(
        passkey.get(options, ORIGIN),
        lambda r: r.update(clientDataJSON=bytes_to_base64url(forged)),
    )
    with pytest.raises(PasskeyRejected, match="wrong ceremony type"):
        finish_login(
            credential_json=assertion,
            challenge=challenge,
            rp_id=RP_ID,
            origin=ORIGIN,
            public_key=stored.public_key,
            sign_count=0,
        )


def test_a_foreign_key_claiming_the_credential_id_is_rejected(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    impostor = SoftPasskey.generate()
    impostor.credential_id = passkey.credential_id
    impostor.rp_id, impostor.user_handle = passkey.rp_id, passkey.user_handle
    with pytest.raises(PasskeyRejected, match="signature invalid"):
        _login(impostor, stored)


def test_assertion_without_user_verification_is_rejected(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    assertion = _resign_assertion(passkey, passkey.get(options, ORIGIN), FLAG.UP)
    arguments: dict[str, Any] = {
        "challenge": challenge,
        "rp_id": RP_ID,
        "origin": ORIGIN,
        "public_key": stored.public_key,
        "sign_count": 0,
    }
    with pytest.raises(PasskeyRejected, match="user verification required"):
        finish_login(credential_json=assertion, **arguments)
    # Sanity: the same re-signing with UV set is accepted, so UV alone caused the rejection.
    options, arguments["challenge"] = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    good = _resign_assertion(passkey, passkey.get(options, ORIGIN), FLAG.UP | FLAG.UV)
    assert finish_login(credential_json=good, **arguments) == 2


def test_assertion_without_user_presence_is_rejected(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    assertion = _resign_assertion(passkey, passkey.get(options, ORIGIN), FLAG.UV)
    with pytest.raises(PasskeyRejected, match="user presence required"):
        finish_login(
            credential_json=assertion,
            challenge=challenge,
            rp_id=RP_ID,
            origin=ORIGIN,
            public_key=stored.public_key,
            sign_count=0,
        )


def test_sign_count_regression_from_a_cloned_authenticator_is_rejected(
    passkey: SoftPasskey, stored: RegisteredPasskey
) -> None:
    clone = SoftPasskey(
        private_key=passkey.private_key,
        credential_id=passkey.credential_id,
        rp_id=passkey.rp_id,
        user_handle=passkey.user_handle,
        sign_count=passkey.sign_count,
    )
    count = _login(passkey, stored)
    count = _login(passkey, stored, sign_count=count)
    with pytest.raises(PasskeyRejected) as caught:
        _login(clone, stored, sign_count=count)  # the clone presents 1 after the server saw 2
    assert caught.value.reason == "sign count regression"


# --- reading a response before verifying it ------------------------------------------------


@pytest.mark.parametrize(
    "credential_json",
    [
        "",
        "null",
        "{}",
        json.dumps({"id": "AAAA", "rawId": "AAAB"}),
        json.dumps({"id": "!!!", "rawId": "!!!"}),
        json.dumps({"id": "", "rawId": ""}),
        "x" * (64 * 1024 + 1),
    ],
)
def test_credential_id_of_rejects_malformed_json(credential_json: str) -> None:
    with pytest.raises(PasskeyRejected, match="^malformed credential JSON"):
        credential_id_of(credential_json)


def test_user_handle_is_optional_in_an_assertion() -> None:
    assert user_handle_of(json.dumps({"response": {}})) is None
    with pytest.raises(PasskeyRejected, match="userHandle"):
        user_handle_of(json.dumps({"response": {"userHandle": 7}}))
