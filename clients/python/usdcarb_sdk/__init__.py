"""Python SDK of the usdcarb platform: typed messages, async and sync gRPC clients.

    from usdcarb_sdk import AsyncClient, v1

    async with AsyncClient("127.0.0.1:8080", token=token) as client:
        strategy = await client.strategies.create(display_name="Spread", kind="cross-exchange-spread")
        kinds = await client.strategies.list_strategy_kinds(v1.ListStrategyKindsRequest())

Messages are the betterproto2 dataclasses of ``usdcarb_sdk.v1`` (generated into
``usdcarb_sdk._gen``); errors are ``usdcarb_sdk.errors``; DataFrame converters are in
``usdcarb_sdk.frames`` (which needs pandas).
"""

from __future__ import annotations

import logging

from usdcarb_sdk._gen.usdcarb import v1
from usdcarb_sdk.aio import AsyncClient, AsyncService, AsyncStrategies
from usdcarb_sdk.auth import TokenProvider, jwt_expiry
from usdcarb_sdk.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    UsdcarbError,
)
from usdcarb_sdk.retry import RetryPolicy
from usdcarb_sdk.sync import Client, Service, Strategies

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "AsyncService",
    "AsyncStrategies",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "Service",
    "Strategies",
    "TokenProvider",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UsdcarbError",
    "jwt_expiry",
    "v1",
]

# A library leaves handler configuration to the application.
logging.getLogger(__name__).addHandler(logging.NullHandler())
