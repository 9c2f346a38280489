"""Read the RPC table of every service from the betterproto2 generated sync stubs.

The generated ``*ServiceStub`` classes are the SDK's source of truth for method paths,
request and response types and streaming flags: each stub method is called once against
a recording channel, which captures the path, the call shape and the response parser,
while the request type comes from the method's annotation. Nothing is hand-written per
RPC, so a regenerated ``_gen`` package changes the SDK surface with it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import betterproto2

from usdcarb_sdk._gen.usdcarb import v1

__all__ = ["SERVICE_ATTRIBUTES", "MethodSpec", "ServiceSpec", "is_idempotent", "services"]

# Client attribute for each generated stub; a new service must be named here (a test
# checks that every stub is), because the attribute is public API.
SERVICE_ATTRIBUTES: Mapping[str, str] = {
    "StrategyServiceStub": "strategies",
    "BacktestServiceStub": "backtests",
    "IngestionServiceStub": "ingestion",
    "ValidationServiceStub": "validation",
    "NotificationServiceStub": "notifications",
    "IdentityServiceStub": "identity",
}

# Reads and watches change nothing, so repeating them is always safe.
_IDEMPOTENT_PREFIXES = ("Get", "List", "Watch", "Diff")
# Creates whose result is addressed by content: repeating one returns the first result
# (strategy.proto: "creating the same parameters twice returns the existing version").
_CONTENT_ADDRESSED = frozenset({"/usdcarb.v1.StrategyService/CreateStrategyVersion"})


@dataclasses.dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC: where it lives, what it takes and returns, and how it is called."""

    service: str  # full service name, "usdcarb.v1.StrategyService"
    name: str  # proto method name, "CreateStrategy"
    attribute: str  # Python method name, "create_strategy"
    path: str  # "/usdcarb.v1.StrategyService/CreateStrategy"
    request_type: type[betterproto2.Message]
    response_type: type[betterproto2.Message]
    server_streaming: bool
    doc: str


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service: its stub, the client attribute naming it and its methods."""

    name: str
    attribute: str
    doc: str
    methods: tuple[MethodSpec, ...]


class _RecordingChannel:
    """Stand in for a grpc.Channel and remember the one call a stub method makes."""

    def __init__(self) -> None:
        self.shape = ""
        self.path = ""
        self.parser: Callable[[bytes], Any] | None = None

    def _record(self, shape: str, path: str, parser: Callable[[bytes], Any]) -> None:
        self.shape, self.path, self.parser = shape, path, parser

    def unary_unary(self, path: str, _serializer: Any = None, parser: Any = None,
                    **_: Any) -> Callable[..., None]:
        self._record("unary_unary", path, parser)
        return lambda *args, **kwargs: None

    def unary_stream(self, path: str, _serializer: Any = None, parser: Any = None,
                     **_: Any) -> Callable[..., Iterator[Any]]:
        self._record("unary_stream", path, parser)
        return lambda *args, **kwargs: iter(())

    def stream_unary(self, path: str, *_: Any, **__: Any) -> Any:
        raise NotImplementedError(f"expected unary requests, got client streaming {path}")

    stream_stream = stream_unary


def _request_type(method: Callable[..., Any], module: types.ModuleType) -> type[Any]:
    """Return the message class of a stub method's ``message`` parameter."""
    hint = typing.get_type_hints(method, globalns=vars(module))["message"]
    # Optional requests are annotated "Msg | None".
    candidates = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    (klass,) = candidates
    return typing.cast(type[Any], klass)


def _response_type(parser: Callable[[bytes], Any] | None, path: str) -> type[Any]:
    """Return the class whose ``FromString`` classmethod the stub passed as parser."""
    owner = getattr(parser, "__self__", None)
    if not (isinstance(owner, type) and issubclass(owner, betterproto2.Message)):
        raise TypeError(f"expected a Message.FromString parser for {path}, got {parser!r}")
    return owner


def _method_spec(stub: type[Any], attribute: str, module: types.ModuleType) -> MethodSpec:
    method = getattr(stub, attribute)
    request_type = _request_type(method, module)
    channel = _RecordingChannel()
    result = method(stub(channel), request_type())
    if inspect.isgenerator(result):  # streaming stubs are generators: run them to the call
        list(result)
    match = re.fullmatch(r"/([\w.]+)/(\w+)", channel.path)
    if match is None:
        raise ValueError(f"expected a '/package.Service/Method' path, got {channel.path!r}")
    return MethodSpec(
        service=match[1],
        name=match[2],
        attribute=attribute,
        path=channel.path,
        request_type=request_type,
        response_type=_response_type(channel.parser, channel.path),
        server_streaming=channel.shape == "unary_stream",
        doc=inspect.cleandoc(method.__doc__ or ""),
    )


def _service_spec(stub: type[Any], attribute: str, module: types.ModuleType) -> ServiceSpec:
    names = [name for name, value in vars(stub).items()
             if inspect.isfunction(value) and not name.startswith("_")]
    methods = tuple(_method_spec(stub, name, module) for name in names)
    return ServiceSpec(
        name=methods[0].service if methods else stub.__name__.removesuffix("Stub"),
        attribute=attribute,
        doc=inspect.cleandoc(stub.__doc__ or ""),
        methods=methods,
    )


@functools.cache
def services() -> tuple[ServiceSpec, ...]:
    """Return every service of the generated ``usdcarb.v1`` package, in client order."""
    stubs = {name: value for name, value in vars(v1).items()
             if name.endswith("ServiceStub") and isinstance(value, type)}
    unnamed = sorted(set(stubs) - set(SERVICE_ATTRIBUTES))
    if unnamed:
        raise LookupError(f"expected a client attribute for every stub, got none for {unnamed}")
    return tuple(_service_spec(stubs[stub], attribute, v1)
                 for stub, attribute in SERVICE_ATTRIBUTES.items() if stub in stubs)


def is_idempotent(spec: MethodSpec, request: betterproto2.Message) -> bool:
    """Tell whether repeating ``request`` can do no harm, so a failed call may be retried."""
    if spec.name.startswith(_IDEMPOTENT_PREFIXES) or spec.path in _CONTENT_ADDRESSED:
        return True
    return spec.name.startswith("Create") and bool(getattr(request, "request_id", ""))
