"""The StrategyService as the backtest service uses it: resolve a version, mark it tested.

Every call is made as the principal ``service:backtest`` with a token identity issues
to this service (``usdcarb.platform.service_auth``), never with a borrowed user's
identity: a job runs long after its user's token expired, and the role table grants
this service exactly the reads and the DRAFT → BACKTESTED move it needs. gRPC failures
become domain errors for our own caller.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format

from usdcarb.platform.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from usdcarb.platform.service_auth import ServiceCredentialRefused, TokenSource, call_as_service
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


@dataclass(frozen=True)
class DeploymentInfo:
    """A deployment as a paper run needs it."""

    name: str
    version: str
    owner: str
    environment: str  # e.g. "DEPLOYMENT_ENVIRONMENT_PAPER"
    state: str        # e.g. "DEPLOYMENT_STATE_ACTIVE"


class StrategyClient:
    """A channel to the strategy service (closed by ``close``)."""

    def __init__(self, channel: grpc.aio.Channel, token: TokenSource) -> None:
        # The caller opens the channel (mutual TLS: usdcarb.platform.tls.peer_channel).
        self._token = token
        self._channel = channel
        self._stub = strategy_pb2_grpc.StrategyServiceStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._channel.close()
        await self._token.close()

    async def resolve(self, name: str, *, field: str) -> ResolvedVersion:
        """Fetch version ``name`` and its strategy's kind; NotFound when unknown."""
        # The strategy is named in the version's name ('strategies/{s}/versions/{v}'):
        # both are asked at once (a round trip less on every create). The version's error
        # comes first, so a malformed or unknown name is refused as the version's.
        sid = name.split("/")[1] if name.count("/") else ""
        version: Any
        strategy: Any
        try:
            answers = await asyncio.gather(
                call_as_service(self._token, self._stub.GetStrategyVersion,
                                spb.GetStrategyVersionRequest(name=name), timeout=TIMEOUT_S),
                call_as_service(self._token, self._stub.GetStrategy,
                                spb.GetStrategyRequest(name=f"strategies/{sid}"),
                                timeout=TIMEOUT_S),
                return_exceptions=True)
            for answer in answers:
                if isinstance(answer, BaseException):
                    raise answer
            version, strategy = answers
        except grpc.aio.AioRpcError as exc:
            raise _domain_error(exc, name, field) from None
        kind = BY_ENUM[spb.StrategyKind.Name(strategy.kind)].slug
        params = json_format.MessageToDict(version.parameters)
        return ResolvedVersion(name=version.name, version_id=version.version_id, kind=kind,
                               parameters=params, state=spb.VersionState.Name(version.state))

    async def deployment(self, name: str, *, field: str = "name") -> DeploymentInfo:
        """Fetch deployment ``name`` (paper runs); NotFound when unknown."""
        try:
            d = await call_as_service(
                self._token, self._stub.GetDeployment,
                spb.GetDeploymentRequest(name=name), timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("deployment", name, reason="DEPLOYMENT_NOT_FOUND") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument.for_field(
                    field, "'strategies/{strategy}/deployments/{deployment}/paperRun'",
                    name) from None
            raise _domain_error(exc, name, field) from None
        return DeploymentInfo(
            name=d.name, version=d.version, owner=d.owner,
            environment=spb.DeploymentEnvironment.Name(d.environment),
            state=spb.DeploymentState.Name(d.state))

    async def mark_backtested(self, name: str, reason: str) -> bool:
        """Move the version DRAFT → BACKTESTED as the service; True when it moved.

        Never raises: the result is stored already, and a version that moved on (or a
        strategy service that is down) must not turn a success into a failure.
        """
        try:
            version = await call_as_service(
                self._token, self._stub.GetStrategyVersion,
                spb.GetStrategyVersionRequest(name=name), timeout=TIMEOUT_S)
            if version.state != spb.VERSION_STATE_DRAFT:
                return False
            await call_as_service(
                self._token, self._stub.TransitionStrategyVersion,
                spb.TransitionStrategyVersionRequest(
                    name=name, state=spb.VERSION_STATE_BACKTESTED, reason=reason),
                timeout=TIMEOUT_S)
            return True
        except (DomainError, ServiceCredentialRefused) as exc:
            logger.warning("could not mark %s backtested: %s", name, exc)
            return False
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
