"""A real Envoy with the generated config in front of an in-process grpc.aio backend."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from usdcarb.gateway.config import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import backtest_pb2, backtest_pb2_grpc, strategy_pb2, strategy_pb2_grpc

pytestmark = pytest.mark.integration


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    gateway: Any,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.config.listen_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def token() -> str:
    return mint_dev_token("alice", ["analyst"], ttl=600)


@pytest.fixture(scope="module")
def channel(gateway: Any) -> Any:
    with grpc.insecure_channel(gateway.grpc_target) as ch:
        yield ch


def test_rest_get_returns_camel_case_json(gateway: Any, token: str) -> None:
    resp = call(gateway, "GET", "/v1/strategies/abc", bearer(token))
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["name"] == "strategies/abc"
    assert body["displayName"] == "Spread A/B"
    assert body["kind"] == "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"
    assert body["versionCount"] == 0 and body["latestVersionId"] == ""  # primitives printed
    assert "display_name" not in body


def test_successful_rest_response_has_no_grpc_status_headers(gateway: Any, token: str) -> None:
    resp = call(gateway, "GET", "/v1/strategies?pageSize=3", bearer(token))
    assert resp.status == 200
    assert len(resp.json()["strategies"]) == 3
    assert "grpc-status" not in resp.headers and "grpc-message" not in resp.headers


def test_rest_error_keeps_status_and_json_body(gateway: Any, token: str) -> None:
    # GetBacktest is not implemented by the fake backend: UNIMPLEMENTED → 501.
    resp = call(gateway, "GET", "/v1/backtests/b1", bearer(token))
    assert resp.status == 501
    assert resp.json()["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]


def test_backend_receives_the_original_token_to_verify_and_no_claims_payload(
    gateway: Any, backend: Any, token: str
) -> None:
    body = call(gateway, "GET", "/v1/strategies/who", bearer(token)).json()
    assert body["creator"] == "alice"
    # forward: true — each service verifies the very token the client sent.
    assert body["description"] == f"Bearer {token}"
    seen = backend.recorder.last("GetStrategy")
    assert seen["authorization"] == f"Bearer {token}"
    assert "x-jwt-payload" not in seen
    assert seen["x-jwt-sub"] == "alice"
    # A list claim reaches claim_to_headers as base64 of its JSON.
    assert json.loads(base64.b64decode(seen["x-jwt-roles"])) == ["analyst"]


def test_native_grpc_through_envoy(channel: Any, token: str, backend: Any) -> None:
    stub = strategy_pb2_grpc.StrategyServiceStub(channel)  # type: ignore[no-untyped-call]
    reply = stub.GetStrategy(
        strategy_pb2.GetStrategyRequest(name="strategies/g1"),
        metadata=[("authorization", f"Bearer {token}")],
    )
    assert reply.name == "strategies/g1" and reply.creator == "alice"
    listed = stub.ListStrategies(
        strategy_pb2.ListStrategiesRequest(page_size=2),
        metadata=[("authorization", f"Bearer {token}")],
    )
    assert [s.name for s in listed.strategies] == ["strategies/s0", "strategies/s1"]


def test_native_grpc_without_token_is_unauthenticated(channel: Any) -> None:
    stub = strategy_pb2_grpc.StrategyServiceStub(channel)  # type: ignore[no-untyped-call]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetStrategy(strategy_pb2.GetStrategyRequest(name="strategies/g1"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_missing_token_is_401(gateway: Any) -> None:
    resp = call(gateway, "GET", "/v1/strategies/abc")
    assert resp.status == 401
    # Envoy's own replies carry the same google.rpc.Status JSON as every REST error.
    assert resp.headers["content-type"] == "application/json"
    assert json.loads(resp.body) == {"code": 16, "message": "Jwt is missing", "details": [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "UNAUTHENTICATED",
        "domain": "usdcarb.dev", "metadata": {"details": "jwt_authn_access_denied{Jwt_is_missing}"},
    }]}


def test_unknown_path_needs_a_token_too(gateway: Any, token: str) -> None:
    assert call(gateway, "GET", "/v1/nothing").status == 401
    assert call(gateway, "GET", "/v1/nothing", bearer(token)).status == 404


def test_expired_token_is_401(gateway: Any) -> None:
    # Beyond the 30 s clock skew Envoy allows.
    expired = mint_dev_token("alice", ["analyst"], ttl=60, now=time.time() - 3600)
    resp = call(gateway, "GET", "/v1/strategies/abc", bearer(expired))
    assert resp.status == 401 and b"expired" in resp.body


def test_token_signed_by_another_key_is_401(gateway: Any) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    forged = jwt.encode(
        {
            "iss": DEFAULT_ISSUER,
            "aud": DEFAULT_AUDIENCE,
            "sub": "mallory",
            "roles": ["admin"],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        },
        stranger,
        algorithm="ES256",
        headers={"kid": "dev-2026-11"},
    )
    resp = call(gateway, "GET", "/v1/strategies/abc", bearer(forged))
    assert resp.status == 401 and b"verification fails" in resp.body


def test_wrong_audience_is_403(gateway: Any) -> None:
    other = mint_dev_token("alice", ["analyst"], audience="someone-else")
    assert call(gateway, "GET", "/v1/strategies/abc", bearer(other)).status == 403


def test_forged_identity_headers_are_replaced_on_protected_routes(
    gateway: Any, backend: Any, token: str
) -> None:
    forged = {
        "x-jwt-payload": "eyJzdWIiOiJtYWxsb3J5In0",
        "x-jwt-sub": "mallory",
        "x-jwt-roles": "admin",
    }
    resp = call(gateway, "GET", "/v1/strategies/abc", {**bearer(token), **forged})
    assert resp.status == 200
    assert resp.json()["creator"] == "alice"
    seen = backend.recorder.last("GetStrategy")
    assert "x-jwt-payload" not in seen
    assert seen["x-jwt-sub"] == "alice" and seen["x-jwt-roles"] != "admin"


def test_forged_identity_headers_do_not_reach_the_backend_on_public_routes(
    gateway: Any, backend: Any
) -> None:
    forged = {
        "x-jwt-payload": "eyJzdWIiOiJtYWxsb3J5In0",
        "x-jwt-sub": "mallory",
        "x-jwt-roles": "admin",
    }
    resp = call(gateway, "GET", "/.well-known/jwks.json", forged)
    assert resp.status == 200  # public: no token needed
    # The backend echoes any identity header it saw as an extra "echo:" key.
    assert [key["kid"] for key in resp.json()["keys"]] == ["dev-2026-11"]
    seen = backend.recorder.last("GetJwks")
    assert not {"x-jwt-payload", "x-jwt-sub", "x-jwt-roles"} & set(seen)


def test_forged_roles_do_not_survive_a_token_without_roles(gateway: Any, backend: Any) -> None:
    no_roles = mint_dev_token("carol", [], ttl=600)
    # An empty list claim: claim_to_headers may set nothing, so the forged value must be gone.
    call(gateway, "GET", "/v1/strategies/abc", {**bearer(no_roles), "x-jwt-roles": "admin"})
    seen = backend.recorder.last("GetStrategy")
    assert seen["x-jwt-sub"] == "carol"
    assert seen.get("x-jwt-roles") != "admin"


def test_unknown_query_parameter_is_400_not_503(gateway: Any, token: str) -> None:
    resp = call(gateway, "GET", "/v1/strategies/abc?bogus=1", bearer(token))
    assert resp.status == 400 and b"bogus" in resp.body


def test_streaming_rest_is_ndjson_ending_with_the_outcome(gateway: Any, token: str) -> None:
    resp = call(gateway, "GET", "/v1/backtests/b1:watch", bearer(token))
    assert resp.status == 200
    lines = [json.loads(line) for line in resp.body.decode().splitlines()]
    assert [event["sequence"] for event in lines] == ["1", "2", "3"]  # int64 → JSON string
    assert all(event["backtest"] == "backtests/b1" for event in lines)
    assert "progress" in lines[0]
    assert lines[-1]["completed"]["outcome"]["result"] == "RESULT_OK"


def test_streaming_rest_is_sse_for_event_source_callers(gateway: Any, token: str) -> None:
    """The same stream for a caller that accepts text/event-stream (EventSource): one
    ``data: {json}`` event per message, the outcome in the last."""
    resp = call(gateway, "GET", "/v1/backtests/b3:watch",
                {**bearer(token), "accept": "text/event-stream"})
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [chunk for chunk in resp.body.decode().split("\n\n") if chunk.strip()]
    assert all(chunk.startswith("data: ") for chunk in events), events
    lines = [json.loads(chunk.removeprefix("data: ")) for chunk in events]
    assert [event["sequence"] for event in lines] == ["1", "2", "3"]
    assert lines[-1]["completed"]["outcome"]["result"] == "RESULT_OK"
    # Without the header: NDJSON, as before.
    plain = call(gateway, "GET", "/v1/backtests/b3:watch", bearer(token))
    assert [json.loads(line) for line in plain.body.decode().splitlines()] == lines


def test_native_grpc_streaming_through_envoy(channel: Any, token: str) -> None:
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)  # type: ignore[no-untyped-call]
    events = list(
        stub.WatchBacktest(
            backtest_pb2.WatchBacktestRequest(name="backtests/b2"),
            metadata=[("authorization", f"Bearer {token}")],
        )
    )
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[-1].WhichOneof("event") == "completed"


def test_health_and_reflection_are_public_but_calls_are_not(channel: Any) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="usdcarb.v1.StrategyService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    # Reflection is on the public allow-list with health (issue 9): no token needed.
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = reflect.ServerReflectionInfo(iter([request]))
    names = {s.name for s in answer.list_services_response.service}
    assert "usdcarb.v1.StrategyService" in names
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/usdcarb.v1.StrategyService/ListStrategyKinds")(b"")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_dead_backend_fails_fast_with_503(gateway: Any, token: str) -> None:
    # notification points at a closed port: its health check fails, no panic routing.
    resp = call(gateway, "GET", "/v1/channels", bearer(token))
    assert resp.status == 503


def test_cors_preflight_for_allowed_origin_only(gateway: Any) -> None:
    preflight = {
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
    }
    allowed = call(
        gateway, "OPTIONS", "/v1/strategies", {"origin": "http://localhost:5173", **preflight}
    )
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    other = call(
        gateway, "OPTIONS", "/v1/strategies", {"origin": "http://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers


def test_access_log_is_json_with_route_status_and_subject(gateway: Any, token: str) -> None:
    marker = "access-log-probe"
    call(gateway, "GET", f"/v1/strategies/{marker}", {**bearer(token), "x-request-id": marker})

    def logged() -> dict[str, Any]:
        entries = [e for e in gateway.access_log() if e.get("request_id") == marker]
        assert entries, "no access log entry yet"
        entry: dict[str, Any] = entries[-1]
        return entry

    entry = eventually(logged)
    assert entry["method"] == "GET"
    assert entry["path"] == f"/v1/strategies/{marker}"
    assert entry["status"] == 200 and entry["grpc_status"] == 0
    assert entry["upstream_cluster"] == "strategy"
    assert entry["route"] == "rest:usdcarb.v1.StrategyService/GetStrategy"
    assert entry["sub"] == "alice"
    assert isinstance(entry["duration_ms"], int)
    assert entry["client"] == "127.0.0.1"
