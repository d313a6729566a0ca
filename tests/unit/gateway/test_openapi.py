"""The generated OpenAPI: valid 3.1, described from the protos, faithful to the JSON we send."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from gateway.app import Gateway, GatewayConfig
from gateway.openapi import PUBLIC_METHODS, build_openapi, comments


def _doc() -> dict[str, Any]:
    gw = Gateway(GatewayConfig(service_addrs={}))
    return build_openapi(gw.routes)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(_doc())


def test_descriptions_come_from_the_proto_comments() -> None:
    doc = _doc()
    notes = comments()
    assert len(notes) > 100
    submit = doc["paths"]["/api/mbt/orders"]["post"]
    assert submit["description"] == notes["raxx.mbt.v1.OrdersService.SubmitOrder"]
    activity = doc["components"]["schemas"]["raxx.mbt.v1.Activity"]["properties"]
    assert activity["activity_type"]["description"] == notes["raxx.mbt.v1.Activity.activity_type"]


def test_map_fields_are_objects_and_timestamps_are_query_parameters() -> None:
    doc = _doc()
    status = doc["components"]["schemas"]["raxx.mbt.v1.FeedStatus"]["properties"]["rejected"]
    assert status["type"] == "object" and "additionalProperties" in status
    bars = doc["paths"]["/api/mbt/bars/{symbol}"]["get"]["parameters"]
    times = {p["name"]: p["schema"] for p in bars if p["in"] == "query"}
    assert times["start_time"]["format"] == "date-time"
    assert times["end_time"]["format"] == "date-time"


def test_security_schemes_and_the_error_envelope() -> None:
    doc = _doc()
    schemes = doc["components"]["securitySchemes"]
    assert {"session", "bearer", "apiKeyId", "apiKeySecret"} <= set(schemes)
    for path, ops in doc["paths"].items():
        for verb, op in ops.items():
            public = op["x-rpc"].rsplit(".", 1)[-1] in PUBLIC_METHODS
            assert (op["security"] == []) == public, (verb, path)
            assert op["responses"]["4XX"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }


def test_public_methods_are_the_services_own() -> None:
    from services.sessions.servicer import PUBLIC_METHODS as SESSIONS_PUBLIC

    marketdata_public = {"GetClock", "ListSymbols", "ListCalendar", "GetFeedStatus"}
    assert PUBLIC_METHODS == frozenset(SESSIONS_PUBLIC) | marketdata_public


def test_every_field_and_operation_has_a_description() -> None:
    doc = _doc()
    bare = [
        f"{name}.{field}"
        for name, schema in doc["components"]["schemas"].items()
        for field, spec in (schema.get("properties") or {}).items()
        if not spec.get("description")
    ]
    assert bare == [], f"add a comment in the .proto for: {bare}"
    ops = [op for path in doc["paths"].values() for op in path.values()]
    undescribed = [op["operationId"] for op in ops if not op.get("description")]
    assert undescribed == [], undescribed
