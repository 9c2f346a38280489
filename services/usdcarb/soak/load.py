"""The clients of the soak: every attempt recorded, retryable statuses retried.

A call is one logical request (create this strategy, watch that backtest to its end); an
attempt is one try of it on the wire. Every attempt is recorded with its time, latency
and status, so the report can tell a retried error from a lost one and place each in or
out of a fault window. Retried: gRPC UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED
(idempotent calls only: creates carry an idempotency key), HTTP 429/502/503/504,
connection errors and HTTP/2 stream resets by the proxy (gRPC reports those as INTERNAL
"RST_STREAM"; recorded as RST_STREAM). Anything else ends the call at once and is reported.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import aiohttp
import grpc
from google.rpc import error_details_pb2, status_pb2

T = TypeVar("T")

RETRYABLE_GRPC = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
# google.rpc.Code numbers as a transcoded REST body carries them.
GRPC_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


@dataclass
class Attempt:
    """One try of one call on the wire."""

    op: str  # "<transport>.<Method>", e.g. "rest.CreateStrategy", "grpc.WatchBacktest"
    caller: str
    call_id: int
    number: int  # 1 for the first try
    start: float  # time.time()
    latency_s: float
    code: str  # "OK", a gRPC code name, "HTTP_<n>", or "NETWORK"
    retryable: bool
    detail: str = ""


@dataclass
class CallRecord:
    """The fate of one call: how many attempts, and how it ended."""

    op: str
    caller: str
    call_id: int
    start: float
    end: float
    attempts: int
    code: str  # the last attempt's code
    ok: bool


@dataclass
class Recorder:
    """Every attempt and call of the run, in memory (a 3-minute run: tens of thousands)."""

    attempts: list[Attempt] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    _next: int = 0

    def new_call(self) -> int:
        self._next += 1
        return self._next

    def attempt(self, op: str, caller: str, call_id: int, number: int, start: float,
                code: str, retryable: bool, detail: str = "") -> None:
        self.attempts.append(Attempt(op, caller, call_id, number, start,
                                     time.time() - start, code, retryable, detail[:300]))

    def to_json(self) -> dict[str, Any]:
        return {"attempts": [asdict(a) for a in self.attempts],
                "calls": [asdict(c) for c in self.calls]}


class CallFailed(Exception):
    """A call ended without success: a non-retryable status, or retries ran out."""

    def __init__(self, op: str, code: str, detail: str) -> None:
        super().__init__(f"{op}: {code} {detail[:300]}")
        self.op, self.code, self.detail = op, code, detail


@dataclass
class Failure(Exception):
    """One failed attempt, classified."""

    code: str
    retryable: bool
    detail: str = ""
    retry_after: float | None = None


def _grpc_retry_after(err: grpc.RpcError) -> float | None:
    """The server's google.rpc.RetryInfo, from the status details in the trailers."""
    if not isinstance(err, grpc.aio.AioRpcError):
        return None
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def _rest_retry_after(body: Any) -> float | None:
    """RetryInfo's retryDelay ("36s") in a REST error body."""
    if isinstance(body, dict):
        for detail in body.get("details") or []:
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    return None
    return None


def classify_grpc(err: grpc.RpcError) -> Failure:
    code = err.code() if isinstance(err, grpc.aio.AioRpcError | grpc.Call) else None
    name = code.name if code is not None else "UNKNOWN"
    details = str((err.details() if isinstance(err, grpc.aio.AioRpcError | grpc.Call)
                   else str(err)) or "")
    if name == "INTERNAL" and "RST_STREAM" in details:
        # Not a status any server sent: the proxy reset the HTTP/2 stream (its upstream
        # died under it) and gRPC reports a reset as INTERNAL. Every call of the soak is
        # safe to repeat (idempotency keys, resumable watches): a transport failure.
        return Failure("RST_STREAM", True, details)
    return Failure(name, name in RETRYABLE_GRPC, details, _grpc_retry_after(err))


def classify_http(status: int, body: Any, headers: Any = None) -> Failure:
    retry_after = _rest_retry_after(body)
    if retry_after is None and headers is not None and headers.get("retry-after"):
        try:
            retry_after = float(headers["retry-after"])
        except ValueError:
            retry_after = None
    return Failure(f"HTTP_{status}", status in RETRYABLE_HTTP, json.dumps(body)[:300]
                   if not isinstance(body, str) else body[:300], retry_after)


@dataclass(frozen=True)
class Policy:
    """How long a call keeps retrying: bounded by attempts and by wall time."""

    max_attempts: int = 80
    max_elapsed_s: float = 120.0  # room for a rate limit's minute window
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def backoff(self, number: int, rng: random.Random) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(number, 10))
        return float(ceiling * (0.5 + rng.random() / 2))


DEFAULT_POLICY = Policy()


class Caller:
    """Make calls as one subject: REST over aiohttp, gRPC over grpc.aio, both through
    the gateway, every attempt recorded."""

    def __init__(self, name: str, token: str, recorder: Recorder, gateway: str,
                 ssl_context: ssl.SSLContext | None, channel: grpc.aio.Channel,
                 session: aiohttp.ClientSession, *, seed: int = 0,
                 policy: Policy = DEFAULT_POLICY) -> None:
        self.name, self.token, self.recorder = name, token, recorder
        self.gateway, self.ssl = gateway, ssl_context
        self.channel, self.session, self.policy = channel, session, policy
        self.rng = random.Random(f"{seed}:{name}")
        self.sdk: Any = None  # a usdcarb_sdk AsyncClient, for the callers that use it

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", "content-type": "application/json"}

    async def call(self, op: str, attempt: Callable[[], Awaitable[T]], *,
                   stop: Callable[[], bool] = lambda: False) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or the policy runs out."""
        call_id, began = self.recorder.new_call(), time.time()
        number = 0
        while True:
            number += 1
            start = time.time()
            try:
                result = await attempt()
            except Failure as failure:
                self.recorder.attempt(op, self.name, call_id, number, start, failure.code,
                                      failure.retryable, failure.detail)
                give_up = (not failure.retryable or number >= self.policy.max_attempts
                           or time.time() - began > self.policy.max_elapsed_s or stop())
                if give_up:
                    self.recorder.calls.append(CallRecord(op, self.name, call_id, began,
                                                          time.time(), number, failure.code,
                                                          False))
                    raise CallFailed(op, failure.code, failure.detail) from None
                wait = self.policy.backoff(number, self.rng)
                if failure.retry_after is not None:
                    # As the server asks (a rate limit's window): retrying sooner only
                    # counts against the same budget again.
                    left = self.policy.max_elapsed_s - (time.time() - began)
                    wait = max(wait, min(failure.retry_after * (1 + self.rng.random() / 10),
                                         max(left, 0.0)))
                await asyncio.sleep(wait)
                continue
            self.recorder.attempt(op, self.name, call_id, number, start, "OK", False)
            self.recorder.calls.append(CallRecord(op, self.name, call_id, began, time.time(),
                                                  number, "OK", True))
            return result

    # ------------------------------------------------------------------ one attempt
    async def rest(self, method: str, path: str, body: Any = None,
                   timeout_s: float = 30.0) -> Any:
        """One REST attempt: the JSON body on 200, else a Failure."""
        try:
            async with self.session.request(
                    method, self.gateway + path, headers=self.headers, ssl=self.ssl or False,
                    data=None if body is None else json.dumps(body),
                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                raw = await resp.read()
                try:
                    parsed = json.loads(raw or b"null")
                except ValueError:
                    parsed = raw.decode(errors="replace")
                if resp.status != 200:
                    raise classify_http(resp.status, parsed, resp.headers)
                return parsed
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise Failure("NETWORK", True, repr(exc)) from None

    async def grpc_unary(self, method: Callable[..., Any], request: Any,
                         timeout_s: float = 30.0) -> Any:
        """One gRPC attempt through the gateway."""
        try:
            return await method(request, metadata=self.metadata, timeout=timeout_s)
        except grpc.RpcError as err:
            raise classify_grpc(err) from None

    async def rest_lines(self, path: str, *, sse: bool, timeout_s: float
                         ) -> AsyncIterator[dict[str, Any]]:
        """One REST streaming attempt: each NDJSON line (or SSE ``data:``) as JSON.

        A transcoded stream refused or broken carries a google.rpc.Status object instead
        of a message: raised as a Failure with its code."""
        headers = dict(self.headers)
        if sse:
            headers["accept"] = "text/event-stream"
        try:
            async with self.session.get(
                    self.gateway + path, headers=headers, ssl=self.ssl or False,
                    timeout=aiohttp.ClientTimeout(total=timeout_s, sock_read=30)) as resp:
                if resp.status != 200:
                    raw = await resp.read()
                    raise classify_http(resp.status, raw.decode(errors="replace"), resp.headers)
                async for raw_line in resp.content:
                    line = raw_line.decode(errors="replace").strip()
                    if not line or (sse and not line.startswith("data:")):
                        continue
                    if sse:
                        line = line.removeprefix("data:").strip()
                    try:
                        message = json.loads(line)
                    except ValueError:
                        raise Failure("NETWORK", True, f"torn line {line[:100]!r}") from None
                    if isinstance(message, dict) and "result" in message:
                        message = message["result"]  # grpc-gateway style wrapping
                    if isinstance(message, dict) and "code" in message and "message" in message \
                            and "sequence" not in message:
                        name = GRPC_CODE_NAMES.get(int(message["code"]), "UNKNOWN")
                        raise Failure(name, name in RETRYABLE_GRPC, str(message["message"]))
                    yield message
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise Failure("NETWORK", True, repr(exc)) from None

    async def close(self) -> None:
        return None


def is_retryable_code(code: str) -> bool:
    if code.startswith("HTTP_"):
        return int(code[5:]) in RETRYABLE_HTTP
    return code in RETRYABLE_GRPC or code in ("NETWORK", "RST_STREAM")
