"""The attack matrix through Envoy against the real identity service: every forged,
stale, misdirected or replayed credential is refused with the right status."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from identity.gatewaykit import admin_token as get_admin_token
from identity.gatewaykit import (
    call,
    claims,
    create_user,
    hs256_with_public_key,
    login,
    sign_with_fresh_key,
    tamper,
    unsigned,
)
from usdcarb.devstack.stack import StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import identity_pb2 as pb
from usdcarb.v1 import identity_pb2_grpc

pytestmark = pytest.mark.e2e

ME = "/v1/users/me"


@pytest.fixture(scope="module")
def admin(stack: StackInfo) -> str:
    return get_admin_token(stack, source="127.0.0.11")


@pytest.fixture(scope="module")
def viewer(stack: StackInfo, admin: str) -> dict[str, Any]:
    user = create_user(stack, admin, "viewer", "victim")
    return {**user, **login(stack, user["username"], source="127.0.0.11")}


@pytest.fixture(scope="module")
def jwks(stack: StackInfo) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = call(stack, "GET", "/.well-known/jwks.json").json()["keys"]
    return keys


def current_kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


FORGERIES: dict[str, Callable[[dict[str, Any], list[dict[str, Any]]], str]] = {
    "expired": lambda v, k: mint_dev_token("users/x", ["admin"], ttl=60, now=time.time() - 3600),
    "not-yet-valid": lambda v, k: jwt.encode(
        claims(nbf=int(time.time()) + 3600, exp=int(time.time()) + 7200),
        _dev_key(), algorithm="ES256", headers={"kid": "dev-2026-11"}),
    "wrong-issuer": lambda v, k: mint_dev_token("users/x", ["admin"], issuer="evil-issuer"),
    "unknown-kid": lambda v, k: sign_with_fresh_key(claims(), "no-such-kid"),
    "another-key-real-kid": lambda v, k: sign_with_fresh_key(
        claims(), current_kid(v["accessToken"])),
    "alg-none": lambda v, k: unsigned(claims(), current_kid(v["accessToken"])),
    "hs256-with-public-key": lambda v, k: hs256_with_public_key(
        claims(), next(j for j in k if j["kid"] == current_kid(v["accessToken"]))),
    "tampered-payload": lambda v, k: tamper(v["accessToken"], roles=["admin"]),
    "garbage": lambda v, k: "not.a.jwt",
}


def _dev_key() -> Any:
    from cryptography.hazmat.primitives import serialization

    from usdcarb.gateway.devtoken import DEV_PRIVATE_KEY
    return serialization.load_pem_private_key(DEV_PRIVATE_KEY.read_bytes(), password=None)


def test_no_token_is_401(stack: StackInfo) -> None:
    reply = call(stack, "GET", ME)
    assert reply.status == 401 and reply.json()["code"] == 16


@pytest.mark.parametrize("attack", sorted(FORGERIES))
def test_forged_or_stale_tokens_are_401_on_rest_and_grpc(
    stack: StackInfo, gateway: str, viewer: dict[str, Any], jwks: list[dict[str, Any]],
    attack: str,
) -> None:
    token = FORGERIES[attack](viewer, jwks)
    reply = call(stack, "GET", "/v1/auditEvents", token=token)
    assert reply.status == 401, (attack, reply.status, reply.body)
    with stack.channel() as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListAuditEvents(pb.ListAuditEventsRequest(),
                                 metadata=[("authorization", f"Bearer {token}")], timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, attack


def test_wrong_audience_is_403(stack: StackInfo) -> None:
    token = mint_dev_token("users/x", ["admin"], audience="another-api")
    assert call(stack, "GET", ME, token=token).status == 403


def test_the_genuine_token_works(stack: StackInfo, viewer: dict[str, Any]) -> None:
    reply = call(stack, "GET", ME, token=viewer["accessToken"])
    assert reply.status == 200 and reply.json()["username"] == viewer["username"]


def test_forged_claim_headers_are_ignored(stack: StackInfo, viewer: dict[str, Any]) -> None:
    forged = {"x-jwt-payload": "eyJzdWIiOiJ1c2Vycy9tYWxsb3J5Iiwicm9sZXMiOlsiYWRtaW4iXX0",
              "x-jwt-sub": "users/mallory", "x-jwt-roles": "WyJhZG1pbiJd"}
    assert call(stack, "GET", "/v1/users", headers=forged).status == 401
    reply = call(stack, "GET", "/v1/users", headers=forged, token=viewer["accessToken"])
    assert reply.status == 403 and reply.json()["code"] == 7


def test_revoked_refresh_token_is_refused(stack: StackInfo, admin: str) -> None:
    user = create_user(stack, admin, "analyst", "logout")
    tokens = login(stack, user["username"], source="127.0.0.12")
    reply = call(stack, "POST", "/v1/auth:logout", {"refreshToken": tokens["refreshToken"]},
                 token=tokens["accessToken"])
    assert reply.status == 200, reply.body
    again = call(stack, "POST", "/v1/auth:refresh", {"refreshToken": tokens["refreshToken"]},
                 source="127.0.0.12")
    assert again.status == 401 and again.json()["code"] == 16


def test_reused_refresh_token_revokes_the_whole_family(stack: StackInfo, admin: str) -> None:
    user = create_user(stack, admin, "analyst", "reuse")
    first = login(stack, user["username"], source="127.0.0.13")
    second = call(stack, "POST", "/v1/auth:refresh", {"refreshToken": first["refreshToken"]},
                  source="127.0.0.13")
    assert second.status == 200
    stolen = call(stack, "POST", "/v1/auth:refresh", {"refreshToken": first["refreshToken"]},
                  source="127.0.0.13")
    assert stolen.status == 401
    legit = call(stack, "POST", "/v1/auth:refresh",
                 {"refreshToken": second.json()["refreshToken"]}, source="127.0.0.13")
    assert legit.status == 401  # the family died with the reuse
    audit = call(stack, "GET", "/v1/auditEvents?action=token.reuse", token=admin).json()
    assert any(e["target"] == user["name"] for e in audit["events"])


def test_revoked_api_key_is_refused(stack: StackInfo, admin: str) -> None:
    user = create_user(stack, admin, "trader", "keys")
    tokens = login(stack, user["username"], source="127.0.0.14")
    expire = (datetime.now(UTC) + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    created = call(stack, "POST", "/v1/users/me/apiKeys",
                   {"displayName": "ci", "roles": ["ROLE_VIEWER"], "expireTime": expire},
                   token=tokens["accessToken"])
    assert created.status == 200, created.body
    secret, name = created.json()["secret"], created.json()["apiKey"]["name"]
    exchanged = call(stack, "POST", "/v1/auth:exchangeApiKey", {"apiKey": secret},
                     source="127.0.0.14")
    assert exchanged.status == 200
    key_token = exchanged.json()["accessToken"]
    assert call(stack, "GET", ME, token=key_token).status == 200
    assert call(stack, "GET", "/v1/ingestJobs", token=key_token).status in (200, 501)
    # Scoped to viewer: a trader-only call with the key's token is refused.
    assert call(stack, "POST", "/v1/ingestJobs", {}, token=key_token).status == 403
    revoked = call(stack, "POST", f"/v1/{name}:revoke", {}, token=tokens["accessToken"])
    assert revoked.status == 200
    again = call(stack, "POST", "/v1/auth:exchangeApiKey", {"apiKey": secret},
                 source="127.0.0.14")
    assert again.status == 401


def test_brute_force_login_is_locked_out_then_rate_limited(stack: StackInfo, admin: str) -> None:
    user = create_user(stack, admin, "viewer", "brute")
    source = "127.0.0.66"
    statuses = []
    for _ in range(40):  # bounded: the per-IP budget is 20 a minute
        reply = call(stack, "POST", "/v1/auth:login",
                     {"username": user["username"], "password": "guess guess guess"},
                     source=source)
        statuses.append(reply.status)
        if "x-envoy-ratelimited" in reply.headers:
            break
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429  # locked out: even a right password would now be refused
    locked = call(stack, "POST", "/v1/auth:login",
                  {"username": user["username"], "password": "a long enough password 42"},
                  source="127.0.0.67")
    assert locked.status == 429 and locked.json()["code"] == 8
    # Then the gateway's per-IP limit on token endpoints.
    assert statuses[-1] == 429 and "x-envoy-ratelimited" in reply.headers
    assert "auth" in reply.headers["x-ratelimit-limit"] and len(statuses) <= 22
    assert int(reply.headers["retry-after"]) >= 1
    audit = call(stack, "GET", "/v1/auditEvents?action=user.lockout", token=admin)
    assert any(e["target"] == user["name"] for e in audit.json()["events"])


def test_grpc_rate_limited_login_carries_quota_failure_and_retry_info(
    stack: StackInfo, gateway: str
) -> None:
    # The lockout reaches gRPC callers as RESOURCE_EXHAUSTED with QuotaFailure + RetryInfo.
    admin = get_admin_token(stack, source="127.0.0.15")
    user = create_user(stack, admin, "viewer", "lockgrpc")
    with stack.channel() as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        for _ in range(5):
            with pytest.raises(grpc.RpcError):
                stub.Login(pb.LoginRequest(username=user["username"], password="nope nope nope"),
                           timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.Login(pb.LoginRequest(username=user["username"], password="nope nope nope"),
                       timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err.value)
    assert status is not None
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    assert any(d.Is(error_details_pb2.QuotaFailure.DESCRIPTOR) for d in status.details)
