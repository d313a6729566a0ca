"""`mbt keys`: API keys for programs (create after a passkey step-up, list, revoke)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mbt.client import Api, CliError, SavedSession, origin_for, passkey_path

__all__ = ["register", "step_up"]


def step_up(api: Api, session: SavedSession, bind_sha256: str = "") -> str:
    """A fresh passkey assertion (user verification) with the saved passkey; the grant id."""
    from mbt.passkey import SoftPasskey

    path = passkey_path(session.email)
    if not path.exists():
        raise CliError(f"no passkey for {session.email} on this machine: the step-up needs it")
    key = SoftPasskey.load(path)
    challenge, _ = api.call(
        "POST", "/api/sessions/step-up/challenge", json_body={"bind_sha256": bind_sha256}
    )
    if bind_sha256:
        check_bound_challenge(challenge["options_json"], bind_sha256)
    assertion = key.get(challenge["options_json"], origin_for(api.url))
    key.save(path)  # the sign count moved
    grant, _ = api.call(
        "POST",
        "/api/sessions/step-up",
        json_body={"ceremony_id": challenge["ceremony_id"], "credential_json": assertion},
    )
    return str(grant["step_up_id"])


def check_bound_challenge(options_json: str, bind_sha256: str) -> None:
    """Refuse to sign unless the challenge carries the digest of what was shown: MBT's bound
    challenges are a 16-byte nonce followed by the content's SHA-256."""
    import base64

    raw = json.loads(options_json)["challenge"]
    challenge = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    if challenge[16:] != bytes.fromhex(bind_sha256):
        raise CliError("the server's challenge is not bound to what was shown: not signing")


def _api(ns: argparse.Namespace) -> tuple[Api, SavedSession]:
    s = SavedSession.load()
    if s is None:
        raise CliError("not signed in: run `mbt login` first")
    return Api(ns.url or s.url, s.token, session=s), s


def _out(ns: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if ns.json else human)


def cmd_create(ns: argparse.Namespace) -> None:
    api, session = _api(ns)
    scopes = [s.strip() for s in (ns.scope or "trading,data").split(",") if s.strip()]
    grant = step_up(api, session)
    key, _ = api.call(
        "POST",
        "/api/mbt/keys",
        json_body={
            "name": ns.name,
            "scopes": scopes,
            "read_only": ns.read_only,
            "step_up_id": grant,
        },
    )
    mode = "read-only" if key["read_only"] else "read-write"
    _out(
        ns,
        key,
        f"API key {key['name']!r} ({', '.join(key['scopes'])}, {mode})\n"
        f"  APCA-API-KEY-ID:     {key['key_id']}\n"
        f"  APCA-API-SECRET-KEY: {key['secret']}\n"
        "The secret is shown this once: MBT keeps only a keyed hash of it.",
    )


def cmd_list(ns: argparse.Namespace) -> None:
    api, _ = _api(ns)
    data, _ = api.call("GET", "/api/mbt/keys")
    keys = data.get("keys", [])
    rows = [
        [
            k["key_id"],
            k["name"],
            ",".join(k["scopes"]),
            "read-only" if k["read_only"] else "read-write",
            (k.get("created_at") or "")[:19].replace("T", " "),
            "revoked" if k.get("revoked_at") else "active",
        ]
        for k in keys
    ]
    from mbt.cli import _table

    _out(ns, keys, _table(rows, ["KEY ID", "NAME", "SCOPES", "MODE", "CREATED (UTC)", "STATE"]))


def cmd_revoke(ns: argparse.Namespace) -> None:
    api, _ = _api(ns)
    key, _ = api.call("DELETE", f"/api/mbt/keys/{ns.key_id}")
    _out(ns, key, f"revoked {key['key_id']} ({key['name']}): every service refuses it now")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="API keys for programs (alpaca-py, strategies)")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", parents=[common], help="mint a key (confirms with your passkey)")
    c.add_argument("--name", required=True, help="a label, e.g. bot")
    c.add_argument("--scope", default="trading,data", help="trading, data or both (default)")
    c.add_argument("--read-only", action="store_true", help="may read, never trade")
    c.set_defaults(func=cmd_create)
    ks.add_parser("list", parents=[common], help="your keys (never their secrets)").set_defaults(
        func=cmd_list
    )
    r = ks.add_parser("revoke", parents=[common], help="revoke a key everywhere, at once")
    r.add_argument("key_id")
    r.set_defaults(func=cmd_revoke)
