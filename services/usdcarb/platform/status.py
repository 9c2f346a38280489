"""Map domain errors to a gRPC status code plus ``google.rpc`` details.

One table, ``STATUS_TABLE``, decides the code and the details of each error class;
a subclass (``StrategyNotFound(NotFound)``) inherits its nearest ancestor's row.
Every error status also carries ErrorInfo (reason, domain ``usdcarb.dev``, metadata)
and RequestInfo (the request id), as AIP-193 asks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from usdcarb.platform.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

ERROR_DOMAIN = "usdcarb.dev"

DetailsBuilder = Callable[[Any], Sequence[Message]]
M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class StatusMapping:
    """How one error class becomes a status: its code and its extra details."""

    code: grpc.StatusCode
    details: DetailsBuilder


def _none(_: DomainError) -> Sequence[Message]:
    return ()


def _resource_info(exc: NotFound | AlreadyExists) -> Sequence[Message]:
    return (
        error_details_pb2.ResourceInfo(
            resource_type=exc.resource_type,
            resource_name=exc.name,
            owner=exc.owner,
            description=exc.message,
        ),
    )


def _bad_request(exc: InvalidArgument) -> Sequence[Message]:
    return (
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in exc.field_violations
            ]
        ),
    )


def _precondition_failure(exc: FailedPrecondition) -> Sequence[Message]:
    return (
        error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=v.type, subject=v.subject, description=v.description
                )
                for v in exc.violations
            ]
        ),
    )


def _retry_info(retry_after: float | None) -> Sequence[Message]:
    if retry_after is None:
        return ()
    seconds = math.floor(retry_after)
    delay = duration_pb2.Duration(
        seconds=seconds, nanos=round((retry_after - seconds) * 1_000_000_000)
    )
    return (error_details_pb2.RetryInfo(retry_delay=delay),)


def _quota_failure(exc: ResourceExhausted) -> Sequence[Message]:
    quota = error_details_pb2.QuotaFailure(
        violations=[
            error_details_pb2.QuotaFailure.Violation(subject=v.subject, description=v.description)
            for v in exc.violations
        ]
    )
    return (quota, *_retry_info(exc.retry_after))


def _retry_only(exc: Unavailable | Aborted) -> Sequence[Message]:
    return _retry_info(exc.retry_after)


STATUS_TABLE: dict[type[DomainError], StatusMapping] = {
    NotFound: StatusMapping(grpc.StatusCode.NOT_FOUND, _resource_info),
    AlreadyExists: StatusMapping(grpc.StatusCode.ALREADY_EXISTS, _resource_info),
    InvalidArgument: StatusMapping(grpc.StatusCode.INVALID_ARGUMENT, _bad_request),
    FailedPrecondition: StatusMapping(grpc.StatusCode.FAILED_PRECONDITION, _precondition_failure),
    PermissionDenied: StatusMapping(grpc.StatusCode.PERMISSION_DENIED, _none),
    Unauthenticated: StatusMapping(grpc.StatusCode.UNAUTHENTICATED, _none),
    ResourceExhausted: StatusMapping(grpc.StatusCode.RESOURCE_EXHAUSTED, _quota_failure),
    Unavailable: StatusMapping(grpc.StatusCode.UNAVAILABLE, _retry_only),
    Aborted: StatusMapping(grpc.StatusCode.ABORTED, _retry_only),
    Unimplemented: StatusMapping(grpc.StatusCode.UNIMPLEMENTED, _none),
    Cancelled: StatusMapping(grpc.StatusCode.CANCELLED, _none),
    # A bare DomainError is a bug in the raiser (no category), but its message was
    # written for the caller, so it is not hidden behind INTERNAL.
    DomainError: StatusMapping(grpc.StatusCode.UNKNOWN, _none),
}


def mapping_for(exc_type: type[DomainError]) -> StatusMapping:
    """Return the row of the nearest ancestor of ``exc_type`` in STATUS_TABLE."""
    for klass in exc_type.__mro__:
        row = STATUS_TABLE.get(klass)
        if row is not None:
            return row
    raise AssertionError("DomainError is in STATUS_TABLE")  # pragma: no cover


def _pack(messages: Sequence[Message]) -> list[any_pb2.Any]:
    packed = []
    for message in messages:
        item = any_pb2.Any()
        item.Pack(message)
        packed.append(item)
    return packed


def _request_info(request_id: str) -> Sequence[Message]:
    return (error_details_pb2.RequestInfo(request_id=request_id),) if request_id else ()


def domain_status(exc: DomainError, request_id: str = "") -> status_pb2.Status:
    """Build the google.rpc.Status for a domain error."""
    row = mapping_for(type(exc))
    info = error_details_pb2.ErrorInfo(
        reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata
    )
    details = [info, *row.details(exc), *_request_info(request_id)]
    return status_pb2.Status(code=row.code.value[0], message=exc.message, details=_pack(details))


def internal_status(request_id: str) -> status_pb2.Status:
    """Build the opaque INTERNAL status for an unexpected exception.

    The message names only the request id: the exception text may hold SQL, paths
    or secrets, and the id lets an operator find the logged traceback.
    """
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"request_id": request_id}
    )
    return status_pb2.Status(
        code=grpc.StatusCode.INTERNAL.value[0],
        message=f"internal error (request id {request_id})",
        details=_pack([info, *_request_info(request_id)]),
    )


def to_grpc_status(status: status_pb2.Status, request_id: str = "") -> grpc.Status:
    """Convert a google.rpc.Status for ``context.abort_with_status``.

    With ``request_id``, the trailers also carry it as ``x-request-id``: a failed call
    sends no initial metadata (so that it stays trailers-only), the trailers are where
    a caller finds the id.
    """
    converted = rpc_status.to_status(status)
    if not request_id:
        return converted
    return _Status(converted.code, converted.details,
                   (*converted.trailing_metadata, ("x-request-id", request_id)))


@dataclass(frozen=True, slots=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def unpack_details(status: status_pb2.Status, message_type: type[M]) -> list[M]:
    """Return every detail of ``status`` that is a ``message_type`` (for clients and tests)."""
    found: list[M] = []
    for item in status.details:
        if item.Is(message_type.DESCRIPTOR):
            message = message_type()
            item.Unpack(message)
            found.append(message)
    return found
