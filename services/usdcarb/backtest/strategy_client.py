"""The StrategyService as the backtest service uses it: resolve a version, mark it tested.

Calls forward the caller's verified ``x-jwt-payload`` (the strategy service trusts
only that header for identity), so a transition is recorded under the user who asked
for the backtest. gRPC failures become domain errors for our own caller.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format

from usdcarb.platform.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from usdcarb.platform.identity import PAYLOAD_HEADER
from usdcarb.strategy.kinds import BY_ENUM
from usdcarb.v1 import strategy_pb2 as spb
from usdcarb.v1 import strategy_pb2_grpc

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ResolvedVersion:
    """A strategy version as a backtest needs it."""

    name: str  # concrete "strategies/{s}/versions/{v}" ("latest" resolved)
    version_id: str
    kind: str  # slug, e.g. "cross-exchange-spread"
    parameters: dict[str, Any]  # proto3 JSON of StrategyParameters
    state: str


def _metadata(caller: str) -> tuple[tuple[str, str], ...]:
    return ((PAYLOAD_HEADER, caller),) if caller else ()


# DRAFT → BACKTESTED is the system's consequence of a stored result, not a user's
# decision, and TransitionStrategyVersion needs the trader role that the analyst who ran
# the backtest may lack: the service makes that one call as itself. (The mesh has no
# service principals yet; see the issue note.)
SERVICE_IDENTITY = base64.urlsafe_b64encode(json.dumps(
    {"sub": "service:backtest", "roles": ["trader"]}).encode()).decode().rstrip("=")


class StrategyClient:
    """A channel to the strategy service (closed by ``close``)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = strategy_pb2_grpc.StrategyServiceStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._channel.close()

    async def resolve(self, name: str, caller: str, *, field: str) -> ResolvedVersion:
        """Fetch version ``name`` and its strategy's kind; NotFound when unknown."""
        try:
            version = await self._stub.GetStrategyVersion(
                spb.GetStrategyVersionRequest(name=name), metadata=_metadata(caller),
                timeout=TIMEOUT_S)
            sid = version.name.split("/")[1]
            strategy = await self._stub.GetStrategy(
                spb.GetStrategyRequest(name=f"strategies/{sid}"), metadata=_metadata(caller),
                timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise _domain_error(exc, name, field) from None
        kind = BY_ENUM[spb.StrategyKind.Name(strategy.kind)].slug
        params = json_format.MessageToDict(version.parameters)
        return ResolvedVersion(name=version.name, version_id=version.version_id, kind=kind,
                               parameters=params, state=spb.VersionState.Name(version.state))

    async def mark_backtested(self, name: str, reason: str) -> bool:
        """Move the version DRAFT → BACKTESTED as the service; True when it moved.

        Never raises: the result is stored already, and a version that moved on (or a
        strategy service that is down) must not turn a success into a failure.
        """
        caller = SERVICE_IDENTITY
        try:
            version = await self._stub.GetStrategyVersion(
                spb.GetStrategyVersionRequest(name=name), metadata=_metadata(caller),
                timeout=TIMEOUT_S)
            if version.state != spb.VERSION_STATE_DRAFT:
                return False
            await self._stub.TransitionStrategyVersion(
                spb.TransitionStrategyVersionRequest(
                    name=name, state=spb.VERSION_STATE_BACKTESTED, reason=reason),
                metadata=_metadata(caller), timeout=TIMEOUT_S)
            return True
        except grpc.aio.AioRpcError as exc:
            logger.warning("could not mark %s backtested: %s %s", name, exc.code().name,
                           exc.details())
            return False


def _domain_error(exc: grpc.aio.AioRpcError, name: str, field: str) -> Exception:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound("strategy version", name, reason="STRATEGY_VERSION_NOT_FOUND")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument.for_field(
            field, "a version name 'strategies/{strategy}/versions/{version}'", name)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"may not read {name}: {exc.details()}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated()
    logger.warning("strategy service failed on %s: %s %s", name, code.name, exc.details())
    return Unavailable(f"the strategy service did not answer ({code.name}); retry later",
                       retry_after=1.0)
