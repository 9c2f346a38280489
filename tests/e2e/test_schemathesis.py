"""Schemathesis against gen/openapi/openapi.yaml through the gateway, with real tokens.

One run of the schemathesis CLI (pinned in the dev extras) with the coverage, fuzzing and
stateful phases (the stateful one chains operations through the document's OpenAPI links:
create -> get -> update -> delete), signed in turn as two roles: admin (every operation
allowed) and trader (owner-scoped writes, some operations refused). Every response must
be no 5xx, have a documented status code and content type, and match its schema; a
server stream must never answer 200 with an error body; passwords and secrets never come
back with a value.

The run has its own stack (its own database, users and rate-limit buckets), so what it
creates, changes or exhausts never reaches the other end-to-end tests. Its callers are
DEV-ONLY tokens, a fresh subject every SUBJECT_REQUESTS requests, the roles taking turns:
no subject ever reaches its per-second or per-minute budget of limits.yaml, while a
stateful chain (seconds long) mostly keeps one owner and role. The per-client-address budget of the token
endpoints (login, refresh, API-key exchange: 20 a minute) does answer 429 to most of
their cases, as documented.

SubscribeEvents is left out: it is an endless stream (it ends when the client leaves),
which a tester reading whole responses can only time out on.

This module is also the schemathesis hooks module of the runs (``SCHEMATHESIS_HOOKS``):
with ``USDCARB_ST_TALLY`` set, it signs the calls, counts every request it sends (by phase
and status) and checks stream bodies and input-only fields, so the floor on requests is
counted here, not read from the CLI.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from identity.gatewaykit import call
from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.stack import REPO, Stack, StackInfo

pytestmark = pytest.mark.e2e

OPENAPI = REPO / "gen" / "openapi" / "openapi.yaml"
FLOOR = 5_000  # requests in the run
TALLY_ENV = "USDCARB_ST_TALLY"
ROLES = ("admin", "trader")
# Sized for about two minutes on two cores (the coverage phase alone sends ~4,000); the
# floor check below fails the test if the run ever sends fewer than FLOOR.
EXAMPLES, STEPS = 16, 25
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance",
          "use_after_free", "ensure_resource_availability", "stream_answers_no_error_with_200",
          "input_only_fields_are_never_returned")
RUN_TIMEOUT_S = 300.0
SUBJECT_REQUESTS = 40  # below every per-subject budget (trader: 40 heavy calls a minute)
ROLES_ENV = "USDCARB_ST_ROLES"
ENDLESS = ("NotificationService_SubscribeEvents",)


# ------------------------------------------------------------------ schemathesis hooks
def _is_status(obj: object) -> bool:
    """A JSON google.rpc.Status (or an {"error": ...} envelope) rather than a message."""
    return isinstance(obj, dict) and (("error" in obj and len(obj) == 1) or (
        isinstance(obj.get("code"), int) and "message" in obj
        and set(obj) <= {"code", "message", "details"}))


def stream_error(body: bytes, content_type: str) -> str:
    """The first error object in a 200 stream body (NDJSON lines or SSE data), or ""."""
    text = body.decode("utf-8", "replace")
    if content_type.startswith("text/event-stream"):
        lines = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
    else:
        lines = [ln.strip() for ln in text.splitlines()]
    for line in filter(None, lines):
        try:
            obj = json.loads(line)
        except ValueError:
            return f"not JSON: {line[:200]}"
        for item in obj if isinstance(obj, list) else [obj]:
            if _is_status(item):
                return line[:300]
    return ""


if os.environ.get(TALLY_ENV):  # loaded by the schemathesis CLI as its hooks module
    import schemathesis
    from hypothesis.internal import lambda_sources

    from usdcarb.gateway.devtoken import mint_dev_token

    # Hypothesis describes lambdas by parsing their source; CPython 3.11's parser is not
    # safe across threads ("AST constructor recursion depth mismatch" with two workers).
    _ast_lock = threading.RLock()
    _describe: Any = lambda_sources._lambda_description

    def _described_alone(*args: Any, **kwargs: Any) -> Any:
        with _ast_lock:
            return _describe(*args, **kwargs)

    lambda_sources._lambda_description = _described_alone

    _lock = threading.Lock()
    _tally: Counter[str] = Counter()
    _token: list[str] = []
    _names: list[set[str]] = []

    def _streaming(case: Any) -> bool:
        return "x-usdcarb-streaming" in case.operation.definition.raw

    @schemathesis.hook
    def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        """Sign the call as the run's role."""
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        with _lock:
            turn, left = divmod(_tally["signed"], SUBJECT_REQUESTS)
            roles = os.environ[ROLES_ENV].split(",")
            role = roles[turn % len(roles)]
            if left == 0:
                subject = f"users/st-{role}-{uuid.uuid4().hex[:10]}"
                _token[:] = [mint_dev_token(subject, [role], ttl=1800)]
            _tally["signed"] += 1
            _tally[f"role:{role}"] += 1
            headers["Authorization"] = f"Bearer {_token[0]}"
        case.headers = headers

    @schemathesis.hook
    def after_call(context: Any, case: Any, response: Any) -> None:
        phase = getattr(getattr(case.meta, "phase", None), "name", None)
        with _lock:
            _tally["requests"] += 1
            _tally[f"phase:{getattr(phase, 'value', phase)}"] += 1
            _tally[f"status:{response.status_code}"] += 1
            if response.status_code == 200:
                _tally[f"ok:{case.operation.label}"] += 1
            if _streaming(case) and response.status_code == 200:
                _tally["streams_200"] += 1

    @schemathesis.check
    def stream_answers_no_error_with_200(ctx: Any, response: Any, case: Any) -> bool | None:
        """A server stream that answers 200 carries messages, never an error object."""
        if not _streaming(case) or response.status_code != 200:
            return None
        content_type = response.headers.get("content-type", [""])
        found = stream_error(response.content, (content_type or [""])[0])
        if found:
            with _lock:
                _tally["stream_errors"] += 1
            raise AssertionError(f"200 stream with an error body: {found}")
        return None

    def _input_only(schema: dict[str, Any]) -> set[str]:
        return {name for component in schema["components"]["schemas"].values()
                for name, prop in component.get("properties", {}).items()
                if prop.get("x-usdcarb-input-only") or prop.get("writeOnly")}

    def _filled(obj: object, names: set[str], path: str = "") -> list[str]:
        if isinstance(obj, list):
            return [p for i, v in enumerate(obj) for p in _filled(v, names, f"{path}/{i}")]
        if not isinstance(obj, dict):
            return []
        found = [f"{path}/{k}" for k, v in obj.items() if k in names and v not in ("", None)]
        return found + [p for k, v in obj.items() for p in _filled(v, names, f"{path}/{k}")]

    @schemathesis.check
    def input_only_fields_are_never_returned(ctx: Any, response: Any, case: Any
                                             ) -> bool | None:
        """Passwords and secrets (INPUT_ONLY) never come back with a value."""
        if response.status_code != 200 or _streaming(case):
            return None
        with _lock:
            if not _names:
                _names.append(_input_only(case.operation.schema.raw_schema))
        names = _names[0]
        try:
            body = json.loads(response.content or b"null")
        except ValueError:
            return None  # content_type / schema checks report it
        leaked = _filled(body, names)
        if leaked:
            raise AssertionError(f"input-only fields returned with a value: {leaked}")
        return None

    @atexit.register
    def _write_tally() -> None:
        Path(os.environ[TALLY_ENV]).write_text(json.dumps(dict(_tally)))


# ------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def st_stack() -> Iterator[StackInfo]:
    """A stack of its own: the run's writes and rate-limit use stay out of other tests."""
    root = scratch_dir("usdcarb-st-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True)
    try:
        yield mesh.up()
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


SPREAD = {"crossExchangeSpread": {"symbol": "USDC/USDT", "venueA": "binance",
                                  "venueB": "kraken", "entryBps": 15, "exitBps": 3,
                                  "quantity": 1000}}


def seed(stack: StackInfo) -> None:
    """A strategy with a version per role, so list -> get -> update chains have data."""
    from usdcarb.gateway.devtoken import mint_dev_token

    for role in ROLES:
        token = mint_dev_token(f"users/st-seed-{role}", [role], ttl=600)
        made = call(stack, "POST", "/v1/strategies", {
            "displayName": f"seed of {role}", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"},
            token=token)
        assert made.status == 200, (made.status, made.body)
        version = call(stack, "POST", f"/v1/{made.json()['name']}/versions",
                       {"parameters": SPREAD}, token=token)
        assert version.status == 200, (version.status, version.body)


def tls_verify(stack: StackInfo) -> str:
    """``tls-verify`` for the gateway: the stack's dev CA over HTTPS."""
    assert stack.ca, f"expected the dev CA in the stack info for {stack.gateway}, got none"
    return stack.ca


def config(stack: StackInfo, examples: int, steps: int) -> str:
    """A schemathesis.toml for one run."""
    return "\n".join([
        f'base-url = "{stack.gateway}"',
        f'tls-verify = "{tls_verify(stack)}"' if stack.gateway.startswith("https://")
        else "tls-verify = true",
        "workers = 2",
        "request-timeout = 10.0",
        "max-stream-events = 50",
        'suppress-health-check = ["all"]',
        "[generation]",
        f"max-examples = {examples}",
        "no-shrink = true",
        'database = "none"',
        "with-security-parameters = false",
        "[phases.examples]",
        "enabled = false",
        "[phases.coverage]",
        "enabled = true",
        "[phases.fuzzing]",
        "enabled = true",
        "[phases.stateful]",
        "enabled = true",
        f"max-steps = {steps}",
        "[checks]",
        "enabled = false",
        *(f"{name}.enabled = true" for name in CHECKS),
        *(line for oid in ENDLESS for line in (
            "[[operations]]", f'include-operation-id = "{oid}"', "enabled = false")),
    ]) + "\n"


def run_schemathesis(stack: StackInfo, roles: tuple[str, ...], examples: int, steps: int,
                     work: Path) -> tuple[int, str, dict[str, int]]:
    cfg = work / "schemathesis.toml"
    cfg.write_text(config(stack, examples, steps))
    tally = work / "tally.json"
    env = {**os.environ, TALLY_ENV: str(tally), ROLES_ENV: ",".join(roles), "USDCARB_ENV": "test",
           "SCHEMATHESIS_HOOKS": "e2e.test_schemathesis",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
           "NO_COLOR": "1", "COLUMNS": "120"}
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [str(st), "--config-file", str(cfg), "run", str(OPENAPI), "--no-color",
         "--seed", str(int(time.time()))],
        env=env, cwd=work, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    counts = json.loads(tally.read_text()) if tally.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, counts


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    st_stack: StackInfo, tmp_path: Path
) -> None:
    seed(st_stack)
    started = time.monotonic()
    code, output, counts = run_schemathesis(st_stack, ROLES, EXAMPLES, STEPS, tmp_path)
    total = Counter(counts)
    elapsed = time.monotonic() - started
    summary = output[output.rfind("SUMMARY") - 60:] if "SUMMARY" in output else output[-3000:]
    print(f"\nschemathesis: exit {code}, {elapsed:.0f} s, {dict(total)}\n{summary}")
    assert code == 0, f"schemathesis exit {code}\n{output[-15000:]}"
    assert total["requests"] >= FLOOR, f"expected >= {FLOOR} requests, got {total['requests']}"
    for phase in ("coverage", "fuzzing", "stateful"):
        assert total[f"phase:{phase}"] > 0, f"expected requests in the {phase} phase: {total}"
    for role in ROLES:
        assert total[f"role:{role}"] >= FLOOR // 4, f"expected {role} to sign a share: {total}"
    assert sum(n for k, n in total.items() if k.startswith("status:5")) == 0, total
    assert total["stream_errors"] == 0, total
