"""NUL characters in decoded request messages are found and named, at any depth."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from usdcarb.platform.textcheck import NUL_TEXT, nul_fields
from usdcarb.v1 import ingestion_pb2, strategy_pb2

pytestmark = pytest.mark.unit


def test_clean_messages_have_none() -> None:
    request = strategy_pb2.CreateStrategyRequest(request_id="r-1")
    request.strategy.labels["team"] = "arb"
    assert nul_fields(request) == []
    assert nul_fields(strategy_pb2.CreateStrategyRequest()) == []


def test_top_level_nested_repeated_and_map_text_is_named() -> None:
    request = strategy_pb2.CreateStrategyRequest(request_id="a\x00b")
    request.strategy.display_name = "x\x00"
    request.strategy.labels["k\x00"] = "v"
    request.strategy.labels["ok"] = "v\x00"
    assert sorted(nul_fields(request)) == sorted([
        ("requestId", NUL_TEXT),
        ("strategy.displayName", NUL_TEXT),
        ("strategy.labels", "expected map keys without NUL characters, got one"),
        ("strategy.labels['ok']", NUL_TEXT),
    ])


def test_query_style_filters_and_struct_values() -> None:
    listing = ingestion_pb2.ListIngestJobsRequest(exchange="bin\x00ance")
    assert nul_fields(listing) == [("exchange", NUL_TEXT)]
    value = struct_pb2.Struct()
    value.update({"outer": {"inner": "t\x00"}})
    assert nul_fields(value) == [
        ("fields['outer'].structValue.fields['inner'].stringValue", NUL_TEXT)]
