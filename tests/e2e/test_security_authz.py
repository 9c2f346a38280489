"""The authorization matrix: every RPC x every role, through Envoy (REST and gRPC) and
straight to each service (a call that slipped past the gateway), exactly as the table says.

Tokens here are DEV-ONLY tokens (published by identity in dev/test only) with a fresh
subject per call, so the per-subject rate limits never interfere with the matrix.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from e2e.direct import service_channel
from identity.gatewaykit import admin_token, call
from usdcarb.devstack.stack import REPO, StackInfo
from usdcarb.gateway.api import Method, Service, load_services
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.platform import authz

pytestmark = pytest.mark.e2e

SERVICES = load_services(REPO / "gen" / "descriptor" / "usdcarb.binpb")
CALLS = [(svc, m) for svc in SERVICES for m in svc.methods
         if not authz.is_public(f"{svc.full_name}/{m.name}")]


def rest_path(template: str) -> str:
    # {name=users/*} -> users/me; {parent=users/*}/apiKeys -> users/me/apiKeys; {x} -> me
    def fill(match: re.Match[str]) -> str:
        _, _, pattern = match.group(1).partition("=")
        return (pattern or "*").replace("**", "me").replace("*", "me")
    return re.sub(r"\{([^}]*)\}", fill, template)


def denied_by_table(code: grpc.StatusCode, message: str, reason: str) -> bool:
    return code == grpc.StatusCode.PERMISSION_DENIED and (
        "RBAC" in message or reason == "ROLE_REQUIRED")


def reason_of(err: grpc.RpcError) -> str:
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:
        return ""
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def grpc_outcome(channel: grpc.Channel, svc: Service, m: Method, metadata: list[Any]
                 ) -> tuple[grpc.StatusCode, str, str]:
    path = svc.grpc_path(m)
    try:
        if m.server_streaming:
            stream = channel.unary_stream(path)(b"", metadata=metadata, timeout=3)
            next(iter(stream), None)
        else:
            channel.unary_unary(path)(b"", metadata=metadata, timeout=5)
    except grpc.RpcError as err:
        return err.code(), err.details() or "", reason_of(err)
    return grpc.StatusCode.OK, "", ""


def rest_outcome(stack: StackInfo, m: Method, token: str) -> tuple[int, bytes]:
    rule = m.http_rules[0]
    body = {} if rule.method in ("POST", "PATCH", "PUT") else None
    try:
        reply = call(stack, rule.method, rest_path(rule.template), body, token=token, timeout=3)
    except TimeoutError:
        return 0, b"(stream still open: allowed)"
    return reply.status, reply.body


def token(role: str) -> str:
    return mint_dev_token(f"users/matrix-{uuid.uuid4().hex[:12]}", [role], ttl=600)


@pytest.mark.parametrize("role", authz.ROLES)
def test_every_rpc_through_the_gateway_is_allowed_or_denied_as_the_table_says(
    stack: StackInfo, gateway: str, role: str
) -> None:
    def check(item: tuple[Service, Method]) -> list[str]:
        svc, m = item
        key = f"{svc.full_name}/{m.name}"
        allowed = authz.may_call([role], key)
        wrong = []
        status, body = rest_outcome(stack, m, token(role))
        rest_denied = status == 403 and (b"RBAC" in body or b"ROLE_REQUIRED" in body)
        if allowed and (status == 401 or rest_denied):
            wrong.append(f"REST {key} as {role}: expected allowed, got {status} {body[:80]!r}")
        if not allowed and not (status == 403 and json.loads(body)["code"] == 7):
            wrong.append(f"REST {key} as {role}: expected 403, got {status} {body[:80]!r}")
        with stack.channel() as channel:
            code, message, reason = grpc_outcome(
                channel, svc, m, [("authorization", f"Bearer {token(role)}")])
        if allowed and (code == grpc.StatusCode.UNAUTHENTICATED
                        or denied_by_table(code, message, reason)):
            wrong.append(f"gRPC {key} as {role}: expected allowed, got {code} {message}")
        if not allowed and code != grpc.StatusCode.PERMISSION_DENIED:
            wrong.append(f"gRPC {key} as {role}: expected PERMISSION_DENIED, got {code}")
        return wrong

    with ThreadPoolExecutor(4) as pool:
        problems = [p for found in pool.map(check, CALLS) for p in found]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", authz.ROLES)
def test_every_service_refuses_what_the_table_refuses_even_past_the_gateway(
    stack: StackInfo, role: str
) -> None:
    problems = []
    refused: dict[str, str] = {}  # subject -> method, for the audit log below
    for svc, m in CALLS:
        key = f"{svc.full_name}/{m.name}"
        subject = f"users/direct-{uuid.uuid4().hex[:8]}"
        bearer = mint_dev_token(subject, [role], ttl=600)
        with service_channel(stack, svc.short_name) as channel:
            code, message, reason = grpc_outcome(
                channel, svc, m, [("authorization", f"Bearer {bearer}")])
        allowed = authz.may_call([role], key)
        if allowed and (code == grpc.StatusCode.UNAUTHENTICATED
                        or denied_by_table(code, message, reason)):
            problems.append(f"{key} as {role}: expected allowed, got {code} {reason}")
        if not allowed and (code, reason) != (grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED"):
            problems.append(f"{key} as {role}: expected PERMISSION_DENIED, got {code} {reason}")
        if not allowed:
            refused[subject] = key
    assert not problems, "\n".join(problems)
    # Every refusal, in whichever service, is in the audit log admins query.
    admin = admin_token(stack, source="127.0.0.31")
    deadline = time.monotonic() + 20
    while True:
        missing = {sub: key for sub, key in refused.items() if not [
            e for e in call(stack, "GET", f"/v1/auditEvents?action=call.denied&actor={sub}",
                            token=admin).json().get("events", [])
            if e["target"] == key and e["outcome"] == "failure"]}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"refusals missing from the audit log: {sorted(missing.values())[:5]}"
