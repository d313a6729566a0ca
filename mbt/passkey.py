"""The `mbt` CLI's software passkey: one ES256 credential kept in the user's config dir.

It plays both the WebAuthn client (it builds clientDataJSON for an origin and checks the RP ID
against it) and the authenticator (it signs with a P-256 key it holds). It asserts user presence
and verification: having the 0600 key file of the logged-in OS user is the verification.
Built on fido2's data builders, as in docs/research/security.md §1.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.webauthn import (
    AttestationObject,
    AttestedCredentialData,
    AuthenticatorData,
    CollectedClientData,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_options_json,
    parse_registration_options_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException

_FLAG = AuthenticatorData.FLAG
_NO_AAGUID = b"\0" * 16
_FILE_VERSION = 1


class SoftPasskeyError(Exception):
    """The software passkey refused options, or its file could not be used."""


def _rp_id_for(options_rp_id: str | None, origin: str) -> str:
    """The RP ID to use, checked like a browser does: the origin's host or a parent domain."""
    host = urlsplit(origin).hostname
    if not host:
        raise SoftPasskeyError(f"origin {origin!r} has no host")
    rp_id = options_rp_id or host
    if host != rp_id and not host.endswith("." + rp_id):
        raise SoftPasskeyError(f"RP ID {rp_id!r} is not valid for origin {origin!r}")
    return rp_id


@dataclass
class SoftPasskey:
    """One credential. ``rp_id`` and ``user_handle`` are set by :meth:`create`."""

    private_key: ec.EllipticCurvePrivateKey
    credential_id: bytes
    rp_id: str | None = None
    user_handle: bytes | None = None
    sign_count: int = 0
    email: str | None = None

    @classmethod
    def generate(cls) -> SoftPasskey:
        """A fresh P-256 key with a random 32-byte credential id, not yet registered."""
        return cls(
            private_key=ec.generate_private_key(ec.SECP256R1()), credential_id=os.urandom(32)
        )

    def _credential_json(self, response: dict[str, Any]) -> str:
        cid = bytes_to_base64url(self.credential_id)
        return json.dumps(
            {
                "id": cid,
                "rawId": cid,
                "type": "public-key",
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": response,
            }
        )

    def create(self, options_json: str, origin: str) -> str:
        """Register with the server's creation options; return the registration credential JSON."""
        try:
            options = parse_registration_options_json(options_json)
        except WebAuthnException as exc:
            raise SoftPasskeyError(f"registration options are malformed: {exc}") from None
        rp_id = _rp_id_for(options.rp.id, origin)
        if self.rp_id is not None and self.rp_id != rp_id:
            raise SoftPasskeyError(f"this passkey is already registered for {self.rp_id!r}")
        algorithms = {p.alg for p in options.pub_key_cred_params}
        if COSEAlgorithmIdentifier.ECDSA_SHA_256 not in algorithms:
            raise SoftPasskeyError("the server does not accept ES256 keys")
        if any(c.id == self.credential_id for c in options.exclude_credentials or []):
            raise SoftPasskeyError("this passkey is already registered with the server")
        # fido2 leaves this classmethod unannotated; it returns an ES256 COSE key.
        public_key: ES256 = ES256.from_cryptography_key(  # type: ignore[no-untyped-call]
            self.private_key.public_key()
        )
        credential = AttestedCredentialData.create(_NO_AAGUID, self.credential_id, public_key)
        flags = _FLAG.UP | _FLAG.UV | _FLAG.AT
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp_id.encode()).digest(), flags, self.sign_count, credential
        )
        client_data = CollectedClientData.create("webauthn.create", options.challenge, origin)
        self.rp_id, self.user_handle = rp_id, options.user.id
        return self._credential_json(
            {
                "clientDataJSON": bytes_to_base64url(client_data),
                "attestationObject": bytes_to_base64url(
                    AttestationObject.create("none", auth_data, {})
                ),
                "transports": ["internal"],
            }
        )

    def get(self, options_json: str, origin: str) -> str:
        """Sign the server's request options; return the assertion JSON.

        Increments the sign count: :meth:`save` afterwards, or the next login is a regression.
        """
        if self.rp_id is None or self.user_handle is None:
            raise SoftPasskeyError("this passkey is not registered yet")
        try:
            options = parse_authentication_options_json(options_json)
        except WebAuthnException as exc:
            raise SoftPasskeyError(f"login options are malformed: {exc}") from None
        rp_id = _rp_id_for(options.rp_id, origin)
        if rp_id != self.rp_id:
            raise SoftPasskeyError(
                f"login asks for RP ID {rp_id!r}; this passkey is for {self.rp_id!r}"
            )
        allowed = options.allow_credentials or []
        if allowed and all(c.id != self.credential_id for c in allowed):
            raise SoftPasskeyError("the server does not accept this passkey for this login")
        self.sign_count += 1
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp_id.encode()).digest(), _FLAG.UP | _FLAG.UV, self.sign_count
        )
        client_data = CollectedClientData.create("webauthn.get", options.challenge, origin)
        signed = bytes(auth_data) + hashlib.sha256(client_data).digest()
        signature = self.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return self._credential_json(
            {
                "clientDataJSON": bytes_to_base64url(client_data),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
                "userHandle": bytes_to_base64url(self.user_handle),
            }
        )

    def save(self, path: Path) -> None:
        """Write atomically to ``path`` with mode 0600, creating its directory with mode 0700."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        handle = None if self.user_handle is None else bytes_to_base64url(self.user_handle)
        document = {
            "version": _FILE_VERSION,
            "private_key_pem": pem.decode("ascii"),
            "credential_id": bytes_to_base64url(self.credential_id),
            "rp_id": self.rp_id,
            "user_handle": handle,
            "sign_count": self.sign_count,
            "email": self.email,
        }
        _ensure_private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)  # mkstemp already uses 0600; be explicit
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=2)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> SoftPasskey:
        """Read a passkey written by :meth:`save`; raise :class:`SoftPasskeyError` if unusable."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("version") != _FILE_VERSION:
                raise ValueError(f"unsupported version {document.get('version')!r}")
            key = serialization.load_pem_private_key(
                document["private_key_pem"].encode("ascii"), password=None
            )
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError("the key is not a P-256 key")
            handle, rp_id, email = document["user_handle"], document["rp_id"], document["email"]
            sign_count = document["sign_count"]
            if not isinstance(sign_count, int) or sign_count < 0:
                raise ValueError("sign_count is not a non-negative integer")
            if not all(v is None or isinstance(v, str) for v in (handle, rp_id, email)):
                raise ValueError("user_handle, rp_id and email must be strings or null")
            return cls(
                private_key=key,
                credential_id=base64url_to_bytes(document["credential_id"]),
                rp_id=rp_id,
                user_handle=None if handle is None else base64url_to_bytes(handle),
                sign_count=sign_count,
                email=email,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SoftPasskeyError(f"cannot use passkey file {path}: {exc}") from None


def _ensure_private_dir(directory: Path) -> None:
    if directory.is_dir():
        return  # an existing dir (e.g. ~/.config) keeps its mode; only ours is made private
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is filtered by the umask
