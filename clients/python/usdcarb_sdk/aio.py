"""The asyncio client: ``grpc.aio`` calls carrying betterproto2 messages.

Every RPC of every service is a method generated from the betterproto2 stubs
(``_methods.services()``): unary RPCs are coroutines, server-streaming RPCs return async
iterators. Calls send the bearer token, retry idempotent methods on UNAVAILABLE (and on
RESOURCE_EXHAUSTED when the server says when), refresh the token once on
UNAUTHENTICATED, and raise ``usdcarb_sdk.errors`` exceptions.

    async with AsyncClient("127.0.0.1:8080", token=token) as client:
        strategy = await client.strategies.create(display_name="Spread", kind="cross-exchange-spread")
        async for s in client.strategies.iterate("list_strategies", page_size=100):
            ...
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, cast

import betterproto2
import grpc

from usdcarb_sdk._common import (
    DEFAULT,
    DEFAULT_TIMEOUT_S,
    CaFile,
    Metadata,
    build_request,
    call_metadata,
    items_field,
    method_doc,
    parse_target,
)
from usdcarb_sdk._gen.usdcarb import v1
from usdcarb_sdk._methods import MethodSpec, ServiceSpec, is_idempotent, services
from usdcarb_sdk.auth import AsyncTokenSource, TokenProvider
from usdcarb_sdk.errors import UsdcarbError, from_rpc_error
from usdcarb_sdk.retry import Attempts, RetryPolicy
from usdcarb_sdk.strategy_requests import (
    ParametersLike,
    create_strategy_request,
    create_version_request,
    parse_kind,
    strategy_name,
)

__all__ = ["AsyncClient", "AsyncService", "AsyncStrategies"]

logger = logging.getLogger(__name__)

Timeout = float | None


class _AsyncTransport:
    """Run calls on a lazily opened grpc.aio channel with tokens, retries and error mapping."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None,
                 options: Metadata, tokens: AsyncTokenSource, policy: RetryPolicy,
                 timeout: Timeout, stream_timeout: Timeout, ca_file: CaFile | None = None) -> None:
        self._target = parse_target(target, credentials, ca_file)
        self._options = list(options)
        self.tokens = tokens
        self.policy = policy
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._channel: grpc.aio.Channel | None = None
        self._callables: dict[str, Any] = {}

    def _callable(self, spec: MethodSpec) -> Any:
        # The channel is opened at the first call, inside the event loop it belongs to.
        if self._channel is None:
            target = self._target
            self._channel = (
                grpc.aio.secure_channel(target.address, target.credentials, self._options)
                if target.credentials else
                grpc.aio.insecure_channel(target.address, self._options))
        made = self._callables.get(spec.path)
        if made is None:
            factory = (self._channel.unary_stream if spec.server_streaming
                       else self._channel.unary_unary)
            made = factory(spec.path, request_serializer=bytes,
                           response_deserializer=spec.response_type.parse)
            self._callables[spec.path] = made
        return made

    def _attempts(self, spec: MethodSpec, request: betterproto2.Message,
                  timeout: Timeout | object, default: Timeout) -> Attempts:
        return Attempts(self.policy, is_idempotent(spec, request), self.tokens.can_refresh,
                        default if timeout is DEFAULT else cast(Timeout, timeout))

    async def _recover(self, spec: MethodSpec, attempts: Attempts, error: UsdcarbError,
                       token: str | None) -> bool:
        """Prepare to try again after ``error`` (refresh or back off); False to give up."""
        if attempts.should_refresh(error):
            logger.info("%s: token refused, refreshing it and trying once more", spec.path)
            await self.tokens.refresh(token)
            return True
        delay = attempts.next_delay(error)
        if delay is None:
            return False
        logger.info("%s failed with %s; retry %d in %.2fs", spec.path, error.code.name,
                    attempts.retries, delay)
        await asyncio.sleep(delay)
        return True

    async def unary(self, spec: MethodSpec, request: betterproto2.Message,
                    timeout: Timeout | object,  # noqa: ASYNC109  (the gRPC deadline)
                    metadata: Metadata) -> betterproto2.Message:
        """Call a unary RPC and return its response."""
        attempts = self._attempts(spec, request, timeout, self.timeout)
        call = self._callable(spec)
        while True:
            token = await self.tokens.token()
            try:
                response = await call(request, timeout=attempts.remaining(),
                                      metadata=call_metadata(token, metadata))
                return cast(betterproto2.Message, response)
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc, spec.path)
                if not await self._recover(spec, attempts, error, token):
                    raise error from exc

    async def stream(self, spec: MethodSpec, request: betterproto2.Message,
                     timeout: Timeout | object,  # noqa: ASYNC109  (the gRPC deadline)
                     metadata: Metadata) -> AsyncIterator[betterproto2.Message]:
        """Call a server-streaming RPC and yield its messages.

        A failure before the first message is retried like a unary call; after it the
        caller has seen data, so the error is raised.
        """
        attempts = self._attempts(spec, request, timeout, self.stream_timeout)
        factory = self._callable(spec)
        while True:
            token = await self.tokens.token()
            call = factory(request, timeout=attempts.remaining(),
                           metadata=call_metadata(token, metadata))
            received = False
            try:
                async for message in call:
                    received = True
                    yield message
                return
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc, spec.path)
                if received or not await self._recover(spec, attempts, error, token):
                    raise error from exc
            finally:
                call.cancel()  # a no-op when done; stops the stream when the caller breaks

    async def close(self) -> None:
        """Close the channel, cancelling calls in flight."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._callables.clear()


def _unary_method(spec: MethodSpec) -> Callable[..., Any]:
    async def method(self: AsyncService, request: betterproto2.Message | None = None, /, *,
                     timeout: Timeout | object = DEFAULT,  # noqa: ASYNC109  (gRPC deadline)
                     metadata: Metadata = (), **fields: Any) -> betterproto2.Message:
        return await self._transport.unary(spec, build_request(spec, request, fields),
                                           timeout, metadata)

    method.__name__ = method.__qualname__ = spec.attribute
    method.__doc__ = method_doc(spec)
    return method


def _stream_method(spec: MethodSpec) -> Callable[..., Any]:
    def method(self: AsyncService, request: betterproto2.Message | None = None, /, *,
               timeout: Timeout | object = DEFAULT, metadata: Metadata = (),
               **fields: Any) -> AsyncIterator[betterproto2.Message]:
        return self._transport.stream(spec, build_request(spec, request, fields),
                                      timeout, metadata)

    method.__name__ = method.__qualname__ = spec.attribute
    method.__doc__ = method_doc(spec)
    return method


class AsyncService:
    """Call the RPCs of one service; a subclass per service adds one method per RPC."""

    spec: ClassVar[ServiceSpec]

    def __init__(self, transport: _AsyncTransport) -> None:
        self._transport = transport

    if TYPE_CHECKING:  # the RPC methods are added at run time, from the generated stubs
        def __getattr__(self, name: str) -> Any: ...

    def _method(self, attribute: str) -> MethodSpec:
        for spec in self.spec.methods:
            if spec.attribute == attribute:
                return spec
        names = [m.attribute for m in self.spec.methods]
        raise AttributeError(f"expected a method of {self.spec.name} in {names}, "
                             f"got {attribute!r}")

    async def iterate(self, method: str, request: betterproto2.Message | None = None, /, *,
                      metadata: Metadata = (), **fields: Any) -> AsyncIterator[Any]:
        """Yield every item of a List method, following next_page_token page by page."""
        spec = self._method(method)
        field = items_field(spec.response_type)
        page_request = build_request(spec, request, fields)
        while True:
            page = await self._transport.unary(spec, page_request, DEFAULT, metadata)
            for item in getattr(page, field):
                yield item
            token = cast(str, getattr(page, "next_page_token"))  # noqa: B009
            if not token:
                return
            page_request = copy.copy(page_request)
            page_request.page_token = token  # type: ignore[attr-defined]


class AsyncStrategies(AsyncService):
    """StrategyService, plus shortcuts for the common calls."""

    async def create(self, *, display_name: str, kind: v1.StrategyKind | int | str,
                     strategy_id: str = "", description: str = "",
                     labels: dict[str, str] | None = None, request_id: str | None = None,
                     timeout: Timeout | object = DEFAULT,  # noqa: ASYNC109  (gRPC deadline)
                     ) -> v1.Strategy:
        """Create a strategy; a generated request id makes the call safe to retry."""
        request = create_strategy_request(
            display_name=display_name, kind=kind, strategy_id=strategy_id,
            description=description, labels=labels, request_id=request_id)
        return cast(v1.Strategy, await self.create_strategy(request, timeout=timeout))

    async def create_version(self, parent: str, parameters: ParametersLike, *,
                             description: str = "",
                             timeout: Timeout | object = DEFAULT,  # noqa: ASYNC109
                             ) -> v1.StrategyVersion:
        """Create (or find, by content) a version of strategy ``parent`` (id or name)."""
        request = create_version_request(parent, parameters, description=description)
        return cast(v1.StrategyVersion,
                    await self.create_strategy_version(request, timeout=timeout))

    async def get(self, strategy: str) -> v1.Strategy:
        """Get a strategy by id or name."""
        return cast(v1.Strategy, await self.get_strategy(name=strategy_name(strategy)))

    def all_strategies(self, *, kind: v1.StrategyKind | int | str | None = None,
                       label: str = "", page_size: int = 0) -> AsyncIterator[v1.Strategy]:
        """Yield every strategy (newest first), optionally of one kind or with one label."""
        request = v1.ListStrategiesRequest(page_size=page_size, label=label)
        if kind is not None:
            request.kind = parse_kind(kind)
        return self.iterate("list_strategies", request)

    def all_versions(self, strategy: str, *,
                     page_size: int = 0) -> AsyncIterator[v1.StrategyVersion]:
        """Yield every version of a strategy (id or name), newest first."""
        return self.iterate("list_strategy_versions", parent=strategy_name(strategy),
                            page_size=page_size)


_HELPER_BASES: dict[str, type[AsyncService]] = {"strategies": AsyncStrategies}


@functools.cache
def _service_class(spec: ServiceSpec) -> type[AsyncService]:
    base = _HELPER_BASES.get(spec.attribute, AsyncService)
    methods = {m.attribute: _stream_method(m) if m.server_streaming else _unary_method(m)
               for m in spec.methods}
    clash = sorted(name for name in methods if hasattr(base, name))
    if clash:
        raise TypeError(f"expected RPC names distinct from {base.__name__}'s, got {clash}")
    short = spec.name.rsplit(".", 1)[-1]
    return type(f"Async{short}", (base,),
                {**methods, "spec": spec, "__doc__": spec.doc, "__module__": __name__})


class AsyncClient:
    """Talk to the usdcarb gateway (or one service) over gRPC, asynchronously."""

    strategies: AsyncStrategies
    backtests: AsyncService
    ingestion: AsyncService
    validation: AsyncService
    notifications: AsyncService
    identity: AsyncService

    def __init__(self, target: str, *, token: str | None = None,
                 token_provider: TokenProvider | None = None,
                 timeout: Timeout = DEFAULT_TIMEOUT_S, stream_timeout: Timeout = None,
                 retries: int | RetryPolicy = 3,
                 credentials: grpc.ChannelCredentials | None = None,
                 ca_file: CaFile | None = None,
                 options: Metadata = ()) -> None:
        """Prepare a client for ``target`` ("host:port" or an http(s) URL).

        ``timeout`` bounds each unary call including its retries; ``stream_timeout``
        bounds streams (None: no deadline). ``retries`` is the most retries of an
        idempotent call, or a RetryPolicy. No connection is made before the first call.
        TLS for an ``https://`` target or with ``ca_file`` (the CA to trust, e.g. the local
        stack's dev CA; default ``$USDCARB_CA_FILE``, else the system's roots) or
        ``credentials``; plaintext for ``http://`` and a bare "host:port".
        """
        policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(max_retries=retries)
        self._transport = _AsyncTransport(
            target, credentials, options, AsyncTokenSource(token, token_provider), policy,
            timeout, stream_timeout, ca_file)
        for spec in services():
            setattr(self, spec.attribute, _service_class(spec)(self._transport))

    async def close(self) -> None:
        """Close the connection."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
