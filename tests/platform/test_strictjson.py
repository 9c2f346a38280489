"""The strict REST JSON check and the request check that applies it (pure functions)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format

from usdcarb.platform import strictjson
from usdcarb.platform.errors import InvalidArgument
from usdcarb.platform.requestcheck import Undecodable, _guarded, check_request
from usdcarb.v1 import backtest_pb2, strategy_pb2

CREATE = "usdcarb.v1.StrategyService/CreateStrategy"
VERSION = "usdcarb.v1.StrategyService/CreateStrategyVersion"
TRANSITION = "usdcarb.v1.StrategyService/TransitionStrategyVersion"
BACKTEST = "usdcarb.v1.BacktestService/CreateBacktest"
PEG = {"venue": "binance", "symbol": "USDC/USDT", "entryBps": 10, "exitBps": 2.5,
       "quantity": "100"}


def fields(method: str, body: Any) -> list[str]:
    target = strictjson.body_target(method)
    assert target is not None
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return [v.field for v in strictjson.violations(raw, *target)]


def test_body_target_follows_the_http_rule() -> None:
    strategy = strictjson.body_target(CREATE)
    assert strategy is not None and strategy[0].full_name == "usdcarb.v1.Strategy"
    assert strategy[1] == "strategy"
    star = strictjson.body_target(TRANSITION)
    assert star is not None and star[1] == ""
    assert star[0].full_name == "usdcarb.v1.TransitionStrategyVersionRequest"
    assert strictjson.body_target("usdcarb.v1.StrategyService/GetStrategy") is None
    assert strictjson.body_target("usdcarb.v1.NoSuchService/Nothing") is None


@pytest.mark.parametrize("body", [
    {"displayName": "x", "kind": "STRATEGY_KIND_PEG_REVERSION", "labels": {"a": "b"}},
    {"display_name": "x", "kind": 2, "etag": None},
    {},
])
def test_valid_bodies_pass_and_json_format_agrees(body: dict[str, Any]) -> None:
    assert fields(CREATE, body) == []
    json_format.ParseDict(body, strategy_pb2.Strategy(), ignore_unknown_fields=False)


@pytest.mark.parametrize("body, field", [
    ({"displayName": "x", "colour": "red"}, "strategy.colour"),
    ({"labels": {"a": {}}}, "strategy.labels.a"),
    ({"labels": ["a"]}, "strategy.labels"),
    ({"displayName": 5}, "strategy.displayName"),
    ({"kind": "STRATEGY_KIND_MARTINGALE"}, "strategy.kind"),
    ({"versionCount": 2**31}, "strategy.versionCount"),
    ({"versionCount": 1.5}, "strategy.versionCount"),
    ({"versionCount": "12x"}, "strategy.versionCount"),
    ({"versionCount": True}, "strategy.versionCount"),
    ({"createTime": 5}, "strategy.createTime"),
    ({"strategy": {"displayName": "x"}}, "strategy.strategy"),
])
def test_strategy_violations_name_the_json_path(body: dict[str, Any], field: str) -> None:
    assert fields(CREATE, body) == [field]
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(body, strategy_pb2.Strategy(), ignore_unknown_fields=False)


@pytest.mark.parametrize("body, field", [
    ({"displayName": "a\x00b"}, "strategy.displayName"),
    ({"kind": 99}, "strategy.kind"),
])
def test_stricter_than_proto_json_nul_and_unknown_enum_numbers(
    body: dict[str, Any], field: str,
) -> None:
    assert fields(CREATE, body) == [field]


def test_integers_may_be_strings_or_integral_numbers() -> None:
    assert fields(CREATE, {"versionCount": "7"}) == []
    assert fields(CREATE, {"versionCount": 7.0}) == []


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", True, "ten"])
def test_doubles_must_be_finite_numbers(value: Any) -> None:
    body = {"parameters": {"pegReversion": {**PEG, "entryBps": value}}}
    assert fields(VERSION, body) == ["version.parameters.pegReversion.entryBps"]


def test_bare_non_finite_tokens_and_broken_json_are_refused() -> None:
    [violation] = strictjson.violations(b'{"entryBps": NaN}', *strictjson.body_target(VERSION)
                                        or ())
    assert violation.field == "version" and "NaN" in violation.description
    assert fields(VERSION, b'{"a": ') == ["version"]
    assert fields(VERSION, b'{"state": 1, "state": 2}') == ["version"]


def test_unknown_fields_at_every_depth_and_oneofs() -> None:
    body = {"parameters": {"pegReversion": {**PEG, "entryBsp": 5}, "triangular": {}}}
    assert fields(VERSION, body) == ["version.parameters.pegReversion.entryBsp",
                                     "version.parameters.triangular"]
    deep = {"config": {"venues": [{"venue": "a"}, {"slippage": {"fixedBps": 1, "fixdBps": 2}}],
                       "range": {"startTime": "2026-01-01T00:00:00Z"}}}
    assert fields(BACKTEST, deep) == ["backtest.config.venues[1].slippage.fixdBps"]
    assert fields(BACKTEST, {"config": {"venues": [{"latencyBars": 2**40}]}}) == [
        "backtest.config.venues[0].latencyBars"]
    assert fields(TRANSITION, {"state": "VERSION_STATE_APPROVED", "reasonn": "x"}) == ["reasonn"]
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(deep, backtest_pb2.Backtest())


def test_violations_are_capped() -> None:
    body = {f"f{i}": i for i in range(100)}
    assert len(fields(CREATE, body)) == strictjson.MAX_VIOLATIONS


def _header(body: bytes) -> str:
    return base64.b64encode(body).decode()


def test_check_request_refuses_a_bad_body_with_bad_request_details() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_request(CREATE, strategy_pb2.CreateStrategyRequest(),
                      _header(b'{"displayName": "x", "typo": 1}'), True)
    assert raised.value.reason == "INVALID_JSON_BODY"
    assert [v.field for v in raised.value.field_violations] == ["strategy.typo"]
    check_request(CREATE, strategy_pb2.CreateStrategyRequest(), _header(b'{"kind": 1}'), True)
    check_request(CREATE, strategy_pb2.CreateStrategyRequest(), "", True)  # empty body


def test_check_request_fails_closed_for_transcoded_calls_without_the_body() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_request(CREATE, strategy_pb2.CreateStrategyRequest(), None, True)
    assert raised.value.reason == "BODY_NOT_CHECKED"
    # Native gRPC (not transcoded) and REST methods without a body need none.
    check_request(CREATE, strategy_pb2.CreateStrategyRequest(), None, False)
    check_request("usdcarb.v1.StrategyService/GetStrategy", strategy_pb2.GetStrategyRequest(),
                  None, True)
    with pytest.raises(InvalidArgument):
        check_request(CREATE, strategy_pb2.CreateStrategyRequest(), "not base64!", True)


def test_undecodable_bytes_become_invalid_argument_not_unknown() -> None:
    decode = _guarded(strategy_pb2.CreateStrategyRequest.FromString)
    assert decode is not None
    request = decode(b"\x0a\x05\x2a\x03\x0a\x01")  # a truncated nested message
    assert isinstance(request, Undecodable)
    with pytest.raises(InvalidArgument) as raised:
        check_request(CREATE, request, None, False)
    assert raised.value.reason == "UNDECODABLE_REQUEST"
    assert "DecodeError" not in raised.value.message
