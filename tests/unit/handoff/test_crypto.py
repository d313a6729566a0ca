"""The handoff token's envelope: it opens only for its user and keys; rotation keeps it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from services.handoff.crypto import (
    InvalidTag,
    Keyring,
    KeyringError,
    Sealed,
    SecretToken,
    open_sealed,
    rewrap,
    seal,
)

TOKEN = "alpaca-oauth-token-0123456789"


def test_seal_opens_for_its_user_only(tmp_path: Path) -> None:
    kr = Keyring.create(tmp_path / "keks.json")
    rec = seal(kr, "user-a", SecretToken(TOKEN))
    assert TOKEN.encode() not in rec.ciphertext and rec.kek_id == kr.active
    assert open_sealed(kr, "user-a", rec).reveal() == TOKEN
    with pytest.raises(InvalidTag):  # the user id is bound as associated data
        open_sealed(kr, "user-b", rec)


@pytest.mark.parametrize("part", ["wrapped_dek", "nonce", "ciphertext"])
def test_one_flipped_bit_anywhere_fails(tmp_path: Path, part: str) -> None:
    kr = Keyring.create(tmp_path / "keks.json")
    rec = seal(kr, "u", SecretToken(TOKEN))
    raw = bytearray(getattr(rec, part))
    raw[len(raw) // 2] ^= 0x01
    fields = {**rec.__dict__, part: bytes(raw)}
    with pytest.raises(InvalidTag):
        open_sealed(kr, "u", Sealed(**fields))


def test_a_dek_from_another_record_does_not_open(tmp_path: Path) -> None:
    kr = Keyring.create(tmp_path / "keks.json")
    a, b = seal(kr, "u", SecretToken("a-token")), seal(kr, "u", SecretToken("b-token"))
    with pytest.raises(InvalidTag):
        open_sealed(kr, "u", Sealed(a.kek_id, b.wrapped_dek, a.nonce, a.ciphertext))


def test_rotation_rewraps_and_the_old_key_can_go(tmp_path: Path) -> None:
    path = tmp_path / "keks.json"
    kr = Keyring.create(path)
    old = kr.active
    rec = seal(kr, "u", SecretToken(TOKEN))
    new = kr.add_key()
    assert new != old and kr.active == new and set(kr.kek_ids()) == {old, new}
    moved = rewrap(kr, "u", rec)
    assert moved.kek_id == new and moved.ciphertext == rec.ciphertext  # only the DEK's wrap
    doc = json.loads(path.read_text())
    del doc["keys"][old]
    path.write_text(json.dumps(doc))
    os.utime(path, ns=(1, 1))  # a change another replica would see by mtime
    fresh = Keyring(path)
    assert open_sealed(fresh, "u", moved).reveal() == TOKEN
    with pytest.raises(KeyringError, match=old):
        open_sealed(fresh, "u", rec)


def test_keyring_file_is_private_and_the_token_never_prints(tmp_path: Path) -> None:
    path = tmp_path / "keks.json"
    Keyring.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    t = SecretToken(TOKEN)
    assert TOKEN not in repr(t) and TOKEN not in str(t) and TOKEN not in f"{t}"
    assert TOKEN not in repr(seal(Keyring(path), "u", t))
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(t)


def test_a_broken_keyring_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "keks.json"
    path.write_text('{"active": "k1", "keys": {"k1": "c2hvcnQ="}}')  # 5 bytes, not 32
    with pytest.raises(KeyringError, match="32-byte"):
        Keyring(path).kek_ids()
    with pytest.raises(KeyringError, match="no KEK file"):
        Keyring(tmp_path / "missing.json").kek_ids()
