"""HTTP request -> gRPC request message, and gRPC outcome -> HTTP JSON (grpc-gateway rules)."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.routes import HttpRoute
from services.platform.errors import HTTP_STATUS_BY_CODE


class BadRequest(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _set_path(msg: Message, dotted: str, value: str) -> None:
    *parents, leaf = dotted.split(".")
    target: Any = msg
    for p in parents:
        fd = target.DESCRIPTOR.fields_by_name.get(p)
        if fd is None or fd.message_type is None or fd.is_repeated:
            raise BadRequest(dotted[:60], "unknown field")
        target = getattr(target, p)
    fd = target.DESCRIPTOR.fields_by_name.get(leaf)
    if fd is None:
        raise BadRequest(dotted, "unknown field")
    if fd.message_type is not None and fd.message_type.full_name == "google.protobuf.Timestamp":
        try:
            getattr(target, leaf).FromJsonString(value)
        except ValueError as exc:
            raise BadRequest(dotted, f"not an RFC 3339 timestamp: {value!r}") from exc
        return
    try:
        if fd.is_repeated:
            getattr(target, leaf).append(_coerce(fd, value))
        else:
            setattr(target, leaf, _coerce(fd, value))
    except (TypeError, ValueError) as exc:
        raise BadRequest(dotted, f"bad value {value!r}") from exc


def _coerce(fd: Any, value: str) -> Any:
    t = fd.type
    if t in (
        fd.TYPE_INT32,
        fd.TYPE_INT64,
        fd.TYPE_UINT32,
        fd.TYPE_UINT64,
        fd.TYPE_SINT32,
        fd.TYPE_SINT64,
    ):
        return int(value)
    if t in (fd.TYPE_DOUBLE, fd.TYPE_FLOAT):
        return float(value)
    if t == fd.TYPE_BOOL:
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise ValueError(value)
    if t == fd.TYPE_STRING:
        return value
    raise ValueError(f"unsupported query field type for {fd.name}")


def build_request(
    route: HttpRoute, path_params: dict[str, str], query: list[tuple[str, str]], body: bytes
) -> Message:
    """Bind path variables, the body (per the rule's `body`) and query parameters."""
    msg: Message = route.request_cls()
    if route.body:
        if body.strip():
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest("body", f"not UTF-8 (byte {exc.start})") from None
            if _nesting(text) > MAX_JSON_DEPTH:
                raise BadRequest("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BadRequest(
                    "body", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                ) from exc
            if not isinstance(data, dict):
                raise BadRequest("body", "must be a JSON object")
            data = {k: _stringify_number(v) for k, v in data.items()}
            target = msg if route.body == "*" else getattr(msg, route.body)
            known = set(target.DESCRIPTOR.fields_by_name) | {
                f.json_name for f in target.DESCRIPTOR.fields
            }
            unknown = sorted(k for k in data if k not in known)
            if unknown:
                names = ", ".join(repr(k[:40]) for k in unknown[:5])
                raise BadRequest(str(unknown[0])[:40], f"unknown field(s) {names}")
            try:
                json_format.ParseDict(data, target, ignore_unknown_fields=False)
            except json_format.ParseError as exc:
                raise BadRequest("body", str(exc)[:300]) from exc
    elif query:
        for k, v in query:
            _set_path(msg, k, v)
    for field, value in path_params.items():
        _set_path(msg, field, value)
    return msg


MAX_JSON_DEPTH = 32


def _nesting(text: str) -> int:
    """How deep the JSON's brackets nest (outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _stringify_number(v: Any) -> Any:
    # money fields are strings on the wire; accept JSON numbers from clients that send them
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        # plain notation (1e-05 -> "0.00001"); the field's own grammar then decides
        from decimal import Decimal

        return format(Decimal(repr(v)), "f") if v == v and abs(v) != float("inf") else repr(v)
    if isinstance(v, int):
        return str(v)
    return v


def message_to_json(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# where a reason has its own HTTP status (BRIEF §4 rule 8: a reused client_order_id is a 422)
HTTP_STATUS_BY_REASON = {"CLIENT_ORDER_ID_CONFLICT": 422}


def error_from_rpc(err: grpc.aio.AioRpcError) -> tuple[int, str, str]:
    """(HTTP status, reason code, message) for a failed call."""
    code = err.code()
    reason = code.name
    status = rpc_status.from_call(err)
    if status is not None:
        for d in status.details:
            info = error_details_pb2.ErrorInfo()
            if d.Unpack(info):
                reason = info.reason
    http = HTTP_STATUS_BY_REASON.get(reason) or HTTP_STATUS_BY_CODE.get(code, 500)
    return http, reason, err.details() or reason


def retry_after_from_rpc(err: grpc.aio.AioRpcError) -> int | None:
    """Seconds from a `google.rpc.RetryInfo` detail (a rate limit), if the error has one."""
    status = rpc_status.from_call(err)
    if status is None:
        return None
    for d in status.details:
        info = error_details_pb2.RetryInfo()
        if d.Unpack(info):
            return max(1, int(info.retry_delay.seconds))
    return None
