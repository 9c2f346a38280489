"""Helpers of the end-to-end security tests: REST calls from a chosen loopback address,
real logins through the gateway, forged tokens.

Each test picks its own source address in 127.0.0.0/8 so the per-IP limits of the
token endpoints (which Envoy keys on the peer address) never spill over between tests.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from usdcarb.devstack.stack import StackInfo

ADMIN = os.environ.get("USDCARB_IDENTITY_BOOTSTRAP_ADMIN_USERNAME", "admin")
ADMIN_PASSWORD = os.environ.get("USDCARB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD",
                                "dev-only-bootstrap-password")
PASSWORD = "a long enough password 42"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def call(stack: StackInfo, method: str, path: str, body: Any = None, *, token: str = "",
         headers: dict[str, str] | None = None, source: str = "127.0.0.1",
         timeout: float = 10) -> Reply:
    """Send one REST request to the gateway from ``source``."""
    host, port = stack.gateway_target.split(":")
    context = stack.ssl_context()  # HTTPS with the stack's dev CA (None: plaintext stack)
    conn = (http.client.HTTPConnection(host, int(port), timeout=timeout,
                                       source_address=(source, 0)) if context is None else
            http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                        source_address=(source, 0), context=context))
    sent = dict(headers or {})
    if token:
        sent["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        sent["content-type"] = "application/json"
    try:
        try:
            conn.request(method, path, body=data, headers=sent)
        except OSError:
            # The gateway may answer before it has read the whole body (413) and close;
            # the answer is already on the wire, as curl would show: read it.
            if data is None or len(data) < 1024 * 1024:
                raise
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def login(stack: StackInfo, username: str, password: str = PASSWORD, *,
          source: str = "127.0.0.1") -> dict[str, Any]:
    """Log in through the gateway. A 503 (the gateway has no healthy identity backend,
    e.g. just after another test's database outage) is retried for a while, as any
    client would; if it persists, the failure shows what the gateway and identity saw."""
    deadline = time.monotonic() + 15
    first_503: str | None = None
    while True:
        reply = call(stack, "POST", "/v1/auth:login",
                     {"username": username, "password": password}, source=source)
        if reply.status != 503 or time.monotonic() > deadline:
            break
        if first_503 is None:
            first_503 = (f"503 body {reply.body[:300]!r}, headers {reply.headers}\n"
                         + diagnose(stack, "identity"))
        time.sleep(0.2)
    if first_503 and reply.status == 200:  # shown in the test summary: data, not a failure
        warnings.warn(f"login needed retries after a 503; at the first:\n{first_503}",
                      stacklevel=2)
    assert reply.status == 200, (reply.status, reply.body, diagnose(stack, "identity"))
    tokens: dict[str, Any] = reply.json()
    return tokens


def diagnose(stack: StackInfo, service: str) -> str:
    """The gateway's view of ``service``'s cluster and the tail of its log."""
    try:
        with urllib.request.urlopen(f"{stack.admin}/clusters", timeout=2) as resp:
            clusters = [line for line in resp.read().decode().splitlines()
                        if line.startswith(f"{service}::") and "health" in line]
    except OSError as exc:
        clusters = [f"admin unreachable: {exc}"]
    log = Path(stack.root) / "logs" / f"{service}.log"
    tail = log.read_text(errors="replace").splitlines()[-12:] if log.exists() else []
    return "\n".join(["envoy /clusters:", *clusters, f"{log.name} (last lines):",
                      *(line[:400] for line in tail)])


def admin_token(stack: StackInfo, source: str = "127.0.0.1") -> str:
    return str(login(stack, ADMIN, ADMIN_PASSWORD, source=source)["accessToken"])


def create_user(stack: StackInfo, admin: str, role: str, prefix: str = "u") -> dict[str, Any]:
    username = f"{prefix}-{uuid.uuid4().hex[:10]}"
    reply = call(stack, "POST", "/v1/users", {
        "username": username, "password": PASSWORD, "roles": [f"ROLE_{role.upper()}"]},
        token=admin)
    assert reply.status == 200, (reply.status, reply.body)
    user: dict[str, Any] = reply.json()
    return user


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    import time
    now = int(time.time())
    base = {"iss": "usdcarb-identity", "aud": "usdcarb-api", "sub": "users/mallory",
            "iat": now, "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex,
            "roles": ["admin"]}
    base.update(overrides)
    return base


def sign_with_fresh_key(payload: dict[str, Any], kid: str) -> str:
    """An ES256 token from a key nobody published, under ``kid``."""
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})


def unsigned(payload: dict[str, Any], kid: str) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}."


def hs256_with_public_key(payload: dict[str, Any], jwk: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC keyed with the (public) verification key."""
    import hashlib
    import hmac
    header = {"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    secret = json.dumps(jwk, sort_keys=True).encode()
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def tamper(token: str, **changes: Any) -> str:
    """Change claims of a valid token, keeping its header and signature."""
    head, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    return f"{head}.{b64url(json.dumps(data).encode())}.{signature}"
