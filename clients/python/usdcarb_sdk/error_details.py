"""The ``google.rpc`` error detail messages the services send, and their unpacking.

The classes are betterproto2's, generated from ``google/rpc/error_details.proto``
(see buf.gen.sdk.yaml); ``DETAIL_TYPES`` maps each type URL to its class.
"""

from __future__ import annotations

import betterproto2

from usdcarb_sdk._gen.google import protobuf as _protobuf
from usdcarb_sdk._gen.google.rpc import (
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
)

__all__ = [
    "DETAIL_TYPES",
    "BadRequest",
    "BadRequestFieldViolation",
    "ErrorInfo",
    "PreconditionFailure",
    "PreconditionFailureViolation",
    "QuotaFailure",
    "QuotaFailureViolation",
    "RequestInfo",
    "ResourceInfo",
    "RetryInfo",
    "unpack_detail",
]

DETAIL_TYPES: dict[str, type[betterproto2.Message]] = {
    f"type.googleapis.com/google.rpc.{cls.__name__}": cls
    for cls in (BadRequest, ErrorInfo, PreconditionFailure, QuotaFailure, RequestInfo,
                ResourceInfo, RetryInfo)
}


def unpack_detail(detail: _protobuf.Any) -> betterproto2.Message:
    """Return the message packed in ``detail``, or ``detail`` itself for an unknown type."""
    klass = DETAIL_TYPES.get(detail.type_url)
    return detail if klass is None else klass.parse(detail.value)
