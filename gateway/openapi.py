"""OpenAPI 3 document generated from the same descriptors as the routes."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor

from gateway.routes import HttpRoute

_SCALAR = {
    descriptor.FieldDescriptor.TYPE_STRING: {"type": "string"},
    descriptor.FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    descriptor.FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    descriptor.FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    descriptor.FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    descriptor.FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}


def _schema_ref(md: descriptor.Descriptor) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{md.full_name}"}


def _field_schema(
    fd: descriptor.FieldDescriptor, todo: list[descriptor.Descriptor]
) -> dict[str, Any]:
    if fd.type == fd.TYPE_MESSAGE and fd.message_type is not None:
        if fd.message_type.full_name == "google.protobuf.Timestamp":
            s: dict[str, Any] = {"type": "string", "format": "date-time"}
        else:
            todo.append(fd.message_type)
            s = _schema_ref(fd.message_type)
    elif fd.type == fd.TYPE_ENUM and fd.enum_type is not None:
        s = {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
    else:
        s = dict(_SCALAR.get(fd.type, {"type": "string"}))
    if fd.is_repeated:
        return {"type": "array", "items": s}
    return s


def build_openapi(routes: list[HttpRoute]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    todo: list[descriptor.Descriptor] = []
    for r in routes:
        path = r.template
        for field in r.fields.values():
            path = path.replace("{" + field + "}", "{" + field + "}")
        op: dict[str, Any] = {
            "operationId": r.method.name,
            "tags": [r.service],
            "parameters": [
                {"name": f, "in": "path", "required": True, "schema": {"type": "string"}}
                for f in r.fields.values()
            ],
            "responses": {
                "200": {
                    "description": "OK (wrapped in the {data, meta} envelope)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "data": _schema_ref(r.method.output_type),
                                    "meta": {"type": "object"},
                                },
                            }
                        }
                    },
                },
                "default": {"description": "Error: {error: {code, message, request_id}}"},
            },
        }
        todo.append(r.method.output_type)
        if r.body:
            todo.append(r.method.input_type)
            op["requestBody"] = {
                "content": {"application/json": {"schema": _schema_ref(r.method.input_type)}}
            }
        else:
            for fd in r.method.input_type.fields:
                if fd.name not in r.fields.values() and fd.type != fd.TYPE_MESSAGE:
                    op["parameters"].append(
                        {"name": fd.name, "in": "query", "schema": _field_schema(fd, todo)}
                    )
        paths.setdefault(path, {})[r.verb.lower()] = op
    while todo:
        md = todo.pop()
        if md.full_name in schemas:
            continue
        schemas[md.full_name] = {
            "type": "object",
            "properties": {fd.name: _field_schema(fd, todo) for fd in md.fields},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "MBT paper-trading API", "version": "v1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
