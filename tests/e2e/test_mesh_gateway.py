"""The running mesh through Envoy: REST and gRPC, tokens, errors, reflection, health."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from usdcarb.devstack.stack import REPO, StackInfo
from usdcarb.gateway.config import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import strategy_pb2 as pb
from usdcarb.v1 import strategy_pb2_grpc

pytestmark = pytest.mark.e2e

GRPCURL = REPO / ".tools" / "bin" / "grpcurl"
DESCRIPTOR = REPO / "gen" / "descriptor" / "usdcarb.binpb"
PROTO_SERVICES = {
    "strategy": "usdcarb.v1.StrategyService", "ingestion": "usdcarb.v1.IngestionService",
    "validation": "usdcarb.v1.ValidationService", "backtest": "usdcarb.v1.BacktestService",
    "notification": "usdcarb.v1.NotificationService", "identity": "usdcarb.v1.IdentityService",
}
SPREAD = {"crossExchangeSpread": {"symbol": "USDC/USDT", "venueA": "binance",
                                  "venueB": "kraken", "entryBps": 15, "exitBps": 3,
                                  "quantity": 10000}}


def http(stack: StackInfo, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(
        stack.gateway + path, method=method, headers=headers or {},
        data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, code, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, code, hdrs = err.read(), err.code, dict(err.headers)
    try:
        return code, json.loads(raw or b"null"), hdrs
    except ValueError:
        return code, raw.decode(), hdrs


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def token() -> str:
    return mint_dev_token("e2e-analyst", ["analyst"])


@pytest.fixture
def strategy_id(stack: StackInfo, token: str) -> str:
    sid = f"e2e-{uuid.uuid4().hex[:8]}"
    code, body, _ = http(stack, "POST", f"/v1/strategies?strategyId={sid}",
                         {"displayName": "e2e", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"},
                         bearer(token))
    assert code == 200, body
    return sid


def test_rest_reaches_the_strategy_service_with_a_valid_token(
    stack: StackInfo, token: str, strategy_id: str
) -> None:
    code, version, _ = http(stack, "POST", f"/v1/strategies/{strategy_id}/versions",
                            {"parameters": SPREAD}, bearer(token))
    assert code == 200, version
    assert version["state"] == "VERSION_STATE_DRAFT"
    code, got, headers = http(stack, "GET", f"/v1/{version['name']}", headers=bearer(token))
    assert code == 200 and got["contentHash"] == version["contentHash"]
    assert got["sequence"] == 1  # proto3 JSON: int32 as a number, camelCase names
    assert "grpc-status" not in {k.lower() for k in headers}


def test_native_grpc_through_the_gateway(stack: StackInfo, token: str, strategy_id: str) -> None:
    with stack.channel() as channel:
        stub = strategy_pb2_grpc.StrategyServiceStub(channel)
        got = stub.GetStrategy(pb.GetStrategyRequest(name=f"strategies/{strategy_id}"),
                               metadata=tuple(bearer(token).items()), timeout=10)
        assert got.creator == "e2e-analyst"
        with pytest.raises(grpc.RpcError) as err:
            stub.GetStrategy(pb.GetStrategyRequest(name=f"strategies/{strategy_id}"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _foreign_token() -> str:
    import jwt

    key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE, "sub": "mallory", "roles": ["admin"],
              "iat": now, "nbf": now, "exp": now + 600}
    jwks = json.loads((REPO / "gateway/dev-keys/DEV-ONLY-jwks.json").read_text())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": jwks["keys"][0]["kid"]})


@pytest.mark.parametrize("kind", ["missing", "expired", "foreign", "garbage"])
def test_bad_tokens_get_401_with_a_json_body(stack: StackInfo, kind: str) -> None:
    headers = {
        "missing": {},
        "expired": bearer(mint_dev_token("e2e", ["analyst"], ttl=-3600)),
        "foreign": bearer(_foreign_token()),
        "garbage": bearer("not.a.jwt"),
    }[kind]
    code, body, _ = http(stack, "GET", "/v1/strategies", headers=headers)
    assert code == 401, body
    assert isinstance(body, dict) and body.get("message"), body


def test_forged_claim_headers_from_the_client_are_not_trusted(
    stack: StackInfo, token: str
) -> None:
    forged = base64.urlsafe_b64encode(json.dumps(
        {"sub": "mallory", "roles": ["admin"]}).encode()).decode().rstrip("=")
    sid = f"e2e-{uuid.uuid4().hex[:8]}"
    headers = {**bearer(token), "x-jwt-payload": forged, "x-jwt-sub": "mallory"}
    code, body, _ = http(stack, "POST", f"/v1/strategies?strategyId={sid}",
                         {"displayName": "forge", "kind": "STRATEGY_KIND_PEG_REVERSION"}, headers)
    assert code == 200, body
    assert body["creator"] == "e2e-analyst"
    # Without a token the forged header reaches nothing.
    code, _, _ = http(stack, "GET", f"/v1/strategies/{sid}", headers={"x-jwt-payload": forged})
    assert code == 401


def test_bad_input_is_400_with_field_violations(
    stack: StackInfo, token: str, strategy_id: str
) -> None:
    bad = {"crossExchangeSpread": {**SPREAD["crossExchangeSpread"], "entryBps": -1}}
    code, body, _ = http(stack, "POST", f"/v1/strategies/{strategy_id}/versions",
                         {"parameters": bad}, bearer(token))
    assert code == 400
    assert body["code"] == 3
    (bad_request,) = [d for d in body["details"]
                      if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"]
    assert bad_request["fieldViolations"] == [{
        "field": "version.parameters.crossExchangeSpread.entryBps",
        "description": "expected a number > 0, got -1.0", "reason": ""}]
    code, body, _ = http(stack, "GET", "/v1/strategies?bogus=1", headers=bearer(token))
    assert code == 400, body  # unknown query parameters are refused, not a 503
    code, body, _ = http(stack, "GET", "/v1/strategies/nope", headers=bearer(token))
    assert code == 404 and body["code"] == 5


def test_every_service_answers_through_the_gateway(stack: StackInfo, token: str) -> None:
    # NotificationService answered UNIMPLEMENTED before issue 10; every service serves now.
    code, body, _ = http(stack, "GET", "/v1/channels", headers=bearer(token))
    assert code == 200, body
    assert isinstance(body.get("channels", []), list)


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GRPCURL), *args], capture_output=True, text=True, timeout=30,
                          check=False)


def tls_flags(stack: StackInfo, service: str | None = None) -> list[str]:
    """grpcurl's flags for the stack: trust its dev CA; straight to a service's port, also
    present the client certificate and check the service's name."""
    if not stack.ca:
        return ["-plaintext"]
    if service is None:
        return ["-cacert", stack.ca]
    return ["-cacert", stack.ca, "-cert", stack.client_cert, "-key", stack.client_key,
            "-servername", service]


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl not installed (make gotools)")
def test_grpcurl_lists_and_calls_every_service_by_reflection(stack: StackInfo,
                                                             token: str) -> None:
    # Every Python service; ratelimit is Envoy's reference service (Go): no reflection, and
    # its mutual TLS admits Envoy's certificate only (its health gates the stack's start).
    for name in PROTO_SERVICES:
        target = f"127.0.0.1:{stack.processes[name].port}"
        flags = tls_flags(stack, name)
        listed = grpcurl(*flags, target, "list")
        assert listed.returncode == 0, listed.stderr
        assert "grpc.health.v1.Health" in listed.stdout
        health = grpcurl(*flags, target, "grpc.health.v1.Health/Check")
        assert '"status": "SERVING"' in health.stdout, health.stderr
        if name in PROTO_SERVICES:
            service = PROTO_SERVICES[name]
            assert service in listed.stdout
            described = grpcurl(*flags, target, "describe", service)
            assert "rpc " in described.stdout
    kinds = grpcurl(*tls_flags(stack, "strategy"), "-H", f"authorization: Bearer {token}",
                    f"127.0.0.1:{stack.processes['strategy'].port}",
                    "usdcarb.v1.StrategyService/ListStrategyKinds")
    assert "strategyKinds/cross-exchange-spread" in kinds.stdout
    # Past the gateway, a call without a token is refused by the service itself.
    anonymous = grpcurl(*tls_flags(stack, "notification"),
                        f"127.0.0.1:{stack.processes['notification'].port}",
                        "usdcarb.v1.NotificationService/ListChannels")
    assert "Unauthenticated" in anonymous.stderr + anonymous.stdout


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl not installed (make gotools)")
def test_grpcurl_through_the_gateway_with_a_token(stack: StackInfo, gateway: str,
                                                  token: str) -> None:
    auth = f"authorization: Bearer {token}"
    tls = tls_flags(stack)
    with_protoset = grpcurl(*tls, "-protoset", str(DESCRIPTOR), "-H", auth, gateway,
                            "usdcarb.v1.StrategyService/ListStrategyKinds")
    assert with_protoset.returncode == 0, with_protoset.stderr
    assert "peg-reversion" in with_protoset.stdout
    by_reflection = grpcurl(*tls, "-H", auth, gateway, "list")
    assert by_reflection.returncode == 0, by_reflection.stderr
    assert "usdcarb.v1.StrategyService" in by_reflection.stdout
    refused = grpcurl(*tls, "-protoset", str(DESCRIPTOR), gateway,
                      "usdcarb.v1.StrategyService/ListStrategyKinds")
    assert "Unauthenticated" in refused.stderr


def _health(stack: StackInfo, name: str) -> int:
    with stack.channel(name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status: int = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
        return status


def _wait(predicate: Any, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_health_follows_the_database(stack: StackInfo, token: str) -> None:
    from usdcarb.devstack import PostgresServer

    pg = PostgresServer(Path(stack.root) / "pg")
    assert pg.attach()
    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)
    assert _health(stack, "strategy") == serving
    pg.stop()
    try:
        _wait(lambda: _health(stack, "strategy") == not_serving)
        # The gateway's health checks take the backend out: callers get 503 quickly.
        _wait(lambda: http(stack, "GET", "/v1/strategies", headers=bearer(token))[0] == 503)
    finally:
        pg.start()
    _wait(lambda: _health(stack, "strategy") == serving)
    _wait(lambda: http(stack, "GET", "/v1/strategies", headers=bearer(token))[0] == 200)
    # Leave the shared stack as found: every service SERVING and seen healthy by Envoy.
    for name in PROTO_SERVICES:
        _wait(lambda name=name: _health(stack, name) == serving)
    _wait(lambda: _gateway_sees_all_healthy(stack))


def _gateway_sees_all_healthy(stack: StackInfo) -> bool:
    with urllib.request.urlopen(f"{stack.admin}/clusters", timeout=2) as resp:
        text = resp.read().decode()
    healthy = {line.split("::")[0] for line in text.splitlines()
               if "::health_flags::healthy" in line}
    return all(name in healthy for name in PROTO_SERVICES)


def _details(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    return [] if status is None else [d.type_url for d in status.details]


def test_errors_through_the_gateway_keep_their_grpc_details(stack: StackInfo, token: str) -> None:
    with stack.channel() as channel:
        stub = strategy_pb2_grpc.StrategyServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetStrategy(pb.GetStrategyRequest(name="bad"),
                             metadata=tuple(bearer(token).items()), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"type.googleapis.com/{error_details_pb2.BadRequest.DESCRIPTOR.full_name}" in (
        _details(err.value))


def test_the_gateway_serves_only_tls_with_h2_and_http11_on_one_port(stack: StackInfo) -> None:
    assert stack.gateway.startswith("https://") and stack.ca
    host, port = stack.gateway_target.split(":")
    plain = HTTPConnection(host, int(port), timeout=5)
    with pytest.raises((HTTPException, OSError)):
        plain.request("GET", "/v1/strategyKinds")
        plain.getresponse()
    plain.close()
    for alpn in ("h2", "http/1.1"):
        context = stack.ssl_context()
        assert context is not None
        context.set_alpn_protocols([alpn])
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as conn:
            assert conn.selected_alpn_protocol() == alpn
            assert conn.version() in ("TLSv1.2", "TLSv1.3")
    # TLS 1.0/1.1 are refused by the listener, not only by our client's defaults.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(stack.ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            pytest.raises(ssl.SSLError):
        old.wrap_socket(raw, server_hostname="localhost")


def test_a_service_port_requires_a_client_certificate_from_the_dev_ca(stack: StackInfo) -> None:
    target = f"127.0.0.1:{stack.processes['strategy'].port}"
    no_cert = stack.channel_credentials()
    assert no_cert is not None
    for channel in (grpc.insecure_channel(target),
                    grpc.secure_channel(target, no_cert,
                                        options=[("grpc.ssl_target_name_override", "strategy")])):
        with channel, pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _health(stack, "strategy") == health_pb2.HealthCheckResponse.SERVING
