"""Serve a contract whose implementation is later work: every RPC says so clearly.

A service process that is up but not built yet must not pretend: each method answers
UNIMPLEMENTED with an ErrorInfo naming the work that will implement it, while health,
reflection and metrics work as for any service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory

from usdcarb.platform.errors import Unimplemented


def pending_handler(service: str, owner: str) -> grpc.GenericRpcHandler:
    """Return a handler answering every method of ``service`` with UNIMPLEMENTED.

    ``service`` is a full name ("usdcarb.v1.IngestionService") whose _pb2 module has
    been imported, so its descriptor is in the default pool.
    """
    desc = descriptor_pool.Default().FindServiceByName(service)
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in desc.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        full = f"/{service}/{method.name}"
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _streaming(full, owner), request_deserializer=request_cls.FromString,
                response_serializer=_serialize,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary(full, owner), request_deserializer=request_cls.FromString,
                response_serializer=_serialize,
            )
    return grpc.method_handlers_generic_handler(service, handlers)


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _unary(method: str, owner: str) -> Any:
    async def behaviour(request: Any, context: Any) -> Any:
        raise Unimplemented(method, owner)

    return behaviour


def _streaming(method: str, owner: str) -> Any:
    async def behaviour(request: Any, context: Any) -> AsyncIterator[Any]:
        raise Unimplemented(method, owner)
        yield  # pragma: no cover  (makes this an async generator)

    return behaviour
