"""An in-test gRPC service without generated code, shared by the platform tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from usdcarb.platform.errors import InvalidArgument, NotFound
from usdcarb.platform.identity import get_caller
from usdcarb.platform.logging import request_id

SERVICE = "test.v1.Probe"


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until ``check`` returns True, failing after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(interval)


class ProbeServicer:
    """Raw-bytes handlers that exercise every RPC kind and failure path."""

    def __init__(self) -> None:
        self.slow_started = asyncio.Event()

    async def Echo(self, request: bytes, context: Any) -> bytes:
        return request

    async def Invalid(self, request: bytes, context: Any) -> bytes:
        raise InvalidArgument.for_field("page_size", "1..1000", 5000)

    async def Boom(self, request: bytes, context: Any) -> bytes:
        raise RuntimeError("password=hunter2 in SELECT * FROM secrets")

    async def DbDown(self, request: bytes, context: Any) -> bytes:
        import asyncpg

        raise asyncpg.CannotConnectNowError("the database system is shutting down")

    async def RedisDown(self, request: bytes, context: Any) -> bytes:
        from redis.exceptions import ConnectionError as RedisConnectionError

        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def Slow(self, request: bytes, context: Any) -> bytes:
        self.slow_started.set()
        await asyncio.sleep(0.5)
        return b"done"

    async def NotImpl(self, request: bytes, context: Any) -> bytes:
        raise NotImplementedError("Method not implemented!")

    async def WhoAmI(self, request: bytes, context: Any) -> bytes:
        return get_caller().subject.encode()

    async def RequestId(self, request: bytes, context: Any) -> bytes:
        return request_id.get().encode()

    async def Stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"1"
        yield b"2"
        raise NotFound("backtest", "backtests/42")

    async def StreamMissing(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        raise NotFound("backtest", "backtests/404")
        yield b"never"  # pragma: no cover (makes this an async generator)

    async def Ticks(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        while True:
            yield b"tick"
            await asyncio.sleep(0.01)

    async def StreamBoom(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"1"
        raise ValueError("secret internals")

    async def WriterStream(self, request: bytes, context: Any) -> None:
        await context.write(b"w1")
        await context.write(b"w2")
        raise NotFound("job", "jobs/7")

    async def Count(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        total = 0
        async for item in requests:
            total += len(item)
        return str(total).encode()

    async def Upper(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for item in requests:
            if item == b"fail":
                raise InvalidArgument([("item", "expected lower-case text, got 'fail'")])
            yield item.upper()


def register_probe(servicer: ProbeServicer) -> Callable[[Any], None]:
    """Return a register callback adding the probe service (identity serializers)."""

    def register(server: Any) -> None:
        unary = {
            name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
            for name in ("Echo", "Invalid", "Boom", "Slow", "NotImpl", "WhoAmI", "RequestId",
                         "DbDown", "RedisDown")
        }
        streams = {
            name: grpc.unary_stream_rpc_method_handler(getattr(servicer, name))
            for name in ("Stream", "StreamBoom", "StreamMissing", "WriterStream", "Ticks")
        }
        handlers = {
            **unary,
            **streams,
            "Count": grpc.stream_unary_rpc_method_handler(servicer.Count),
            "Upper": grpc.stream_stream_rpc_method_handler(servicer.Upper),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    return register
