"""Retries and token refresh of both clients against an in-process fake server.

The real mesh never answers UNAVAILABLE on demand, so a grpcio server on 127.0.0.1:0
plays the StrategyService and BacktestService: each method fails with the queued
statuses, then succeeds, and records what it received.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from usdcarb_sdk import (
    AsyncClient,
    Client,
    ResourceExhausted,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
    v1,
)
from usdcarb_sdk._gen.google import protobuf, rpc
from usdcarb_sdk.error_details import RetryInfo

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.005)
Failure = tuple[grpc.StatusCode, bytes]  # code and the encoded google.rpc.Status (or b"")


class FakeServer:
    """Answer a few RPCs, failing each with its queued failures first."""

    def __init__(self) -> None:
        self.failures: dict[str, deque[Failure]] = defaultdict(deque)
        self.calls: dict[str, int] = defaultdict(int)
        self.tokens: list[str] = []
        self.accepted_token: str | None = None
        self._lock = threading.Lock()

    def fail(self, method: str, code: grpc.StatusCode, times: int = 1,
             retry_after: float | None = None) -> None:
        status = b""
        if retry_after is not None:
            info = RetryInfo(retry_delay=dt.timedelta(seconds=retry_after))
            status = bytes(rpc.Status(code=code.value[0], message="busy", details=[
                protobuf.Any(type_url="type.googleapis.com/google.rpc.RetryInfo",
                             value=bytes(info))]))
        self.failures[method].extend([(code, status)] * times)

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[method] += 1
            token = dict(context.invocation_metadata()).get("authorization", "")
            self.tokens.append(token)
        # Like the gateway: a refused token never reaches the service's behaviour.
        if self.accepted_token is not None and token != f"Bearer {self.accepted_token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Jwt verification fails")
        with self._lock:
            failure = self.failures[method].popleft() if self.failures[method] else None
        if failure is not None:
            code, status = failure
            if status:
                context.set_trailing_metadata((("grpc-status-details-bin", status),))
            context.abort(code, f"failing {method} on purpose")

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def unary(method: str, request_type: Any, respond: Callable[[Any], Any]) -> Any:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                self._enter(method, context)
                return respond(request)
            return grpc.unary_unary_rpc_method_handler(
                behaviour, request_deserializer=request_type.parse, response_serializer=bytes)

        def watch(request: v1.WatchBacktestRequest,
                  context: grpc.ServicerContext) -> Iterator[v1.BacktestEvent]:
            self._enter("WatchBacktest", context)
            yield v1.BacktestEvent(backtest=request.name)
            with self._lock:
                broken = self.failures["WatchBacktest.after_first"]
                failure = broken.popleft() if broken else None
            if failure is not None:
                context.abort(failure[0], "stream broke")
            yield v1.BacktestEvent(backtest=request.name)

        strategies = grpc.method_handlers_generic_handler("usdcarb.v1.StrategyService", {
            "GetStrategy": unary("GetStrategy", v1.GetStrategyRequest,
                                 lambda r: v1.Strategy(name=r.name)),
            "CreateStrategy": unary("CreateStrategy", v1.CreateStrategyRequest,
                                    lambda r: v1.Strategy(name=f"strategies/{r.strategy_id}")),
            "DeleteStrategy": unary("DeleteStrategy", v1.DeleteStrategyRequest,
                                    lambda r: protobuf.Empty()),
        })
        backtests = grpc.method_handlers_generic_handler("usdcarb.v1.BacktestService", {
            "WatchBacktest": grpc.unary_stream_rpc_method_handler(
                watch, request_deserializer=v1.WatchBacktestRequest.parse,
                response_serializer=bytes),
        })
        return [strategies, backtests]


@pytest.fixture
def fake() -> Iterator[tuple[FakeServer, str]]:
    state = FakeServer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(state.handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield state, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


async def test_async_get_is_retried_on_unavailable(fake: tuple[FakeServer, str]) -> None:
    state, target = fake
    state.fail("GetStrategy", grpc.StatusCode.UNAVAILABLE, times=2)
    async with AsyncClient(target, token="t", retries=FAST) as client:
        got = await client.strategies.get_strategy(name="strategies/a")
    assert got.name == "strategies/a" and state.calls["GetStrategy"] == 3
    assert state.tokens == ["Bearer t"] * 3


async def test_async_retries_give_up_after_the_limit(fake: tuple[FakeServer, str]) -> None:
    state, target = fake
    state.fail("GetStrategy", grpc.StatusCode.UNAVAILABLE, times=10)
    async with AsyncClient(target, retries=FAST) as client:
        with pytest.raises(Unavailable):
            await client.strategies.get("a")
    assert state.calls["GetStrategy"] == 4


async def test_async_delete_is_never_retried(fake: tuple[FakeServer, str]) -> None:
    state, target = fake
    state.fail("DeleteStrategy", grpc.StatusCode.UNAVAILABLE)
    async with AsyncClient(target, retries=FAST) as client:
        with pytest.raises(Unavailable):
            await client.strategies.delete_strategy(name="strategies/a")
    assert state.calls["DeleteStrategy"] == 1


async def test_async_create_is_retried_only_with_a_request_id(
    fake: tuple[FakeServer, str],
) -> None:
    state, target = fake
    state.fail("CreateStrategy", grpc.StatusCode.UNAVAILABLE, times=2)
    async with AsyncClient(target, retries=FAST) as client:
        with pytest.raises(Unavailable):
            await client.strategies.create_strategy(v1.CreateStrategyRequest(strategy_id="a"))
        created = await client.strategies.create(display_name="A", kind="peg-reversion",
                                                 strategy_id="a")  # helper adds a request id
    assert created.name == "strategies/a" and state.calls["CreateStrategy"] == 3


async def test_async_resource_exhausted_waits_as_told(fake: tuple[FakeServer, str]) -> None:
    state, target = fake
    state.fail("GetStrategy", grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.01)
    state.fail("GetStrategy", grpc.StatusCode.RESOURCE_EXHAUSTED)  # no RetryInfo: final
    async with AsyncClient(target, retries=FAST) as client:
        with pytest.raises(ResourceExhausted) as err:
            await client.strategies.get("a")
    assert state.calls["GetStrategy"] == 2 and err.value.retry_after is None


async def test_async_stream_is_retried_before_its_first_message(
    fake: tuple[FakeServer, str],
) -> None:
    state, target = fake
    state.fail("WatchBacktest", grpc.StatusCode.UNAVAILABLE)
    async with AsyncClient(target, retries=FAST) as client:
        events = [e async for e in client.backtests.watch_backtest(name="backtests/b")]
    assert [e.backtest for e in events] == ["backtests/b"] * 2
    assert state.calls["WatchBacktest"] == 2


async def test_async_stream_broken_after_data_raises(fake: tuple[FakeServer, str]) -> None:
    state, target = fake
    state.fail("WatchBacktest.after_first", grpc.StatusCode.UNAVAILABLE)
    seen = []
    async with AsyncClient(target, retries=FAST) as client:
        with pytest.raises(Unavailable, match="stream broke"):
            async for event in client.backtests.watch_backtest(name="backtests/b"):
                seen.append(event)
    assert len(seen) == 1 and state.calls["WatchBacktest"] == 1


async def test_async_unauthenticated_refreshes_the_token_once(
    fake: tuple[FakeServer, str],
) -> None:
    state, target = fake
    state.accepted_token = "fresh"
    issued = iter(["fresh"])

    async def provider() -> str:
        return next(issued)

    async with AsyncClient(target, token="stale", token_provider=provider) as client:
        await client.strategies.delete_strategy(name="strategies/a")
    assert state.tokens == ["Bearer stale", "Bearer fresh"]


async def test_async_a_refused_fresh_token_is_raised(fake: tuple[FakeServer, str]) -> None:
    state, target = fake
    state.accepted_token = "never"
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return f"bad-{calls}"

    async with AsyncClient(target, token_provider=provider, retries=FAST) as client:
        with pytest.raises(Unauthenticated):
            await client.strategies.get("a")
    assert calls == 2 and state.calls["GetStrategy"] == 2  # first token, then one refresh


def test_sync_client_retries_and_refreshes(fake: tuple[FakeServer, str]) -> None:
    state, target = fake
    state.fail("GetStrategy", grpc.StatusCode.UNAVAILABLE)
    state.accepted_token = "fresh"
    with Client(target, token="stale", token_provider=lambda: "fresh", retries=FAST) as client:
        assert client.strategies.get("a").name == "strategies/a"
        with pytest.raises(Unavailable):
            state.fail("DeleteStrategy", grpc.StatusCode.UNAVAILABLE)
            client.strategies.delete_strategy(name="strategies/a")
        events = list(client.backtests.watch_backtest(name="backtests/b"))
    assert state.calls["GetStrategy"] == 3  # refused token, refresh, UNAVAILABLE, success
    assert state.calls["DeleteStrategy"] == 1 and len(events) == 2
