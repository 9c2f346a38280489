"""Refuse requests that do not decode, and REST bodies the request message does not fit.

Two kinds of bad input would otherwise slip past the handlers:

- bytes that are not a valid message of the method's request type (the transcoder
  writes corrupt wire format for some JSON, e.g. ``labels: {"a": {}}``): grpc would
  answer UNKNOWN with the exception's class and text. The deserializer here keeps the
  failure instead, and the call ends INVALID_ARGUMENT before the handler runs.
- a REST body with fields the message does not define, wrong JSON types or
  non-finite numbers, which the transcoder drops or coerces silently: the gateway
  forwards the raw body (``strictjson.BODY_HEADER``) and it is checked strictly here.

Runs innermost (after identity and authorization), so an anonymous caller costs no
JSON parsing, and inside the error interceptor, which maps the InvalidArgument.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from usdcarb.platform import strictjson
from usdcarb.platform.errors import InvalidArgument
from usdcarb.platform.textcheck import nul_fields

__all__ = ["RequestCheckInterceptor", "Undecodable"]

Behaviour = Callable[..., Any]
MAX_CHECKED_BODY = 256 * 1024  # the gateway's limit (usdcarb.gateway.envoy.MAX_JSON_BODY_BYTES)


class Undecodable:
    """Stands for a request whose bytes did not decode (the error is kept for the log)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _guarded(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or anything a custom deserializer raises
            return Undecodable(exc)

    return decode


# Set by Envoy's transcoder on every REST request it turns into a gRPC call.
TRANSCODED_HEADER = "x-envoy-original-path"


def _json_body(metadata: Any) -> tuple[str | bytes | None, bool]:
    """Return the raw-body header (or None) and whether the call was transcoded."""
    body: str | bytes | None = None
    transcoded = False
    for key, value in metadata or ():
        if key == strictjson.BODY_HEADER:
            body = value
        elif key == TRANSCODED_HEADER:
            transcoded = True
    return body, transcoded


def check_request(method: str, request: Any, raw_body: str | bytes | None,
                  transcoded: bool = False) -> None:
    """Raise InvalidArgument if ``request`` did not decode or its REST body is not strict.

    A transcoded call of a method with a REST body must carry the raw body (fail
    closed: a gateway whose Lua step did not run, or a body it let through unchecked,
    never reaches the handler unchecked).
    """
    target = strictjson.body_target(method) if raw_body is not None or transcoded else None
    if raw_body is None and target is not None:
        raise InvalidArgument(
            [("", "expected the gateway to forward the raw JSON body for its strict check "
                  f"(at most {MAX_CHECKED_BODY} bytes), got none")],
            reason="BODY_NOT_CHECKED")
    if raw_body is not None:
        body = strictjson.decode_header(raw_body)
        if body is None:
            raise InvalidArgument.for_field(
                strictjson.BODY_HEADER, "the base64 request body", "undecodable header")
        if target is not None:
            found = strictjson.violations(body, *target)
            if found:
                raise InvalidArgument(found, reason="INVALID_JSON_BODY")
    if isinstance(request, Undecodable):
        raise InvalidArgument(
            [("", "expected a well-formed protobuf message of the method's request type, "
                  "got bytes that do not decode")],
            reason="UNDECODABLE_REQUEST")
    # Query and path parameters are checked only here, decoded: NUL would reach PostgreSQL.
    nul = nul_fields(request) if isinstance(request, Message) else []
    if nul:
        raise InvalidArgument(nul, reason="NUL_IN_TEXT")


def _wrap(handler: Any, method: str, raw_body: str | bytes | None, transcoded: bool) -> Any:
    kwargs = {
        "request_deserializer": _guarded(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner: Behaviour = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            check_request(method, request, raw_body, transcoded)
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    stream_inner: Behaviour = handler.unary_stream
    if inspect.iscoroutinefunction(stream_inner):
        async def writer(request: Any, context: Any) -> None:
            check_request(method, request, raw_body, transcoded)
            await stream_inner(request, context)

        return grpc.unary_stream_rpc_method_handler(writer, **kwargs)

    async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
        check_request(method, request, raw_body, transcoded)
        result = stream_inner(request, context)
        if inspect.isawaitable(result):
            await result
            return
        async for response in result:
            yield response

    return grpc.unary_stream_rpc_method_handler(generator, **kwargs)


class RequestCheckInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Check unary requests (undecodable bytes, strict REST JSON) before the handler."""

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler  # no REST binding streams requests; their items decode lazily
        method = handler_call_details.method.lstrip("/")
        raw_body, transcoded = _json_body(handler_call_details.invocation_metadata)
        return _wrap(handler, method, raw_body, transcoded)
