"""Raise the domain errors every service shares.

Standard library only, so a pure domain module can raise these without importing
grpc; ``usdcarb.platform.status`` maps each class to a gRPC status code and
``google.rpc`` details, and the error interceptor applies that mapping.

Messages are developer-facing English and read "expected X, got Y" where a value
was wrong. They reach the caller verbatim: never put secrets or internals in them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, NamedTuple

_MAX_SHOWN = 80


class FieldViolation(NamedTuple):
    """One bad request field (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class PreconditionViolation(NamedTuple):
    """One unmet precondition (google.rpc.PreconditionFailure.Violation)."""

    type: str
    subject: str
    description: str


class QuotaViolation(NamedTuple):
    """One exceeded quota (google.rpc.QuotaFailure.Violation)."""

    subject: str
    description: str


def expected(what: str, got: object) -> str:
    """Return the house message "expected <what>, got <got>", the value shortened."""
    shown = repr(got)
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 3] + "..."
    return f"expected {what}, got {shown}"


class DomainError(Exception):
    """Base of every error a service reports to its caller on purpose.

    ``reason`` becomes google.rpc.ErrorInfo.reason (UPPER_SNAKE_CASE, stable: clients
    branch on it) and ``metadata`` its metadata; subclasses set a default reason.
    """

    default_reason: ClassVar[str] = "DOMAIN_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        # ErrorInfo.metadata is map<string, string>: coerce now, not while aborting.
        self.metadata: dict[str, str] = {str(k): str(v) for k, v in (metadata or {}).items()}

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    """Report that a named resource does not exist."""

    default_reason = "RESOURCE_NOT_FOUND"

    def __init__(
        self,
        resource_type: str,
        name: str,
        *,
        owner: str = "",
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{resource_type} {name!r} not found", reason=reason, metadata=metadata)
        self.resource_type = resource_type
        self.name = name
        self.owner = owner


class AlreadyExists(DomainError):
    """Report that a resource with this name exists already."""

    default_reason = "RESOURCE_ALREADY_EXISTS"

    def __init__(
        self,
        resource_type: str,
        name: str,
        *,
        owner: str = "",
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            f"{resource_type} {name!r} already exists", reason=reason, metadata=metadata
        )
        self.resource_type = resource_type
        self.name = name
        self.owner = owner


class InvalidArgument(DomainError):
    """Report request fields that are wrong whatever the system's state."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        field_violations: Sequence[tuple[str, str]],
        *,
        message: str | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        violations = [FieldViolation(*v) for v in field_violations]
        if message is None:
            message = "invalid argument: " + "; ".join(
                f"{v.field}: {v.description}" for v in violations
            )
        super().__init__(message, reason=reason, metadata=metadata)
        self.field_violations = violations

    @classmethod
    def for_field(cls, field: str, what: str, got: object) -> InvalidArgument:
        """Build the error for one field: "<field>: expected <what>, got <got>"."""
        return cls([(field, expected(what, got))])


class FailedPrecondition(DomainError):
    """Report that the system is not in the state the request needs."""

    default_reason = "FAILED_PRECONDITION"

    def __init__(
        self,
        violations: Sequence[tuple[str, str, str]],
        *,
        message: str | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        parsed = [PreconditionViolation(*v) for v in violations]
        if message is None:
            message = "failed precondition: " + "; ".join(
                f"{v.subject}: {v.description}" for v in parsed
            )
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = parsed


class PermissionDenied(DomainError):
    """Report that the authenticated caller may not do this."""

    default_reason = "PERMISSION_DENIED"

    def __init__(
        self,
        message: str,
        *,
        permission: str = "",
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        merged = dict(metadata or {})
        if permission:
            merged.setdefault("permission", permission)
        super().__init__(message, reason=reason, metadata=merged)
        self.permission = permission


class Unauthenticated(DomainError):
    """Report that the request carries no valid identity."""

    default_reason = "UNAUTHENTICATED"

    def __init__(
        self,
        message: str = "authentication required",
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)


class ResourceExhausted(DomainError):
    """Report an exceeded quota or rate limit, optionally with when to retry."""

    default_reason = "QUOTA_EXCEEDED"

    def __init__(
        self,
        violations: Sequence[tuple[str, str]],
        *,
        retry_after: float | None = None,
        message: str | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        parsed = [QuotaViolation(*v) for v in violations]
        if message is None:
            message = "resource exhausted: " + "; ".join(
                f"{v.subject}: {v.description}" for v in parsed
            )
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = parsed
        self.retry_after = retry_after


class _Retryable(DomainError):
    """An error the caller may retry, optionally after ``retry_after`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class Unavailable(_Retryable):
    """Report a transient failure the caller should retry after a delay."""

    default_reason = "UNAVAILABLE"


class Aborted(_Retryable):
    """Report a concurrency conflict (etag mismatch, lost race); retry the sequence."""

    default_reason = "ABORTED"


class Unimplemented(DomainError):
    """Report an RPC whose contract exists but whose implementation is later work."""

    default_reason = "NOT_IMPLEMENTED"

    def __init__(self, method: str, owner: str = "") -> None:
        message = f"{method} is not implemented yet"
        if owner:
            message += f"; it is owned by {owner}"
        super().__init__(message, metadata={"method": method, "owner": owner})
        self.method = method
        self.owner = owner


class Cancelled(DomainError):
    """Report work stopped because someone cancelled it (e.g. a cancelled job)."""

    default_reason = "CANCELLED"
