"""Signing key rotation under a load of requests: not one request fails.

The rotation is the admin path (``python -m usdcarb.identity.main rotate-keys``) with a
short publish lead; the gateway caches the JWKS for E2E_JWKS_CACHE_S (refreshing it in the
background when it expires) and identity reloads keys every second, so the new key is in
every cache before it signs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import jwt
import pytest

from identity.gatewaykit import admin_token as get_admin_token
from identity.gatewaykit import call, create_user, login
from testkit import E2E_JWKS_CACHE_S
from usdcarb.devstack.stack import REPO, StackInfo

pytestmark = pytest.mark.e2e

LEAD_S = E2E_JWKS_CACHE_S + 2


def rotate(stack: StackInfo) -> str:
    env = {**os.environ, "PYTHONPATH": f"{REPO}/services:{REPO}/gen/python",
           "USDCARB_IDENTITY_DATABASE_URL": stack.dsn, "USDCARB_IDENTITY_ENV": "dev",
           "USDCARB_IDENTITY_KEY_PUBLISH_LEAD_S": str(LEAD_S), "USDCARB_IDENTITY_LOG_JSON": "false"}
    done = subprocess.run([sys.executable, "-m", "usdcarb.identity.main", "rotate-keys"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_key_rotation_during_load_fails_no_request(stack: StackInfo) -> None:
    admin = get_admin_token(stack, source="127.0.0.21")
    user = create_user(stack, admin, "admin", "rotor")
    tokens: dict[str, Any] = login(stack, user["username"], source="127.0.0.21")
    state = {"token": tokens["accessToken"], "refresh": tokens["refreshToken"]}
    old_kid = str(jwt.get_unverified_header(state["token"])["kid"])
    failures: list[str] = []
    kids: set[str] = set()
    stop = threading.Event()
    served = 0

    def refresher() -> None:
        n = 0
        while not stop.wait(1.0):  # a fresh access token every second, from varying addresses
            n += 1
            reply = call(stack, "POST", "/v1/auth:refresh", {"refreshToken": state["refresh"]},
                         source=f"127.0.1.{n % 250 + 1}")
            if reply.status != 200:
                failures.append(f"refresh: {reply.status} {reply.body[:100]!r}")
                continue
            state["token"], state["refresh"] = (reply.json()["accessToken"],
                                                reply.json()["refreshToken"])

    thread = threading.Thread(target=refresher, daemon=True)
    thread.start()
    deadline = time.monotonic() + LEAD_S + 8
    new_kid = ""
    try:
        started = time.monotonic()
        while time.monotonic() < deadline:  # bounded load: ~18 s, paced under the tier
            if not new_kid and time.monotonic() - started > 1:
                new_kid = rotate(stack)
            token = state["token"]
            kids.add(jwt.get_unverified_header(token)["kid"])
            reply = call(stack, "GET", "/v1/users/me", token=token)
            served += 1
            if reply.status != 200:
                failures.append(f"GET: {reply.status} {reply.body[:100]!r}")
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert not failures, failures[:5]
    assert served > 100
    # Requests went out under both keys: the old one until the refresher's next token,
    # the new one after it began signing.
    assert {old_kid, new_kid} <= kids and old_kid != new_kid, (old_kid, new_kid, kids)
    published = [k["kid"] for k in call(stack, "GET", "/.well-known/jwks.json").json()["keys"]]
    # The new key signs and the previous one still verifies the tokens it signed.
    assert new_kid in published and old_kid in published, published
