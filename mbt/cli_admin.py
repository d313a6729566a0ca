"""`mbt admin`: operator commands, authenticated by the operator credential of a data dir.

`mbt up` writes the credential (``operator-token``, mode 0600) and the addresses of its
services (``endpoints.json``) into its data dir; `mbt admin` finds them through the same
``--data-dir`` or ``MBT_DATA_DIR``. Operator calls go to the services over gRPC (they are not
on the public HTTP gateway) and each is audited with the operator's name.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path
from typing import Any

from mbt.client import CliError

__all__ = ["register"]


def _data_dir(ns: argparse.Namespace) -> Path:
    import platformdirs

    return Path(ns.data_dir or os.environ.get("MBT_DATA_DIR") or platformdirs.user_data_dir("mbt"))


def operator_channel(
    ns: argparse.Namespace, service: str
) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """A gRPC channel to ``service`` and the operator metadata to send on it."""
    import grpc

    d = _data_dir(ns)
    token_file, endpoints_file = d / "operator-token", d / "endpoints.json"
    if not token_file.exists() or not endpoints_file.exists():
        raise CliError(
            f"no MBT operator credential in {d}: pass the --data-dir that `mbt up` uses", 2
        )
    addr = json.loads(endpoints_file.read_text())[service]
    name = ns.operator or os.environ.get("MBT_OPERATOR") or getpass.getuser()
    md = (("x-mbt-operator-token", token_file.read_text().strip()), ("x-mbt-operator", name))
    return grpc.insecure_channel(addr), md


def _call(
    ns: argparse.Namespace,
    service: str,
    method: str,
    request: Any,
    stub_cls: Any,
    timeout: float = 15,
) -> Any:
    import grpc

    channel, md = operator_channel(ns, service)
    try:
        return getattr(stub_cls(channel), method)(request, metadata=md, timeout=timeout)
    except grpc.RpcError as err:
        code = err.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise CliError(f"cannot reach {service}: is `mbt up` running?", 2) from None
        raise CliError(f"{err.details()} [{code.name}]") from None
    finally:
        channel.close()


def _print_json(reply: Any) -> None:
    """An operator reply as JSON (proto field names, every field shown)."""
    from google.protobuf import json_format

    data = json_format.MessageToDict(
        reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    print(json.dumps(data, indent=2, sort_keys=True))


def cmd_tier_set(ns: argparse.Namespace) -> None:

    from raxx.mbt.v1 import sessions_service_pb2 as pb
    from raxx.mbt.v1 import sessions_service_pb2_grpc as rpc

    reply = _call(
        ns,
        "sessions",
        "SetUserTier",
        pb.SetUserTierRequest(email=ns.email, tier=ns.tier, reason=ns.reason),
        rpc.SessionsServiceStub,
    )
    if ns.json:
        _print_json(reply)
    else:
        print(
            f"{reply.email}: {reply.previous_tier} -> {reply.tier} "
            "(limits, market data and retention follow on the next request)"
        )


def cmd_graduate(ns: argparse.Namespace) -> None:

    from raxx.mbt.v1 import handoff_service_pb2 as pb
    from raxx.mbt.v1 import handoff_service_pb2_grpc as rpc

    reply = _call(
        ns,
        "handoff",
        "GraduateUser",
        pb.GraduateUserRequest(email=ns.email, reason=ns.reason),
        rpc.HandoffServiceStub,
    )
    if ns.json:
        _print_json(reply)
    else:
        state = "eligible" if reply.eligible else f"not eligible yet: {reply.reason}"
        print(f"{ns.email}: graduation overridden ({ns.reason}); {state}")


def cmd_rotate_kek(ns: argparse.Namespace) -> None:
    from raxx.mbt.v1 import handoff_service_pb2 as pb
    from raxx.mbt.v1 import handoff_service_pb2_grpc as rpc

    reply = _call(ns, "handoff", "RotateKek", pb.RotateKekRequest(), rpc.HandoffServiceStub)
    if ns.json:
        _print_json(reply)
    else:
        print(
            f"active KEK {reply.active_kek_id}: {reply.rewrapped} tokens re-wrapped, "
            f"{reply.remaining_on_old_keys} still on older keys"
        )


def _flag_line(f: Any) -> str:
    who = f" by {f.set_by} at {f.set_at[:19].replace('T', ' ')} UTC: {f.reason}" if f.set_by else ""
    target = f" ({f.email})" if f.email else ""
    shown = {"1": "on", "0": "off"}.get(f.value, f.value) if f.key.startswith("kill.") else f.value
    return f"{f.key:<40} {shown:<7} {f.source}{target}{who}"


def _set_flag(ns: argparse.Namespace, name: str, value: str, email: str = "") -> None:

    from raxx.mbt.v1 import sessions_service_pb2 as pb
    from raxx.mbt.v1 import sessions_service_pb2_grpc as rpc

    req = pb.SetRuntimeFlagRequest(name=name, value=value, email=email, reason=ns.reason)
    reply = _call(ns, "sessions", "SetRuntimeFlag", req, rpc.SessionsServiceStub)
    if ns.json:
        _print_json(reply)
    else:
        print(_flag_line(reply) + "\n(every service sees it within a second)")


def cmd_kill(ns: argparse.Namespace) -> None:
    _set_flag(ns, ns.switch, ns.state)


def cmd_flag_set(ns: argparse.Namespace) -> None:
    _set_flag(ns, ns.name, ns.value, ns.user or "")


def cmd_flags(ns: argparse.Namespace) -> None:

    from raxx.mbt.v1 import sessions_service_pb2 as pb
    from raxx.mbt.v1 import sessions_service_pb2_grpc as rpc

    reply = _call(
        ns, "sessions", "ListRuntimeFlags", pb.ListRuntimeFlagsRequest(), rpc.SessionsServiceStub
    )
    if ns.json:
        _print_json(reply)
    else:
        print("\n".join(_flag_line(f) for f in reply.flags))


def _secret_and_user(ns: argparse.Namespace) -> tuple[str, Any]:
    """The Alpaca secret from ``--secret-file`` and the user ``ns.email`` names."""
    from raxx.mbt.v1 import sessions_service_pb2 as spb
    from raxx.mbt.v1 import sessions_service_pb2_grpc as srpc

    try:
        secret = Path(ns.secret_file).read_text().strip()
    except OSError as exc:
        raise CliError(
            f"cannot read the Alpaca secret from {ns.secret_file}: {exc.strerror}"
        ) from None
    user = _call(
        ns,
        "sessions",
        "LookupUser",
        spb.LookupUserRequest(email=ns.email),
        srpc.SessionsServiceStub,
    )
    return secret, user


def cmd_import_alpaca(ns: argparse.Namespace) -> None:

    from raxx.mbt.v1 import accounts_service_pb2 as apb
    from raxx.mbt.v1 import accounts_service_pb2_grpc as arpc

    secret, user = _secret_and_user(ns)
    req = apb.ImportAlpacaAccountRequest(
        user_id=user.user_id,
        alpaca_key_id=ns.key_id,
        alpaca_secret_key=secret,
        alpaca_url=ns.alpaca_url or "",
    )
    r = _call(ns, "accounts", "ImportAlpacaAccount", req, arpc.AccountsServiceStub, timeout=300)
    if ns.json:
        _print_json(r)
        return
    done = ", ".join(r.steps_done) or "nothing (every step was done before)"
    print(
        f"{ns.email} <- Alpaca paper {r.alpaca_account_number}: did {done}\n"
        f"  cash {r.cash}, {r.positions} positions, +{r.activities_added} activities, "
        f"+{r.snapshots_added} daily equity points, +{r.orders_added} orders"
        + (
            f"\n  {r.open_orders_skipped} open orders at Alpaca not carried over: re-enter them"
            if r.open_orders_skipped
            else ""
        )
    )


def cmd_parity(ns: argparse.Namespace) -> None:

    from raxx.mbt.v1 import accounts_service_pb2 as apb
    from raxx.mbt.v1 import accounts_service_pb2_grpc as arpc

    req = apb.VerifyParityRequest(date=ns.date or "")
    r = _call(ns, "accounts", "VerifyParity", req, arpc.AccountsServiceStub, timeout=300)
    if ns.json:
        _print_json(r)
        return
    lines = [
        f"parity {r.date}: {r.users_compared} shadow users, {r.diverging} diverging, "
        f"max {r.max_divergence_pct}%, {r.orders_compared} orders at Alpaca"
    ]
    for u in r.users:
        state = "ok " if u.ok else "DIVERGES"
        lines.append(
            f"  {state} {u.user_id}  equity MBT {u.mbt_equity} / Alpaca {u.alpaca_equity} "
            f"({u.divergence_pct}%), cash {u.mbt_cash} / {u.alpaca_cash}"
            + (f"; positions: {', '.join(u.position_diffs)}" if u.position_diffs else "")
            + (f"; {u.problem}" if u.problem else "")
        )
    lines.append(f"criterion (< 0.1% across 10k orders): {r.criterion}")
    print("\n".join(lines))


def cmd_shadow_credentials(ns: argparse.Namespace) -> None:

    secret, user = _secret_and_user(ns)
    path = _data_dir(ns) / "shadow-credentials.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {"users": {}}
    doc.setdefault("users", {})[user.user_id] = {
        "key_id": ns.key_id,
        "secret_key": secret,
        "url": ns.alpaca_url or "https://paper-api.alpaca.markets",
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)
    print(f"{ns.email}: shadow orders go to Alpaca paper key {ns.key_id} (kept in {path}, 0600)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    admin_common = argparse.ArgumentParser(add_help=False, parents=[common])
    admin_common.add_argument("--data-dir", help="the data dir of `mbt up` (or $MBT_DATA_DIR)")
    admin_common.add_argument("--operator", help="your name for the audit log (default: $USER)")
    admin = sub.add_parser("admin", help="operator commands (needs the operator credential)")
    a = admin.add_subparsers(dest="admin_command", required=True)
    tier = a.add_parser("tier", help="users' tiers")
    t = tier.add_subparsers(dest="tier_command", required=True)
    s = t.add_parser("set", parents=[admin_common], help="set a user's tier")
    s.add_argument("email")
    s.add_argument("tier", choices=["free", "pro", "pro_plus"])
    s.add_argument("--reason", default="", help="why (kept in the audit log)")
    s.set_defaults(func=cmd_tier_set)
    g = a.add_parser(
        "graduate", parents=[admin_common], help="let a Pro+ user hand off without the record"
    )
    g.add_argument("email")
    g.add_argument("--reason", required=True, help="why (kept in the audit log)")
    g.set_defaults(func=cmd_graduate)
    r = a.add_parser(
        "rotate-kek", parents=[admin_common], help="new key-encryption key; re-wrap every token"
    )
    r.set_defaults(func=cmd_rotate_kek)
    k = a.add_parser("kill", parents=[admin_common], help="flip a kill switch at run time")
    k.add_argument("switch", choices=["trading", "new-orders", "live-handoff"])
    k.add_argument("state", choices=["on", "off", "default"], help="on refuses; default: env")
    k.add_argument("--reason", required=True, help="why (kept in the audit log)")
    k.set_defaults(func=cmd_kill)
    flag = a.add_parser("flag", help="rollout flags")
    fs = flag.add_subparsers(dest="flag_command", required=True)
    f = fs.add_parser("set", parents=[admin_common], help="set FLAG_MBT_PAPER_TRADING")
    f.add_argument("name", choices=["FLAG_MBT_PAPER_TRADING"])
    f.add_argument("value", choices=["off", "shadow", "on", "default"])
    f.add_argument("--user", help="one user's email (default: everyone)")
    f.add_argument("--reason", required=True, help="why (kept in the audit log)")
    f.set_defaults(func=cmd_flag_set)
    a.add_parser("flags", parents=[admin_common], help="every runtime flag").set_defaults(
        func=cmd_flags
    )
    im = a.add_parser(
        "import-alpaca", parents=[admin_common], help="import a user's Alpaca paper account"
    )
    im.add_argument("email")
    im.add_argument("--key-id", required=True, help="the Alpaca paper account's API key id")
    im.add_argument("--secret-file", required=True, help="a file holding its secret key")
    im.add_argument("--alpaca-url", help="Trading API base (default paper-api.alpaca.markets)")
    im.set_defaults(func=cmd_import_alpaca)
    pa = a.add_parser("parity", parents=[admin_common], help="shadow users: MBT against Alpaca")
    pa.add_argument("--date", help="the report's day, YYYY-MM-DD (default today)")
    pa.set_defaults(func=cmd_parity)
    sc = a.add_parser("shadow-credentials", help="shadow mode's Alpaca paper keys")
    scs = sc.add_subparsers(dest="shadow_command", required=True)
    scset = scs.add_parser("set", parents=[admin_common], help="a user's Alpaca paper key")
    scset.add_argument("email")
    scset.add_argument("--key-id", required=True)
    scset.add_argument("--secret-file", required=True, help="a file holding the secret key")
    scset.add_argument("--alpaca-url", help="Trading API base (default paper-api.alpaca.markets)")
    scset.set_defaults(func=cmd_shadow_credentials)
