"""Exceptions raised by the SDK, one class per gRPC status code, with the rich details.

Every failed call raises a ``UsdcarbError`` subclass chosen by the status code. The
``google.rpc.Status`` the server put in the ``grpc-status-details-bin`` trailer is decoded
into betterproto2 messages, so callers read ``err.reason`` (ErrorInfo),
``err.field_violations`` (BadRequest), ``err.retry_after`` (RetryInfo) and so on without
touching protobuf ``Any`` values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import betterproto2
import grpc

from usdcarb_sdk._gen.google import rpc
from usdcarb_sdk.error_details import (
    BadRequest,
    BadRequestFieldViolation,
    ErrorInfo,
    PreconditionFailure,
    PreconditionFailureViolation,
    QuotaFailure,
    QuotaFailureViolation,
    RequestInfo,
    ResourceInfo,
    RetryInfo,
    unpack_detail,
)

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UsdcarbError",
    "from_rpc_error",
]

logger = logging.getLogger(__name__)

STATUS_DETAILS_KEY = "grpc-status-details-bin"
M = TypeVar("M", bound=betterproto2.Message)


class UsdcarbError(Exception):
    """Report a failed call: its status code, message and decoded ``google.rpc`` details."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN  # the class's code; an instance may differ

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None,
                 details: Sequence[betterproto2.Message] = (), method: str = "") -> None:
        super().__init__(message)
        self.code = type(self).code if code is None else code
        self.message = message
        self.details = list(details)
        self.method = method

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        return f"{self.code.name}: {self.message}{where}"

    def detail(self, kind: type[M]) -> M | None:
        """Return the first detail of type ``kind``, or None."""
        return next((d for d in self.details if isinstance(d, kind)), None)

    @property
    def error_info(self) -> ErrorInfo | None:
        """The ErrorInfo detail (every platform error carries one)."""
        return self.detail(ErrorInfo)

    @property
    def reason(self) -> str:
        """ErrorInfo.reason, a stable UPPER_SNAKE_CASE identifier, or "" without one."""
        info = self.error_info
        return info.reason if info else ""

    @property
    def request_id(self) -> str:
        """The server's id for the failed request (RequestInfo), or ""."""
        info = self.detail(RequestInfo)
        return info.request_id if info else ""

    @property
    def resource_info(self) -> ResourceInfo | None:
        """The ResourceInfo detail naming the resource concerned, if any."""
        return self.detail(ResourceInfo)

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait before retrying (RetryInfo), or None."""
        info = self.detail(RetryInfo)
        if info is None or info.retry_delay is None:
            return None
        return info.retry_delay.total_seconds()


class Cancelled(UsdcarbError):
    """Signal that the call was cancelled."""

    code = grpc.StatusCode.CANCELLED


class InvalidArgument(UsdcarbError):
    """Signal a bad request; ``field_violations`` says which fields and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    @property
    def field_violations(self) -> list[BadRequestFieldViolation]:
        """Every bad field (path and description) from the BadRequest details."""
        return [v for d in self.details if isinstance(d, BadRequest) for v in d.field_violations]


class DeadlineExceeded(UsdcarbError):
    """Signal that the call did not finish before its deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(UsdcarbError):
    """Signal that the named resource does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(UsdcarbError):
    """Signal that the resource to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(UsdcarbError):
    """Signal that the caller's roles do not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(UsdcarbError):
    """Signal a quota or rate limit; ``retry_after`` says when to try again."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    @property
    def quota_violations(self) -> list[QuotaFailureViolation]:
        """Every exceeded quota from the QuotaFailure details."""
        return [v for d in self.details if isinstance(d, QuotaFailure) for v in d.violations]


class FailedPrecondition(UsdcarbError):
    """Signal that the system is not in the state the call needs; see ``violations``."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    @property
    def violations(self) -> list[PreconditionFailureViolation]:
        """Every unmet precondition from the PreconditionFailure details."""
        return [v for d in self.details if isinstance(d, PreconditionFailure)
                for v in d.violations]


class Aborted(UsdcarbError):
    """Signal a concurrency conflict (e.g. a stale etag); retry from a fresh read."""

    code = grpc.StatusCode.ABORTED


class Unimplemented(UsdcarbError):
    """Signal that the server does not implement the method (yet)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(UsdcarbError):
    """Signal a server bug; quote ``request_id`` when reporting it."""

    code = grpc.StatusCode.INTERNAL


class Unavailable(UsdcarbError):
    """Signal that the service cannot be reached now; idempotent calls are retried."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(UsdcarbError):
    """Signal a missing, expired or invalid token."""

    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[UsdcarbError]] = {
    klass.code: klass
    for klass in (Cancelled, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                  PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted,
                  Unimplemented, Internal, Unavailable, Unauthenticated)
}


def decode_status(trailers: Sequence[tuple[str, Any]] | None) -> rpc.Status | None:
    """Return the google.rpc.Status in ``trailers``, or None when there is none or it is bad."""
    for key, value in trailers or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return rpc.Status.parse(value)
            except Exception:  # a broken trailer must not hide the real error
                logger.warning("could not decode %s, ignoring it", STATUS_DETAILS_KEY,
                               exc_info=True)
    return None


def from_rpc_error(error: grpc.RpcError, method: str = "") -> UsdcarbError:
    """Convert a failed grpc (sync or aio) call into the matching ``UsdcarbError``."""
    # Every RpcError grpc raises is also a Call carrying the status and trailers.
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    status = decode_status(error.trailing_metadata())
    details = [unpack_detail(item) for item in status.details] if status else []
    if status is not None and status.message:
        message = status.message
    klass = _BY_CODE.get(code, UsdcarbError)
    return klass(message, code=code, details=details, method=method)
