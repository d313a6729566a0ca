"""Envelope encryption for the one broker credential MBT keeps: the Pro+ handoff token.

Each record gets its own AES-256-GCM data key (DEK); the DEK is wrapped by a key-encryption key
(KEK) named by an id; both layers bind the user id as associated data, so a ciphertext moved to
another user's row, a flipped bit, or a DEK from another record fails to open (``InvalidTag``).
Rotation re-wraps only the DEK (`rewrap`); the token's ciphertext never changes.

KEKs come from a keyring file outside the repository (``MBT_KEK_FILE``; JSON
``{"active": kid, "keys": {kid: base64(32 bytes)}}``, mode 0600). `mbt up` creates one in its data
dir; a deployment mounts it from a secret. The file is re-read when it changes, so a KEK added
by `mbt admin rotate-kek` (or by a secret update) is seen by every replica without a restart.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.platform.secret import Secret

__all__ = [
    "InvalidTag",
    "Keyring",
    "KeyringError",
    "SecretToken",
    "Sealed",
    "open_sealed",
    "rewrap",
    "seal",
]

PURPOSE = "alpaca_oauth_token"
NONCE_BYTES = 12


class KeyringError(RuntimeError):
    """The keyring is missing, unreadable or lacks the key a record names."""


# a broker token in memory: only `reveal()` gives it; repr, str and format never show it
SecretToken = Secret


@dataclass(frozen=True)
class Sealed:
    """One stored record: the KEK id, the wrapped DEK and the token's nonce and ciphertext."""

    kek_id: str
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"Sealed(kek_id={self.kek_id!r}, <{len(self.ciphertext)} bytes>)"


def aad_for(user_id: str) -> bytes:
    return json.dumps(
        {"v": 1, "purpose": PURPOSE, "user_id": user_id}, sort_keys=True, separators=(",", ":")
    ).encode()


class Keyring:
    """KEKs by id, one of them active for new wraps; backed by a JSON file re-read on change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._keys: dict[str, bytes] = {}
        self._active = ""

    @classmethod
    def create(cls, path: Path) -> Keyring:
        """A keyring at ``path``, creating it (one fresh KEK, mode 0600) if it does not exist."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            kid = _new_kid()
            _write_private(path, {"active": kid, "keys": {kid: _b64(AESGCM.generate_key(256))}})
        return cls(path)

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError as exc:
            raise KeyringError(f"no KEK file at {self.path}: {exc.strerror}") from None
        with self._lock:
            if mtime == self._mtime:
                return
            try:
                doc = json.loads(self.path.read_text())
                keys = {str(k): base64.b64decode(v) for k, v in doc["keys"].items()}
                active = str(doc["active"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise KeyringError(
                    f"unreadable KEK file {self.path}: {type(exc).__name__}"
                ) from None
            if active not in keys or any(len(k) != 32 for k in keys.values()):
                raise KeyringError(f"KEK file {self.path}: the active key must be a 32-byte key")
            self._keys, self._active, self._mtime = keys, active, mtime

    @property
    def active(self) -> str:
        self._load()
        return self._active

    def kek_ids(self) -> list[str]:
        self._load()
        return sorted(self._keys)

    def add_key(self) -> str:
        """Generate a new KEK, make it the active one (older ones stay to unwrap), return its id."""
        self._load()
        kid = _new_kid()
        keys = {**{k: _b64(v) for k, v in self._keys.items()}, kid: _b64(AESGCM.generate_key(256))}
        _write_private(self.path, {"active": kid, "keys": keys})
        self._load()
        return kid

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        self._load()
        nonce = os.urandom(NONCE_BYTES)
        return self._active, nonce + AESGCM(self._keys[self._active]).encrypt(nonce, dek, aad)

    def unwrap(self, kek_id: str, blob: bytes, aad: bytes) -> bytes:
        self._load()
        key = self._keys.get(kek_id)
        if key is None:
            raise KeyringError(f"KEK {kek_id!r} is not in the keyring")
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


def seal(keyring: Keyring, user_id: str, token: SecretToken) -> Sealed:
    aad = aad_for(user_id)
    dek = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    kek_id, wrapped = keyring.wrap(dek, aad)
    return Sealed(kek_id, wrapped, nonce, AESGCM(dek).encrypt(nonce, token.reveal().encode(), aad))


def open_sealed(keyring: Keyring, user_id: str, record: Sealed) -> SecretToken:
    aad = aad_for(user_id)
    dek = keyring.unwrap(record.kek_id, record.wrapped_dek, aad)
    return SecretToken(AESGCM(dek).decrypt(record.nonce, record.ciphertext, aad).decode())


def rewrap(keyring: Keyring, user_id: str, record: Sealed) -> Sealed:
    """The same record with its DEK wrapped by the active KEK (the ciphertext is unchanged)."""
    aad = aad_for(user_id)
    kek_id, wrapped = keyring.wrap(keyring.unwrap(record.kek_id, record.wrapped_dek, aad), aad)
    return Sealed(kek_id, wrapped, record.nonce, record.ciphertext)


def _new_kid() -> str:
    return "kek-" + secrets.token_hex(6)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _write_private(path: Path, doc: dict[str, object]) -> None:
    """Write atomically with mode 0600 (a reader never sees half a file)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)
