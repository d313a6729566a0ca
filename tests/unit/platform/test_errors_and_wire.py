from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from google.rpc import error_details_pb2

from services.conventions.decimals import dec_to_wire, money
from services.platform.errors import FailedPrecondition, InvalidArgument
from services.platform.pagination import next_page_token, page_bounds
from services.platform.wire import parse_decimal


def test_domain_error_carries_error_info() -> None:
    e = FailedPrecondition(
        "insufficient buying power",
        reason="INSUFFICIENT_BUYING_POWER",
        metadata={"required": "10.00"},
    )
    st = e.to_status()
    assert st.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INSUFFICIENT_BUYING_POWER",
        "mbt.raxx.dev",
        {"required": "10.00"},
    )


def test_invalid_argument_names_the_field() -> None:
    e = InvalidArgument("qty", "must be greater than zero")
    assert str(e) == "qty: must be greater than zero" and e.metadata == {"field": "qty"}


def test_decimal_parsing_and_formatting() -> None:
    assert parse_decimal("qty", "10") == Decimal(10)
    assert parse_decimal("limit_price", "", required=False) is None
    for bad in ("abc", "NaN", "Infinity"):
        with pytest.raises(InvalidArgument, match="limit_price"):
            parse_decimal("limit_price", bad)
    with pytest.raises(InvalidArgument, match="greater than zero"):
        parse_decimal("qty", "0", positive=True)
    assert dec_to_wire(Decimal("185.100000")) == "185.1"
    assert dec_to_wire(Decimal("1E+2")) == "100"
    assert money(Decimal("98176.5")) == "98176.50"


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    size, off = page_bounds(2, "")
    assert (size, off) == (2, 0)
    tok = next_page_token(off, size, fetched=3)
    assert page_bounds(2, tok) == (2, 2)
    assert next_page_token(2, 2, fetched=2) == ""
    assert page_bounds(10_000, "")[0] == 500
    with pytest.raises(InvalidArgument, match="page_size"):
        page_bounds(-1, "")
    with pytest.raises(InvalidArgument, match="page_token"):
        page_bounds(5, "not-a-token!")
