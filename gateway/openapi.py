"""OpenAPI 3.1 document generated from the same descriptors as the routes.

Descriptions are the protos' own comments (read from the descriptor set that
`scripts/gen_protos.py` writes with source info), enums are the proto enums, map fields are
objects, Timestamps are `date-time` strings (also as query parameters), every error shares one
envelope schema, and the security schemes are the ones the gateway accepts: the session cookie,
a bearer token, or an API key pair in Alpaca's headers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor, descriptor_pb2

import raxx.mbt.v1 as proto_package
from gateway.routes import HttpRoute

__all__ = ["PUBLIC_METHODS", "build_openapi", "comments"]

_SCALAR = {
    descriptor.FieldDescriptor.TYPE_STRING: {"type": "string"},
    descriptor.FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    descriptor.FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    descriptor.FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    descriptor.FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    descriptor.FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    descriptor.FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# the RPCs a caller may make without a credential (the passkey ceremony, the clock)
PUBLIC_METHODS = frozenset(
    {
        "BeginRegistration",
        "FinishRegistration",
        "BeginLogin",
        "FinishLogin",
        "RefreshSession",
        "GetClock",
        "ListSymbols",
        "ListCalendar",
        "GetFeedStatus",
    }
)
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "description": "what went wrong",
            "type": "object",
            "required": ["code", "message", "request_id"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "a stable UPPER_SNAKE reason, e.g. INSUFFICIENT_BUYING_POWER",
                },
                "message": {"type": "string", "description": "what went wrong, naming it"},
                "request_id": {"type": "string"},
            },
        }
    },
}
SECURITY_SCHEMES = {
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "mbt_session",
        "description": "the browser session (a passkey sign-in sets it)",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "the access token a passkey sign-in returns",
    },
    "apiKeyId": {"type": "apiKey", "in": "header", "name": "APCA-API-KEY-ID"},
    "apiKeySecret": {"type": "apiKey", "in": "header", "name": "APCA-API-SECRET-KEY"},
}
SECURITY: list[dict[str, list[str]]] = [
    {"session": []},
    {"bearer": []},
    {"apiKeyId": [], "apiKeySecret": []},
]


@cache
def comments() -> dict[str, str]:
    """Proto comments by full name: `pkg.Message`, `pkg.Message.field`, `pkg.Service.Method`."""
    path = Path(proto_package.__file__).parent / "source_info_pb2.binpb"
    if not path.exists():
        return {}
    fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    out: dict[str, str] = {}
    for f in fds.file:
        names: dict[tuple[int, ...], str] = {}
        _name_messages(f.message_type, f.package, (4,), names)
        for i, svc in enumerate(f.service):
            for j, m in enumerate(svc.method):
                names[(6, i, 2, j)] = f"{f.package}.{svc.name}.{m.name}"
        for loc in f.source_code_info.location:
            name = names.get(tuple(loc.path))
            text = (loc.leading_comments or loc.trailing_comments).strip()
            if name and text:
                out[name] = " ".join(line.strip() for line in text.splitlines())
    return out


def _name_messages(
    msgs: Any, prefix: str, at: tuple[int, ...], names: dict[tuple[int, ...], str]
) -> None:
    """Source-info paths of messages (4, i, 3, j, ...) and their fields (..., 2, k) -> names."""
    for i, m in enumerate(msgs):
        name = f"{prefix}.{m.name}"
        names[(*at, i)] = name
        for j, fd in enumerate(m.field):
            names[(*at, i, 2, j)] = f"{name}.{fd.name}"
        _name_messages(m.nested_type, name, (*at, i, 3), names)


def _schema_ref(md: descriptor.Descriptor) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{md.full_name}"}


def _value_schema(
    fd: descriptor.FieldDescriptor, todo: list[descriptor.Descriptor]
) -> dict[str, Any]:
    if fd.type == fd.TYPE_MESSAGE and fd.message_type is not None:
        if fd.message_type.full_name == "google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}
        todo.append(fd.message_type)
        return _schema_ref(fd.message_type)
    if fd.type == fd.TYPE_ENUM and fd.enum_type is not None:
        return {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
    return dict(_SCALAR.get(fd.type, {"type": "string"}))


def _field_schema(
    fd: descriptor.FieldDescriptor, todo: list[descriptor.Descriptor]
) -> dict[str, Any]:
    mt = fd.message_type
    if fd.is_repeated and mt is not None and mt.GetOptions().map_entry:
        s: dict[str, Any] = {
            "type": "object",
            "additionalProperties": _value_schema(mt.fields_by_name["value"], todo),
        }
    elif fd.is_repeated:
        s = {"type": "array", "items": _value_schema(fd, todo)}
    else:
        s = _value_schema(fd, todo)
    text = comments().get(fd.full_name)
    if text:
        s = {"description": text, **s} if "$ref" not in s else {"description": text, "allOf": [s]}
    return s


def _envelope(md: descriptor.Descriptor) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "meta"],
        "properties": {"data": _schema_ref(md), "meta": {"type": "object"}},
    }


def build_openapi(routes: list[HttpRoute]) -> dict[str, Any]:
    notes = comments()
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    todo: list[descriptor.Descriptor] = []
    error = {
        "description": "an error: {error: {code, message, request_id}}",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    used: dict[str, int] = {}
    for r in routes:
        used[r.method.name] = used.get(r.method.name, 0) + 1
        n = used[r.method.name]  # an RPC on a second path (an alias) gets a numbered id
        op: dict[str, Any] = {
            "operationId": r.method.name if n == 1 else f"{r.method.name}{n}",
            "x-rpc": r.method.full_name,
            "tags": [r.service],
            "parameters": [
                {"name": f, "in": "path", "required": True, "schema": {"type": "string"}}
                for f in r.fields.values()
            ],
            "responses": {
                "200": {
                    "description": "OK (wrapped in the {data, meta} envelope)",
                    "content": {"application/json": {"schema": _envelope(r.method.output_type)}},
                },
                "4XX": error,
                "5XX": error,
            },
        }
        summary = notes.get(r.method.full_name)
        if summary:
            op["description"] = summary
        op["security"] = [] if r.method.name in PUBLIC_METHODS else SECURITY
        todo.append(r.method.output_type)
        if r.body:
            todo.append(r.method.input_type)
            op["requestBody"] = {
                "content": {"application/json": {"schema": _schema_ref(r.method.input_type)}}
            }
        else:
            for fd in r.method.input_type.fields:
                if fd.name in r.fields.values():
                    continue
                is_time = (
                    fd.message_type is not None
                    and fd.message_type.full_name == "google.protobuf.Timestamp"
                )
                if fd.type == fd.TYPE_MESSAGE and not is_time:
                    continue
                param: dict[str, Any] = {
                    "name": fd.name,
                    "in": "query",
                    "schema": _field_schema(fd, todo),
                }
                if fd.full_name in notes:
                    param["description"] = notes[fd.full_name]
                op["parameters"].append(param)
        paths.setdefault(r.template, {})[r.verb.lower()] = op
    while todo:
        md = todo.pop()
        if md.full_name in schemas:
            continue
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {fd.name: _field_schema(fd, todo) for fd in md.fields},
        }
        if md.full_name in notes:
            schema["description"] = notes[md.full_name]
        schemas[md.full_name] = schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MBT paper-trading API",
            "version": "v1",
            "description": "The native HTTP surface under /api/mbt (transcoded to gRPC). "
            "Strategies may also use the Alpaca-compatible /v2 surface or gRPC directly.",
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }
