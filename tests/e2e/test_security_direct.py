"""Zero trust inside the mesh: every service proves who calls it, straight at its port.

Each RPC of each service (bypassing Envoy, as a compromised neighbour on the host or in
the pod network would) is called with no token, a forged claims header, a token signed
by another key, an expired token, and a token for another audience: each is
UNAUTHENTICATED with an ErrorInfo reason before any handler runs. Service principals
reach exactly the methods their service needs.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from e2e.direct import service_channel
from e2e.test_security_authz import CALLS, grpc_outcome, reason_of
from usdcarb.devstack.stack import StackInfo
from usdcarb.gateway.devtoken import DEV_PRIVATE_KEY, mint_dev_token
from usdcarb.platform import authz
from usdcarb.platform.service_auth import DEV_SERVICE_KEY, derive_credential
from usdcarb.v1 import common_pb2, identity_pb2, identity_pb2_grpc, validation_pb2

pytestmark = pytest.mark.e2e


def _claims_header(role: str) -> str:
    claims = {"sub": "users/mallory", "roles": [role]}
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


def _other_key_token() -> str:
    """A well-formed token under the published DEV kid, signed by a key nobody published."""
    good = mint_dev_token("users/mallory", ["admin"])
    kid = jwt.get_unverified_header(good)["kid"]
    claims = jwt.decode(good, options={"verify_signature": False})
    return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                      headers={"kid": kid})


ATTACKS: dict[str, Any] = {
    "no token": lambda: [],
    "forged claims header": lambda: [("x-jwt-payload", _claims_header("admin")),
                                     ("x-jwt-sub", "users/mallory")],
    "token signed by another key": lambda: [("authorization", f"Bearer {_other_key_token()}")],
    "expired token": lambda: [("authorization", "Bearer " + mint_dev_token(
        "users/mallory", ["admin"], ttl=60, now=time.time() - 3600))],
    "token for another audience": lambda: [("authorization", "Bearer " + mint_dev_token(
        "users/mallory", ["admin"], audience="another-api"))],
    "token from another issuer": lambda: [("authorization", "Bearer " + mint_dev_token(
        "users/mallory", ["admin"], issuer="evil-identity"))],
}
REASONS = {
    "no token": "TOKEN_MISSING",
    "forged claims header": "TOKEN_MISSING",
    "token signed by another key": "TOKEN_INVALID",
    "expired token": "TOKEN_EXPIRED",
    "token for another audience": "TOKEN_WRONG_AUDIENCE",
    "token from another issuer": "TOKEN_WRONG_ISSUER",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_every_rpc_of_every_service_refuses_a_caller_without_a_valid_token(
    stack: StackInfo, attack: str
) -> None:
    assert DEV_PRIVATE_KEY.exists()
    problems = []
    by_service: dict[str, list[Any]] = {}
    for svc, m in CALLS:
        by_service.setdefault(svc.short_name, []).append((svc, m))
    for name, calls in by_service.items():
        with service_channel(stack, name) as channel:
            for svc, m in calls:
                code, message, reason = grpc_outcome(channel, svc, m, ATTACKS[attack]())
                if (code, reason) != (grpc.StatusCode.UNAUTHENTICATED, REASONS[attack]):
                    problems.append(f"{svc.full_name}/{m.name} with {attack}: expected "
                                    f"UNAUTHENTICATED {REASONS[attack]}, got {code} {reason} "
                                    f"{message[:80]}")
    assert len(CALLS) > 60
    assert not problems, "\n".join(problems)


def _issue(stack: StackInfo, service: str, credential: str) -> str:
    with service_channel(stack, "identity") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        reply = stub.IssueServiceToken(identity_pb2.IssueServiceTokenRequest(
            service=service, credential=credential), timeout=5)
    return str(reply.access_token)


def test_identity_issues_service_tokens_only_for_the_right_credential(stack: StackInfo) -> None:
    token = _issue(stack, "ingestion", derive_credential(DEV_SERVICE_KEY, "ingestion"))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "service:ingestion" and claims["roles"] == []
    assert claims["exp"] - claims["iat"] <= 3600
    for service, credential in [
        ("ingestion", derive_credential(DEV_SERVICE_KEY, "backtest")),  # another's credential
        ("ingestion", derive_credential("guessed-key", "ingestion")),
        ("mallory", derive_credential(DEV_SERVICE_KEY, "mallory")),  # no such service
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            _issue(stack, service, credential)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason_of(raised.value) == "INVALID_SERVICE_CREDENTIAL"


def test_a_service_token_reaches_only_what_its_service_needs(stack: StackInfo) -> None:
    tokens = {name: _issue(stack, name, derive_credential(DEV_SERVICE_KEY, name))
              for name in ("ingestion", "backtest")}
    problems = []
    for svc, m in CALLS:
        key = f"{svc.full_name}/{m.name}"
        for name, token in tokens.items():
            with service_channel(stack, svc.short_name) as channel:
                code, _, reason = grpc_outcome(channel, svc, m,
                                               [("authorization", f"Bearer {token}")])
            granted = authz.service_may_call(name, key)
            if granted and code in (grpc.StatusCode.UNAUTHENTICATED,
                                    grpc.StatusCode.PERMISSION_DENIED):
                problems.append(f"{key} as service:{name}: expected allowed, got {code} {reason}")
            if not granted and (code, reason) != (grpc.StatusCode.PERMISSION_DENIED,
                                                  "SERVICE_NOT_GRANTED"):
                problems.append(f"{key} as service:{name}: expected PERMISSION_DENIED "
                                f"SERVICE_NOT_GRANTED, got {code} {reason}")
    assert not problems, "\n".join(problems)
    # The granted call really works: one bar checked, nothing recorded.
    batch = common_pb2.CandleBatch(
        series=common_pb2.SeriesKey(exchange="binance", symbol="BTC/USDC", timeframe="1m"),
        open_time_ms=[1_678_406_400_000], open=[20000.0], high=[20010.0], low=[19990.0],
        close=[20005.0], volume=[1.5], count=1)
    with service_channel(stack, "validation") as channel:
        reply = channel.unary_unary(
            "/usdcarb.v1.ValidationService/ValidateCandles",
            request_serializer=validation_pb2.ValidateCandlesRequest.SerializeToString,
            response_deserializer=validation_pb2.ValidateCandlesResponse.FromString,
        )(validation_pb2.ValidateCandlesRequest(batch=batch, record=False),
          metadata=[("authorization", f"Bearer {tokens['ingestion']}")], timeout=5)
    assert list(reply.accepted) == [True]


def test_the_gateway_does_not_route_service_token_issuance(stack: StackInfo) -> None:
    with stack.channel() as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.IssueServiceToken(identity_pb2.IssueServiceTokenRequest(
                service="backtest", credential=uuid.uuid4().hex), timeout=5)
    assert raised.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND,
                                   grpc.StatusCode.UNAUTHENTICATED)
