"""The CLI's software passkey: what it builds, what it refuses, and how it is stored."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.webauthn import AttestationObject, AuthenticatorData, CollectedClientData
from webauthn.helpers import base64url_to_bytes

from mbt.passkey import SoftPasskey, SoftPasskeyError
from services.sessions.domain import (
    begin_login,
    begin_registration,
    finish_login,
    finish_registration,
)

RP_ID = "mbt.raxx.dev"
ORIGIN = "https://mbt.raxx.dev"
USER_HANDLE = b"\x07" * 64
FLAG = AuthenticatorData.FLAG


def _registration_options(rp_id: str = RP_ID, *exclude: bytes) -> tuple[str, bytes]:
    return begin_registration(
        rp_id=rp_id,
        rp_name="MBT",
        user_name="pat@example.com",
        user_handle=USER_HANDLE,
        exclude_credential_ids=list(exclude),
    )


def _registered() -> tuple[SoftPasskey, bytes]:
    """A passkey registered with the server, and the public key the server stored."""
    passkey = SoftPasskey.generate()
    options, challenge = _registration_options()
    stored = finish_registration(
        credential_json=passkey.create(options, ORIGIN),
        challenge=challenge,
        rp_id=RP_ID,
        origin=ORIGIN,
    )
    return passkey, stored.public_key


def _log_in(passkey: SoftPasskey, public_key: bytes, sign_count: int) -> int:
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[passkey.credential_id])
    return finish_login(
        credential_json=passkey.get(options, ORIGIN),
        challenge=challenge,
        rp_id=RP_ID,
        origin=ORIGIN,
        public_key=public_key,
        sign_count=sign_count,
    )


def test_generate_makes_an_unregistered_p256_credential() -> None:
    passkey = SoftPasskey.generate()
    assert isinstance(passkey.private_key.curve, ec.SECP256R1)
    assert len(passkey.credential_id) == 32
    assert (passkey.rp_id, passkey.user_handle, passkey.sign_count) == (None, None, 0)
    assert SoftPasskey.generate().credential_id != passkey.credential_id


def test_create_builds_a_user_verified_attested_credential() -> None:
    passkey = SoftPasskey.generate()
    options, challenge = _registration_options()
    credential = json.loads(passkey.create(options, ORIGIN))

    assert base64url_to_bytes(credential["rawId"]) == passkey.credential_id
    assert credential["id"] == credential["rawId"]
    client_data = CollectedClientData(base64url_to_bytes(credential["response"]["clientDataJSON"]))
    assert (client_data.type, client_data.challenge, client_data.origin) == (
        "webauthn.create",
        challenge,
        ORIGIN,
    )
    attestation = AttestationObject(base64url_to_bytes(credential["response"]["attestationObject"]))
    assert attestation.fmt == "none"
    assert attestation.auth_data.flags == FLAG.UP | FLAG.UV | FLAG.AT
    assert (passkey.rp_id, passkey.user_handle) == (RP_ID, USER_HANDLE)


def test_get_signs_a_user_verified_assertion_and_counts() -> None:
    passkey, _ = _registered()
    options, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    assertion = json.loads(passkey.get(options, ORIGIN))
    auth_data = AuthenticatorData(base64url_to_bytes(assertion["response"]["authenticatorData"]))
    assert auth_data.flags == FLAG.UP | FLAG.UV
    assert auth_data.counter == passkey.sign_count == 1
    assert base64url_to_bytes(assertion["response"]["userHandle"]) == USER_HANDLE
    client_data = CollectedClientData(base64url_to_bytes(assertion["response"]["clientDataJSON"]))
    assert (client_data.type, client_data.challenge) == ("webauthn.get", challenge)


def test_a_subdomain_origin_may_use_its_parent_domain_as_rp_id() -> None:
    passkey = SoftPasskey.generate()
    options, challenge = _registration_options()
    origin = "https://app.mbt.raxx.dev"
    stored = finish_registration(
        credential_json=passkey.create(options, origin),
        challenge=challenge,
        rp_id=RP_ID,
        origin=origin,
    )
    assert stored.credential_id == passkey.credential_id


# --- what the client refuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://mbt.raxx.dev.evil.example", "https://xmbt.raxx.dev"]
)
def test_create_refuses_an_rp_id_foreign_to_the_origin(origin: str) -> None:
    passkey = SoftPasskey.generate()
    options, _ = _registration_options()
    with pytest.raises(SoftPasskeyError, match="not valid for origin"):
        passkey.create(options, origin)
    assert passkey.rp_id is None


def test_create_refuses_when_already_registered_with_the_server() -> None:
    passkey = SoftPasskey.generate()
    options, _ = _registration_options(RP_ID, passkey.credential_id)
    with pytest.raises(SoftPasskeyError, match="already registered"):
        passkey.create(options, ORIGIN)


def test_create_refuses_to_rebind_to_another_rp() -> None:
    passkey, _ = _registered()
    options, _ = _registration_options("other.example")
    with pytest.raises(SoftPasskeyError, match="already registered for 'mbt.raxx.dev'"):
        passkey.create(options, "https://other.example")


def test_create_refuses_servers_without_es256() -> None:
    options = json.loads(_registration_options()[0])
    options["pubKeyCredParams"] = [{"type": "public-key", "alg": -8}]
    with pytest.raises(SoftPasskeyError, match="ES256"):
        SoftPasskey.generate().create(json.dumps(options), ORIGIN)


@pytest.mark.parametrize("options_json", ["", "[]", "{}", '{"rp": {"name": "MBT"}}'])
def test_malformed_options_are_refused(options_json: str) -> None:
    passkey, _ = _registered()
    with pytest.raises(SoftPasskeyError, match="registration options are malformed"):
        SoftPasskey.generate().create(options_json, ORIGIN)
    with pytest.raises(SoftPasskeyError, match="login options are malformed"):
        passkey.get(options_json, ORIGIN)


def test_get_refuses_before_registration() -> None:
    options, _ = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    with pytest.raises(SoftPasskeyError, match="not registered"):
        SoftPasskey.generate().get(options, ORIGIN)


def test_get_refuses_another_rp_id() -> None:
    passkey, _ = _registered()
    options, _ = begin_login(rp_id="other.example", allow_credential_ids=[])
    with pytest.raises(SoftPasskeyError, match="'other.example'; this passkey is for"):
        passkey.get(options, "https://other.example")
    with pytest.raises(SoftPasskeyError, match="not valid for origin"):
        passkey.get(options, ORIGIN)
    assert passkey.sign_count == 0


def test_get_without_rp_id_uses_the_origin_host() -> None:
    passkey, public_key = _registered()
    options_json, challenge = begin_login(rp_id=RP_ID, allow_credential_ids=[])
    options = json.loads(options_json)
    del options["rpId"]
    assertion = passkey.get(json.dumps(options), ORIGIN)
    assert (
        finish_login(
            credential_json=assertion,
            challenge=challenge,
            rp_id=RP_ID,
            origin=ORIGIN,
            public_key=public_key,
            sign_count=0,
        )
        == 1
    )
    with pytest.raises(SoftPasskeyError, match="'app.mbt.raxx.dev'; this passkey is for"):
        passkey.get(json.dumps(options), "https://app.mbt.raxx.dev")


def test_get_refuses_when_the_server_allows_other_credentials() -> None:
    passkey, _ = _registered()
    options, _ = begin_login(rp_id=RP_ID, allow_credential_ids=[b"\x00" * 32])
    with pytest.raises(SoftPasskeyError, match="does not accept this passkey"):
        passkey.get(options, ORIGIN)
    assert passkey.sign_count == 0


# --- storage ---------------------------------------------------------------------------------


def test_save_load_round_trip_keeps_logging_in(tmp_path: Path) -> None:
    passkey, public_key = _registered()
    passkey.email = "pat@example.com"
    count = _log_in(passkey, public_key, 0)
    path = tmp_path / "config" / "mbt" / "passkey.json"

    passkey.save(path)
    loaded = SoftPasskey.load(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["passkey.json"]  # no temp file left
    assert (loaded.credential_id, loaded.rp_id, loaded.user_handle) == (
        passkey.credential_id,
        RP_ID,
        USER_HANDLE,
    )
    assert (loaded.sign_count, loaded.email) == (1, "pat@example.com")
    assert loaded.private_key.private_numbers() == passkey.private_key.private_numbers()
    assert _log_in(loaded, public_key, count) == 2

    loaded.save(path)  # overwriting keeps the mode and the new count
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SoftPasskey.load(path).sign_count == 2


def test_save_into_an_existing_directory_leaves_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    SoftPasskey.generate().save(tmp_path / "passkey.json")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "passkey.json").stat().st_mode) == 0o600
    assert SoftPasskey.load(tmp_path / "passkey.json").rp_id is None


def test_the_file_holds_a_pkcs8_pem_key(tmp_path: Path) -> None:
    path = tmp_path / "passkey.json"
    SoftPasskey.generate().save(path)
    document = json.loads(path.read_text())
    assert document["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert set(document) == {
        "version",
        "private_key_pem",
        "credential_id",
        "rp_id",
        "user_handle",
        "sign_count",
        "email",
    }


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(private_key_pem="-----BEGIN PRIVATE KEY-----\nAAAA\n"),
        lambda d: d.update(sign_count=-1),
        lambda d: d.update(rp_id=7),
        lambda d: d.pop("credential_id"),
    ],
)
def test_load_refuses_a_damaged_file(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object]
) -> None:
    path = tmp_path / "passkey.json"
    SoftPasskey.generate().save(path)
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(SoftPasskeyError, match="cannot use passkey file"):
        SoftPasskey.load(path)


def test_load_refuses_a_missing_or_non_json_file(tmp_path: Path) -> None:
    with pytest.raises(SoftPasskeyError, match="cannot use passkey file"):
        SoftPasskey.load(tmp_path / "absent.json")
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(SoftPasskeyError, match="cannot use passkey file"):
        SoftPasskey.load(tmp_path / "junk.json")


def test_the_local_default_rp_localhost_over_http_works_end_to_end() -> None:
    passkey, origin = SoftPasskey.generate(), "http://localhost:8080"
    options, challenge = _registration_options("localhost")
    stored = finish_registration(
        credential_json=passkey.create(options, origin),
        challenge=challenge,
        rp_id="localhost",
        origin=origin,
    )
    login_options, login_challenge = begin_login(rp_id="localhost", allow_credential_ids=[])
    new_count = finish_login(
        credential_json=passkey.get(login_options, origin),
        challenge=login_challenge,
        rp_id="localhost",
        origin=origin,
        public_key=stored.public_key,
        sign_count=stored.sign_count,
    )
    assert new_count == 1
