"""The blocking client: the same surface as ``AsyncClient`` on a grpcio sync channel.

It uses the method table read from the betterproto2 sync stubs, not the stubs
themselves: a generated stub method takes only the message, so it cannot carry the
per-call token, deadline or metadata.

    with Client("127.0.0.1:8080", token=token) as client:
        version = client.strategies.create_version("my-spread", {"crossExchangeSpread": {...}})
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
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
from usdcarb_sdk.auth import TokenProvider, TokenSource
from usdcarb_sdk.errors import UsdcarbError, from_rpc_error
from usdcarb_sdk.retry import Attempts, RetryPolicy
from usdcarb_sdk.strategy_requests import (
    ParametersLike,
    create_strategy_request,
    create_version_request,
    parse_kind,
    strategy_name,
)

__all__ = ["Client", "Service", "Strategies"]

logger = logging.getLogger(__name__)

Timeout = float | None


class _Transport:
    """Run calls on a grpc sync channel with tokens, retries and error mapping."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None,
                 options: Metadata, tokens: TokenSource, policy: RetryPolicy,
                 timeout: Timeout, stream_timeout: Timeout, ca_file: CaFile | None = None) -> None:
        address = parse_target(target, credentials, ca_file)
        self._channel = (
            grpc.secure_channel(address.address, address.credentials, list(options))
            if address.credentials else grpc.insecure_channel(address.address, list(options)))
        self.tokens = tokens
        self.policy = policy
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._callables: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _callable(self, spec: MethodSpec) -> Any:
        with self._lock:
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

    def _recover(self, spec: MethodSpec, attempts: Attempts, error: UsdcarbError,
                 token: str | None) -> bool:
        """Prepare to try again after ``error`` (refresh or back off); False to give up."""
        if attempts.should_refresh(error):
            logger.info("%s: token refused, refreshing it and trying once more", spec.path)
            self.tokens.refresh(token)
            return True
        delay = attempts.next_delay(error)
        if delay is None:
            return False
        logger.info("%s failed with %s; retry %d in %.2fs", spec.path, error.code.name,
                    attempts.retries, delay)
        time.sleep(delay)
        return True

    def unary(self, spec: MethodSpec, request: betterproto2.Message,
              timeout: Timeout | object, metadata: Metadata) -> betterproto2.Message:
        """Call a unary RPC and return its response."""
        attempts = self._attempts(spec, request, timeout, self.timeout)
        call = self._callable(spec)
        while True:
            token = self.tokens.token()
            try:
                response = call(request, timeout=attempts.remaining(),
                                metadata=call_metadata(token, metadata))
                return cast(betterproto2.Message, response)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc, spec.path)
                if not self._recover(spec, attempts, error, token):
                    raise error from exc

    def stream(self, spec: MethodSpec, request: betterproto2.Message,
               timeout: Timeout | object, metadata: Metadata) -> Iterator[betterproto2.Message]:
        """Call a server-streaming RPC and yield its messages (retried before the first)."""
        attempts = self._attempts(spec, request, timeout, self.stream_timeout)
        factory = self._callable(spec)
        while True:
            token = self.tokens.token()
            call = factory(request, timeout=attempts.remaining(),
                           metadata=call_metadata(token, metadata))
            received = False
            try:
                for message in call:
                    received = True
                    yield message
                return
            except grpc.RpcError as exc:
                error = from_rpc_error(exc, spec.path)
                if received or not self._recover(spec, attempts, error, token):
                    raise error from exc
            finally:
                call.cancel()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


def _unary_method(spec: MethodSpec) -> Callable[..., Any]:
    def method(self: Service, request: betterproto2.Message | None = None, /, *,
               timeout: Timeout | object = DEFAULT, metadata: Metadata = (),
               **fields: Any) -> betterproto2.Message:
        return self._transport.unary(spec, build_request(spec, request, fields), timeout,
                                     metadata)

    method.__name__ = method.__qualname__ = spec.attribute
    method.__doc__ = method_doc(spec)
    return method


def _stream_method(spec: MethodSpec) -> Callable[..., Any]:
    def method(self: Service, request: betterproto2.Message | None = None, /, *,
               timeout: Timeout | object = DEFAULT, metadata: Metadata = (),
               **fields: Any) -> Iterator[betterproto2.Message]:
        return self._transport.stream(spec, build_request(spec, request, fields), timeout,
                                      metadata)

    method.__name__ = method.__qualname__ = spec.attribute
    method.__doc__ = method_doc(spec)
    return method


class Service:
    """Call the RPCs of one service; a subclass per service adds one method per RPC."""

    spec: ClassVar[ServiceSpec]

    def __init__(self, transport: _Transport) -> None:
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

    def iterate(self, method: str, request: betterproto2.Message | None = None, /, *,
                metadata: Metadata = (), **fields: Any) -> Iterator[Any]:
        """Yield every item of a List method, following next_page_token page by page."""
        spec = self._method(method)
        field = items_field(spec.response_type)
        page_request = build_request(spec, request, fields)
        while True:
            page = self._transport.unary(spec, page_request, DEFAULT, metadata)
            yield from getattr(page, field)
            token = cast(str, getattr(page, "next_page_token"))  # noqa: B009
            if not token:
                return
            page_request = copy.copy(page_request)
            page_request.page_token = token  # type: ignore[attr-defined]


class Strategies(Service):
    """StrategyService, plus shortcuts for the common calls."""

    def create(self, *, display_name: str, kind: v1.StrategyKind | int | str,
               strategy_id: str = "", description: str = "",
               labels: dict[str, str] | None = None, request_id: str | None = None,
               timeout: Timeout | object = DEFAULT) -> v1.Strategy:
        """Create a strategy; a generated request id makes the call safe to retry."""
        request = create_strategy_request(
            display_name=display_name, kind=kind, strategy_id=strategy_id,
            description=description, labels=labels, request_id=request_id)
        return cast(v1.Strategy, self.create_strategy(request, timeout=timeout))

    def create_version(self, parent: str, parameters: ParametersLike, *,
                       description: str = "",
                       timeout: Timeout | object = DEFAULT) -> v1.StrategyVersion:
        """Create (or find, by content) a version of strategy ``parent`` (id or name)."""
        request = create_version_request(parent, parameters, description=description)
        return cast(v1.StrategyVersion, self.create_strategy_version(request, timeout=timeout))

    def get(self, strategy: str) -> v1.Strategy:
        """Get a strategy by id or name."""
        return cast(v1.Strategy, self.get_strategy(name=strategy_name(strategy)))

    def all_strategies(self, *, kind: v1.StrategyKind | int | str | None = None,
                       label: str = "", page_size: int = 0) -> Iterator[v1.Strategy]:
        """Yield every strategy (newest first), optionally of one kind or with one label."""
        request = v1.ListStrategiesRequest(page_size=page_size, label=label)
        if kind is not None:
            request.kind = parse_kind(kind)
        return self.iterate("list_strategies", request)

    def all_versions(self, strategy: str, *, page_size: int = 0) -> Iterator[v1.StrategyVersion]:
        """Yield every version of a strategy (id or name), newest first."""
        return self.iterate("list_strategy_versions", parent=strategy_name(strategy),
                            page_size=page_size)


_HELPER_BASES: dict[str, type[Service]] = {"strategies": Strategies}


@functools.cache
def _service_class(spec: ServiceSpec) -> type[Service]:
    base = _HELPER_BASES.get(spec.attribute, Service)
    methods = {m.attribute: _stream_method(m) if m.server_streaming else _unary_method(m)
               for m in spec.methods}
    clash = sorted(name for name in methods if hasattr(base, name))
    if clash:
        raise TypeError(f"expected RPC names distinct from {base.__name__}'s, got {clash}")
    short = spec.name.rsplit(".", 1)[-1]
    return type(short, (base,),
                {**methods, "spec": spec, "__doc__": spec.doc, "__module__": __name__})


class Client:
    """Talk to the usdcarb gateway (or one service) over gRPC, blocking."""

    strategies: Strategies
    backtests: Service
    ingestion: Service
    validation: Service
    notifications: Service
    identity: Service

    def __init__(self, target: str, *, token: str | None = None,
                 token_provider: Callable[[], str] | None = None,
                 timeout: Timeout = DEFAULT_TIMEOUT_S, stream_timeout: Timeout = None,
                 retries: int | RetryPolicy = 3,
                 credentials: grpc.ChannelCredentials | None = None,
                 ca_file: CaFile | None = None,
                 options: Metadata = ()) -> None:
        """Prepare a client for ``target`` ("host:port" or an http(s) URL).

        Arguments are those of ``AsyncClient``; ``token_provider`` must be synchronous.
        """
        policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(max_retries=retries)
        provider = cast(TokenProvider | None, token_provider)
        self._transport = _Transport(target, credentials, options,
                                     TokenSource(token, provider), policy, timeout,
                                     stream_timeout, ca_file)
        for spec in services():
            setattr(self, spec.attribute, _service_class(spec)(self._transport))

    def close(self) -> None:
        """Close the connection."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
