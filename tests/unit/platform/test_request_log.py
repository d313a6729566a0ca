"""The one structured line per RPC is JSON whatever request id the client sent."""

from __future__ import annotations

import json
import logging

import pytest

from services.platform import grpc_server


@pytest.mark.parametrize("rid", ["3f2a9c0d4e5b6a7f8e9d0c1b2a3f4e5d", 'a"b\\c', "ünï-cödé 1"])
def test_each_rpc_logs_one_json_line(caplog: pytest.LogCaptureFixture, rid: str) -> None:
    with caplog.at_level(logging.INFO, logger="mbt.requests"):
        grpc_server._observe("/raxx.mbt.v1.OrdersService/SubmitOrder", "OK", rid, 0.0123456)
    (record,) = [r for r in caplog.records if r.name == "mbt.requests"]
    line = json.loads(record.getMessage())
    assert line == {
        "request_id": rid,
        "rpc": "/raxx.mbt.v1.OrdersService/SubmitOrder",
        "code": "OK",
        "ms": 12.35,
    }
