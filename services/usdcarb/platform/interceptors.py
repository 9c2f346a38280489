"""Intercept every RPC of a grpc.aio server: request id, metrics, errors, identity.

A grpc.aio server interceptor only gets to return an RpcMethodHandler; to act around
the call it must wrap the handler's behaviour function. ``wrap_handler`` does that
for the four RPC kinds, keeping a streaming behaviour's style (async generator vs
coroutine writing with ``context.write``) because grpc.aio dispatches on it.

``default_interceptors`` gives the order services use, outermost first: request id
(so every log line has it), metrics (sees the final code), errors (maps exceptions),
identity (its Unauthenticated is mapped too), authorization (the role table of
``usdcarb.platform.authz``, on the caller identity just stored).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeGuard

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from usdcarb.platform import authz, db
from usdcarb.platform.errors import (
    DomainError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from usdcarb.platform.identity import ANONYMOUS, Caller, current_caller, get_caller
from usdcarb.platform.logging import request_id
from usdcarb.platform.requestcheck import RequestCheckInterceptor
from usdcarb.platform.status import domain_status, internal_status, mapping_for, to_grpc_status
from usdcarb.platform.tokens import TokenVerifier, bearer_token

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID = 128
# A store that cannot answer now (PostgreSQL restarting or failing over, a dropped
# connection, Redis restarting) is UNAVAILABLE with a retry hint, not INTERNAL: the caller
# retries (creates carry idempotency keys; watches resume) and the soak (issue 19) found
# clients told INTERNAL for every request in flight during a PostgreSQL restart.
# Of db.UNAVAILABLE's OSError only the connection failures: a file missing is no outage.
STORE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    *(e for e in db.UNAVAILABLE if e is not OSError), ConnectionError, TimeoutError,
    RedisConnectionError, RedisTimeoutError)
STORE_RETRY_AFTER_S = 1.0

Scope = Callable[[Any], AbstractAsyncContextManager[None]]
Behaviour = Callable[..., Any]


def split_method(full_method: str) -> tuple[str, str]:
    """Split "/pkg.Service/Method" into ("pkg.Service", "Method")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


FirstMessage = Callable[[Any], Awaitable[None]]


def _wrap_unary(inner: Behaviour, scope: Scope, first: FirstMessage | None) -> Behaviour:
    async def unary(request: Any, context: Any) -> Any:
        async with scope(context):
            result = inner(request, context)
            response = await result if inspect.isawaitable(result) else result
            if first is not None:
                await first(context)
            return response

    return unary


def _wrap_stream(inner: Behaviour, scope: Scope, first: FirstMessage | None) -> Behaviour:
    if inspect.iscoroutinefunction(inner):
        # Writer style: the behaviour calls context.write and returns None.
        async def writer(request: Any, context: Any) -> None:
            async with scope(context):
                await inner(request, context)

        return writer

    async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
        async with scope(context):
            result = inner(request, context)
            if inspect.isawaitable(result):
                await result
                return
            pending = first
            async for response in result:
                if pending is not None:
                    await pending(context)
                    pending = None
                yield response

    return generator


def wrap_handler(handler: Any, scope: Scope, *, first_message: FirstMessage | None = None) -> Any:
    """Return a copy of an RpcMethodHandler whose behaviour runs inside ``scope(context)``.

    ``first_message(context)``, if given, runs just before the first response message
    leaves (after a unary behaviour returned; before a generator's first item).
    """
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    first = first_message
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, scope, first), **kwargs
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, scope, first), **kwargs
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, scope, first), **kwargs
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream(handler.stream_stream, scope, first), **kwargs
    )


class ScopeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Base: run every handler of the server inside ``self.scope(method, context)``."""

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        return wrap_handler(handler, lambda context: self.scope(method, context))

    @abstractmethod
    def scope(self, method: str, context: Any) -> AbstractAsyncContextManager[None]:
        """Return the context manager to run around one call of ``method``."""
        raise NotImplementedError


def _valid_request_id(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_REQUEST_ID
        and value.isascii()
        and value.isprintable()
    )


class RequestIdInterceptor(ScopeInterceptor):
    """Adopt the caller's ``x-request-id`` (Envoy sets one) or make one; echo it back.

    The id goes out in the initial metadata of the response (with its first message),
    and on failure in the trailers (ErrorInterceptor adds it), never up front: sent
    early, initial metadata makes every failure a non-trailers-only response, and
    Envoy's transcoder then answers a REST stream that fails before its first message
    with 200 instead of the HTTP status of its gRPC code. Writer-style streams echo it
    on failure only.
    """

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        incoming = dict(context.invocation_metadata() or ()).get(REQUEST_ID_HEADER)
        request_id.set(incoming if _valid_request_id(incoming) else uuid.uuid4().hex)
        yield

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        return wrap_handler(handler, lambda context: self.scope(method, context),
                            first_message=_echo_request_id)


async def _echo_request_id(context: Any) -> None:
    await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id.get()),))


class ErrorInterceptor(ScopeInterceptor):
    """Abort with the mapped status for domain errors and opaque INTERNAL otherwise."""

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise  # the handler aborted on purpose; its status stands
        except DomainError as exc:
            await self._abort_domain(method, context, exc)
        except NotImplementedError:
            # Generated servicer base classes raise it for RPCs a service does not
            # implement; that is UNIMPLEMENTED, not a server fault.
            await self._abort_domain(method, context, Unimplemented(method.lstrip("/")))
        except STORE_UNAVAILABLE as exc:
            logger.warning("%s: a store cannot answer now: %s: %s (request id %s)", method,
                           type(exc).__name__, exc, request_id.get())
            await self._abort_domain(method, context, Unavailable(
                "a store of the service cannot answer now; retry", reason="STORE_UNAVAILABLE",
                retry_after=STORE_RETRY_AFTER_S))
        except Exception:
            rid = request_id.get()
            logger.exception("%s raised an unexpected error (request id %s)", method, rid)
            await context.abort_with_status(to_grpc_status(internal_status(rid), rid))

    async def _abort_domain(self, method: str, context: Any, exc: DomainError) -> None:
        rid = request_id.get()
        try:
            status = domain_status(exc, rid)
        except Exception:
            # A malformed error must still not leak its text through grpc's default.
            logger.exception("%s: could not map %s (request id %s)", method, type(exc), rid)
            status = internal_status(rid)
        else:
            code = mapping_for(type(exc)).code
            logger.info("%s failed: %s %s: %s", method, code.name, exc.reason, exc.message)
        await context.abort_with_status(to_grpc_status(status, rid))


class IdentityInterceptor(ScopeInterceptor):
    """Verify the caller's bearer token and store the caller in ``identity.current_caller``.

    Every usdcarb.v1 method but the public ones (and only them) needs a valid token:
    a bad token there is UNAUTHENTICATED before any handler runs. On public methods,
    health and reflection a token is optional and one that fails verification is
    ignored (a client may still hold its expired token while it logs in again).
    Envoy's claims headers are never read.
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        name = method.lstrip("/")
        required = authz.governed(name) and not authz.is_public(name)
        caller = ANONYMOUS
        try:
            token = bearer_token(context.invocation_metadata())
            if token is not None:
                caller = await self.verifier.verify(token)
        except Unauthenticated as exc:
            if required:
                logger.warning("call.unauthenticated %s: %s (%s)", name, exc.reason, exc.message,
                               extra={"audit": "call.unauthenticated", "method": name})
                raise
        current_caller.set(caller)
        yield


class MetricsInterceptor(ScopeInterceptor):
    """Count RPCs by service/method/code, time them and gauge those in flight.

    Metric names follow go-grpc-prometheus so stock Grafana dashboards work. Unary
    calls (milliseconds) and server streams (a watch lasts minutes) are timed in separate
    histograms, so stream durations never skew the unary latency SLO.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_service", "grpc_method")
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end on the server.",
            labels,
            registry=registry,
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
                300,
            ),
        )
        self.stream_duration = Histogram(
            "grpc_server_stream_duration_seconds",
            "Time from the start of a server- or bidi-streaming RPC to its end on the server.",
            labels,
            registry=registry,
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
        )
        self.in_flight = Gauge(
            "grpc_server_in_flight", "RPCs being handled now.", labels, registry=registry
        )

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        streaming = handler.unary_stream is not None or handler.stream_stream is not None
        return wrap_handler(handler, lambda context: self.scope(method, context,
                                                                streaming=streaming))

    @asynccontextmanager
    async def scope(self, method: str, context: Any, *,
                    streaming: bool = False) -> AsyncIterator[None]:
        service, name = split_method(method)
        gauge = self.in_flight.labels(service, name)
        gauge.inc()
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            yield
            code = _code_name(context, default="OK")
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        except BaseException:
            code = _code_name(context, default="UNKNOWN")
            raise
        finally:
            gauge.dec()
            timer = self.stream_duration if streaming else self.latency
            timer.labels(service, name).observe(time.perf_counter() - started)
            self.handled.labels(service, name, code).inc()


def _code_name(context: Any, default: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return default


DeniedHook = Callable[[str, Caller, Any], Awaitable[None]]
# Called with (method, caller, context) on every refused call; a service's composition
# root may append one (identity writes "call.denied" to its audit log); with
# ``audit_stream`` on, the server adds one feeding identity's log (usdcarb.platform.audit).
denied_call_hooks: list[DeniedHook] = []


class AuthorizationInterceptor(ScopeInterceptor):
    """Refuse a usdcarb.v1 call the table of ``authz`` does not allow the verified caller.

    Anonymous callers reach only the public methods (UNAUTHENTICATED elsewhere; no
    setting changes that). A person's roles are checked against the role table
    (PERMISSION_DENIED, ErrorInfo reason ROLE_REQUIRED with permission and
    required_role); a ``service:<name>`` principal may call only the methods granted to
    its service (reason SERVICE_NOT_GRANTED). A usdcarb.v1 method missing from the table
    is refused (fail closed).
    """

    def __init__(self, *, hooks: list[DeniedHook] | None = None) -> None:
        self.hooks = denied_call_hooks if hooks is None else hooks

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        name = method.lstrip("/")
        if authz.governed(name):
            await self._check(name, get_caller(), context)
        yield

    async def _check(self, method: str, caller: Caller, context: Any) -> None:
        try:
            least = authz.minimum_role(method)
        except authz.UnknownMethod:
            await self._denied(method, caller, context)
            raise PermissionDenied(
                f"expected {method} in the authorization table, got no entry",
                permission=method, reason="METHOD_NOT_AUTHORIZED",
            ) from None
        if least is None:
            return
        if not caller.authenticated:
            raise Unauthenticated(f"expected a bearer token for {method}, got none",
                                  reason="TOKEN_MISSING")
        if caller.service:
            if not authz.service_may_call(caller.service, method):
                await self._denied(method, caller, context)
                raise PermissionDenied(
                    f"expected {method} among the methods granted to service "
                    f"{caller.service!r}, got no grant",
                    permission=method, reason="SERVICE_NOT_GRANTED")
            return
        if not authz.may_call(caller.roles, method):
            await self._denied(method, caller, context)
            raise PermissionDenied(
                f"expected role {least} or higher for {method}, got roles {sorted(caller.roles)}",
                permission=method, reason="ROLE_REQUIRED", metadata={"required_role": least},
            )

    async def _denied(self, method: str, caller: Caller, context: Any) -> None:
        logger.warning(
            "call.denied %s for %r with roles %s", method, caller.subject, sorted(caller.roles),
            extra={"audit": "call.denied", "method": method, "subject": caller.subject},
        )
        for hook in self.hooks:
            try:
                await hook(method, caller, context)
            except Exception:
                # Auditing must not turn a refusal into an INTERNAL error.
                logger.exception("denied-call hook failed for %s", method)


def default_interceptors(registry: CollectorRegistry, verifier: TokenVerifier,
                         denied_hooks: list[DeniedHook] | None = None) -> list[Any]:
    """Return the interceptors every service runs, outermost first.

    ``verifier`` checks bearer tokens; ``denied_hooks`` (default: the module's
    ``denied_call_hooks``) run on each refusal.
    """
    return [
        RequestIdInterceptor(),
        MetricsInterceptor(registry),
        ErrorInterceptor(),
        IdentityInterceptor(verifier),
        AuthorizationInterceptor(hooks=denied_hooks),
        RequestCheckInterceptor(),
    ]
