"""The platform's gRPC bootstrap and interceptors, through a real in-process server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from platform_probe import SERVICE, ProbeServicer, eventually, register_probe
from usdcarb.platform.status import ERROR_DOMAIN, unpack_details
from usdcarb.platform.testing import InProcessServer, bearer, settings_for_tests, start_in_process

pytestmark = pytest.mark.integration


@pytest.fixture
async def probe() -> ProbeServicer:
    return ProbeServicer()


@pytest.fixture
async def served(probe: ProbeServicer) -> AsyncIterator[InProcessServer]:
    srv = await start_in_process([SERVICE], register_probe(probe))
    yield srv
    await srv.stop(0)


@pytest.fixture
async def channel(served: InProcessServer) -> AsyncIterator[Any]:
    async with served.channel() as channel:
        yield channel


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


async def failed_unary(channel: Any, name: str, **kwargs: Any) -> Any:
    call = channel.unary_unary(method(name))(b"", **kwargs)
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    return call


async def test_invalid_argument_reaches_client_with_bad_request(channel: Any) -> None:
    call = await failed_unary(channel, "Invalid")

    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = await rpc_status.aio.from_call(call)
    [bad_request] = unpack_details(status, error_details_pb2.BadRequest)
    violation = bad_request.field_violations[0]
    assert (violation.field, violation.description) == ("page_size", "expected 1..1000, got 5000")
    [info] = unpack_details(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", ERROR_DOMAIN)
    [request_info] = unpack_details(status, error_details_pb2.RequestInfo)
    echoed = dict(await call.trailing_metadata())["x-request-id"]
    assert request_info.request_id == echoed


async def test_unexpected_exception_becomes_opaque_internal(
    channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    call = await failed_unary(channel, "Boom", metadata=(("x-request-id", "req-boom-1"),))

    assert await call.code() == grpc.StatusCode.INTERNAL
    details = await call.details()
    assert details == "internal error (request id req-boom-1)"
    assert "hunter2" not in details and "RuntimeError" not in details
    trailing = b"".join(v for _, v in await call.trailing_metadata() if isinstance(v, bytes))
    assert b"hunter2" not in trailing
    logged = [r for r in caplog.records if r.exc_info and "req-boom-1" in r.getMessage()]
    assert logged and "hunter2" in str(logged[0].exc_info[1])  # type: ignore[index]


@pytest.mark.parametrize("name", ["DbDown", "RedisDown"])
async def test_a_store_that_cannot_answer_is_unavailable_with_a_retry_hint(
    channel: Any, name: str
) -> None:
    """PostgreSQL restarting or Redis gone: the caller may retry (issue 19's soak saw
    INTERNAL for every request in flight during a PostgreSQL restart)."""
    call = await failed_unary(channel, name)

    assert await call.code() == grpc.StatusCode.UNAVAILABLE
    status = await rpc_status.aio.from_call(call)
    [info] = unpack_details(status, error_details_pb2.ErrorInfo)
    assert info.reason == "STORE_UNAVAILABLE"
    [retry] = unpack_details(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 1
    assert "127.0.0.1" not in (await call.details() or "")


async def test_stream_error_after_messages_maps_to_its_status(channel: Any) -> None:
    call = channel.unary_stream(method("Stream"))(b"")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for message in call:
            received.append(message)

    assert received == [b"1", b"2"]
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    status = await rpc_status.aio.from_call(call)
    [resource] = unpack_details(status, error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("backtest", "backtests/42")


async def test_stream_failing_before_its_first_message_is_trailers_only(channel: Any) -> None:
    """No initial metadata goes out before the first message, so Envoy's transcoder can
    answer a REST caller with the HTTP status of the code; the id is in the trailers."""
    call = channel.unary_stream(method("StreamMissing"))(
        b"", metadata=(("x-request-id", "early-1"),))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "x-request-id" not in dict(await call.initial_metadata())
    assert dict(await call.trailing_metadata())["x-request-id"] == "early-1"


async def test_stream_sends_the_request_id_with_its_first_message(channel: Any) -> None:
    call = channel.unary_stream(method("Stream"))(b"", metadata=(("x-request-id", "s-1"),))
    assert dict(await call.initial_metadata())["x-request-id"] == "s-1"
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in call:
            pass


async def test_writer_style_stream_error_maps_too(channel: Any) -> None:
    call = channel.unary_stream(method("WriterStream"))(b"")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for message in call:
            received.append(message)

    assert received == [b"w1", b"w2"]
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unexpected_stream_error_is_opaque(channel: Any) -> None:
    call = channel.unary_stream(method("StreamBoom"))(b"")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass

    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (raised.value.details() or "")


async def test_client_stream_and_bidi_stream_pass_through_interceptors(channel: Any) -> None:
    count = await channel.stream_unary(method("Count"))(iter([b"ab", b"cde", b"f"]))
    assert count == b"6"

    call = channel.stream_stream(method("Upper"))(iter([b"a", b"b", b"fail", b"c"]))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for message in call:
            received.append(message)
    assert received == [b"A", b"B"]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_request_id_is_adopted_and_echoed(channel: Any) -> None:
    call = channel.unary_unary(method("RequestId"))(b"", metadata=(("x-request-id", "abc-123"),))
    assert await call == b"abc-123"
    assert dict(await call.initial_metadata())["x-request-id"] == "abc-123"

    call = channel.unary_unary(method("RequestId"))(b"")
    made = (await call).decode()
    assert len(made) == 32 and dict(await call.initial_metadata())["x-request-id"] == made


async def test_caller_comes_from_the_verified_bearer_token_only(served: InProcessServer) -> None:
    async with grpc.aio.insecure_channel(served.address) as channel:  # no default token
        await _who_am_i(channel)


async def _who_am_i(channel: Any) -> None:
    who = channel.unary_unary(method("WhoAmI"))
    assert await who(b"", metadata=bearer("users/alice", ("viewer",))) == b"users/alice"
    assert await who(b"") == b""
    # A claims header is never trusted, whatever it says.
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "users/mallory"}).encode()).rstrip(b"=")
    assert await who(b"", metadata=(("x-jwt-payload", payload.decode()),)) == b""
    # The probe is no usdcarb.v1 service, so a token is optional there and a bad one is
    # ignored (the usdcarb.v1 methods refuse it: tests/platform/test_tokens.py).
    assert await who(b"", metadata=(("authorization", "Bearer not-a-jwt"),)) == b""


async def test_metrics_endpoint_counts_rpcs_by_code(served: InProcessServer, channel: Any) -> None:
    await channel.unary_unary(method("Echo"))(b"x")
    await failed_unary(channel, "Invalid")

    url = f"http://127.0.0.1:{served.service.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    labels = f'grpc_method="Echo",grpc_service="{SERVICE}"'
    assert f'grpc_server_handled_total{{grpc_code="OK",{labels}}} 1.0' in text
    assert (
        'grpc_server_handled_total{grpc_code="INVALID_ARGUMENT",grpc_method="Invalid",'
        f'grpc_service="{SERVICE}"}} 1.0'
    ) in text
    assert f"grpc_server_handling_seconds_count{{{labels}}} 1.0" in text
    assert f"grpc_server_in_flight{{{labels}}} 0.0" in text


async def test_health_follows_dependency_checks(probe: ProbeServicer) -> None:
    healthy = {"db": True}

    async def db_check() -> bool:
        return healthy["db"]

    srv = await start_in_process([SERVICE], register_probe(probe), health_checks={"db": db_check})
    try:
        async with srv.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            def status_is(expected: int, service: str = SERVICE) -> Any:
                async def check() -> bool:
                    request = health_pb2.HealthCheckRequest(service=service)
                    response = await stub.Check(request)
                    return bool(response.status == expected)

                return check

            serving = health_pb2.HealthCheckResponse.SERVING
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status_is(serving)() and await status_is(serving, "")()
            healthy["db"] = False
            await eventually(status_is(not_serving))
            assert await status_is(not_serving, "")()
            healthy["db"] = True
            await eventually(status_is(serving))
    finally:
        await srv.stop(0)


async def test_health_rechecks_when_a_recheck_awaitable_completes(probe: ProbeServicer) -> None:
    # The poll is an hour apart: only the recheck can turn the status.
    ready = asyncio.Event()

    async def engine_check() -> bool:
        return ready.is_set()

    srv = await start_in_process([SERVICE], register_probe(probe),
                                 settings=settings_for_tests(health_interval_s=3600),
                                 health_checks={"engine": engine_check},
                                 recheck_on=[ready.wait])
    try:
        async with srv.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            assert not await serving()
            ready.set()
            await eventually(serving, within=2.0)
    finally:
        await srv.stop(0)


async def test_shutdown_drains_an_in_flight_call(probe: ProbeServicer, tmp_path: Path) -> None:
    closed: list[str] = []

    async def close_pool() -> None:
        closed.append("pool")

    port_file = tmp_path / "probe.port"
    srv = await start_in_process(
        [SERVICE],
        register_probe(probe),
        settings=settings_for_tests(port_file=port_file),
        on_close=[close_pool, lambda: closed.append("last-registered-first")],
    )
    try:
        assert port_file.read_text().strip() == str(srv.port)
        async with srv.channel() as channel:
            slow_call = channel.unary_unary(method("Slow"))(b"")
            slow = asyncio.ensure_future(slow_call)
            await probe.slow_started.wait()
            await srv.stop(grace_s=5)

            assert await slow == b"done"
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await channel.unary_unary(method("Echo"))(b"late", timeout=2)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await srv.stop(0)
    assert closed == ["last-registered-first", "pool"]
    assert not port_file.exists()


async def test_reflection_lists_services(channel: Any) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = set()
    async for response in stub.ServerReflectionInfo(iter([request])):
        names |= {s.name for s in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_domain_error_is_logged_without_traceback(
    channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="usdcarb.platform.interceptors"):
        await failed_unary(channel, "Invalid")
    [record] = [r for r in caplog.records if "Invalid failed" in r.getMessage()]
    assert record.exc_info is None and "INVALID_ARGUMENT" in record.getMessage()


async def test_not_implemented_error_maps_to_unimplemented(channel: Any) -> None:
    call = await failed_unary(channel, "NotImpl")
    assert await call.code() == grpc.StatusCode.UNIMPLEMENTED
    assert await call.details() == f"{SERVICE}/NotImpl is not implemented yet"


async def test_cancelled_stream_is_counted_and_leaves_flight(
    served: InProcessServer, channel: Any
) -> None:
    call = channel.unary_stream(method("Ticks"))(b"")
    assert await call.read() == b"tick"
    call.cancel()
    url = f"http://127.0.0.1:{served.service.metrics_port}/metrics"
    labels = f'grpc_method="Ticks",grpc_service="{SERVICE}"'

    async def counted() -> bool:
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        return (
            f'grpc_server_handled_total{{grpc_code="CANCELLED",{labels}}} 1.0'.encode() in text
            and f"grpc_server_in_flight{{{labels}}} 0.0".encode() in text
        )

    await eventually(counted)


async def test_failed_bind_still_runs_close_callbacks(
    served: InProcessServer, probe: ProbeServicer
) -> None:
    closed: list[str] = []

    async def close_pool() -> None:
        closed.append("pool")

    settings = settings_for_tests(grpc_port=served.port)
    with pytest.raises(RuntimeError):
        await start_in_process(
            [SERVICE], register_probe(probe), settings=settings, on_close=[close_pool]
        )
    assert closed == ["pool"]


SERVE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from usdcarb.platform.logging import configure_logging
from usdcarb.platform.server import run_service
from usdcarb.platform.testing import settings_for_tests

configure_logging("INFO", json=True)
settings = settings_for_tests(port_file=Path(sys.argv[1]), metrics_port=-1)
asyncio.run(run_service(["test.v1.Probe"], lambda server: None, settings))
"""


async def test_run_service_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "svc.port"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "services")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVE_SCRIPT,
        str(port_file),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def port_written() -> bool:
            return port_file.exists() or proc.returncode is not None

        await eventually(port_written)
        port = int(port_file.read_text())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            assert response.status == health_pb2.HealthCheckResponse.SERVING

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 0
    messages = [json.loads(line)["message"] for line in stderr.decode().splitlines()]
    assert "shutdown requested by signal" in messages and messages[-1] == "stopped"
    assert not port_file.exists()
