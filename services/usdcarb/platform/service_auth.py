"""Service principals: credentials, the tokens identity issues for them, and its JWKS.

A service calling another (backtest → strategy, ingestion → validation) never borrows a
person's identity: it exchanges its credential for a short-lived token of the principal
``service:<name>`` (IdentityService.IssueServiceToken), which the callee verifies like
any token and the role table (``authz.SERVICE_GRANTS``) limits to the methods that
service needs.

A credential is HMAC-SHA256(service key, "usdcarb-service:<name>"): identity holds the
key and derives the credential it expects, each service holds only its own credential
(a deployment secret). In dev and test the committed DEV-ONLY key stands in, so a
local stack needs no secrets; identity refuses that key when env=prod.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import grpc

from usdcarb.platform.errors import Unavailable
from usdcarb.platform.settings import PlatformSettings
from usdcarb.platform.tls import peer_channel
from usdcarb.platform.tokens import KeySource
from usdcarb.v1 import identity_pb2, identity_pb2_grpc

logger = logging.getLogger(__name__)

# LOCAL DEVELOPMENT ONLY: published in the repository, refused by identity in prod.
DEV_SERVICE_KEY = "DEV-ONLY-usdcarb-service-credential-key"
REFRESH_BEFORE_S = 60.0
TIMEOUT_S = 5.0

Metadata = tuple[tuple[str, str], ...]


def derive_credential(key: str, service: str) -> str:
    """Return the credential of ``service`` under the service key ``key``."""
    mac = hmac.new(key.encode(), f"usdcarb-service:{service}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def credential_matches(key: str, service: str, credential: str) -> bool:
    """Tell, in constant time, whether ``credential`` is the one of ``service``."""
    return hmac.compare_digest(derive_credential(key, service).encode(),
                               credential.encode("utf-8", "surrogateescape"))


def credential_for(settings: PlatformSettings, service: str) -> str:
    """Return this service's credential: the configured one, or the DEV-ONLY one in dev/test."""
    given = settings.service_credential.get_secret_value()
    if given:
        return given
    if settings.env in ("dev", "test"):
        return derive_credential(DEV_SERVICE_KEY, service)
    raise ValueError(f"expected service_credential for {service} when env={settings.env}, "
                     "got none")


def identity_channel(settings: PlatformSettings) -> Any:
    """Open a channel to identity at ``identity_address`` (closed by the caller): mutual
    TLS with this service's certificate unless the settings ask for plaintext."""
    return peer_channel(settings, settings.identity_address, "identity")


def identity_keys(channel: Any) -> KeySource:
    """Return a key source asking identity's GetJwks over ``channel``."""
    stub = identity_pb2_grpc.IdentityServiceStub(channel)  # type: ignore[no-untyped-call]

    async def fetch() -> Sequence[Mapping[str, Any]]:
        resp = await stub.GetJwks(identity_pb2.GetJwksRequest(), timeout=TIMEOUT_S)
        return [{f.name: v for f, v in jwk.ListFields()} for jwk in resp.keys]
    return fetch


class ServiceCredentialRefused(RuntimeError):
    """Identity refused this service's credential: the deployment's secrets disagree."""


class TokenSource(Protocol):
    """Where a service's bearer token for calls to other services comes from."""

    async def metadata(self) -> Metadata:
        """Return the ``authorization`` metadata for one call."""
        ...

    def invalidate(self) -> None:
        """Forget the current token (the callee refused it)."""
        ...

    async def close(self) -> None:
        """Release what the source holds."""
        ...


class ServiceToken:
    """This service's own bearer token, fetched from identity and renewed before expiry."""

    def __init__(self, channel: Any, service: str, credential: str) -> None:
        self.service = service
        self._channel = channel
        self._credential = credential
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)  # type: ignore[no-untyped-call]
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self) -> Metadata:
        """Return the ``authorization`` metadata for a call made as this service."""
        return (("authorization", f"Bearer {await self.token()}"),)

    def invalidate(self) -> None:
        """Forget the token (the callee refused it): the next call fetches a new one."""
        self._renew_at = 0.0

    async def close(self) -> None:
        """Close the channel to identity."""
        await self._channel.close()

    async def token(self) -> str:
        """Return a token valid for at least a minute, asking identity when needed."""
        if time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if time.monotonic() < self._renew_at:
                return self._token
            try:
                resp = await self._stub.IssueServiceToken(
                    identity_pb2.IssueServiceTokenRequest(service=self.service,
                                                          credential=self._credential),
                    timeout=TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.PERMISSION_DENIED):
                    # A deployment fault, not the end user's: INTERNAL to them, logged here.
                    raise ServiceCredentialRefused(
                        f"expected identity to accept the credential of service "
                        f"{self.service!r}, got {exc.code().name}: {exc.details()}") from exc
                raise Unavailable(f"identity could not issue a service token: "
                                  f"{exc.code().name}", retry_after=1.0) from exc
            self._token = resp.access_token
            lifetime = max(float(resp.expires_in), 1.0)
            self._renew_at = time.monotonic() + max(lifetime - REFRESH_BEFORE_S, lifetime / 2)
            logger.info("service token for %s renewed (valid %ds)", self.service,
                        resp.expires_in)
            return self._token


def service_token(settings: PlatformSettings, service: str) -> ServiceToken:
    """Return the token source of ``service``, asking identity at ``identity_address``."""
    if not settings.identity_address:
        raise ValueError(f"expected identity_address for {service} to call other services, "
                         "got none")
    return ServiceToken(identity_channel(settings), service,
                        credential_for(settings, service))


async def call_as_service(token: TokenSource, call: Any, request: Any,
                          **kwargs: Any) -> Any:
    """Call ``call(request)`` as this service; on UNAUTHENTICATED renew the token once."""
    try:
        return await call(request, metadata=await token.metadata(), **kwargs)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        token.invalidate()
        return await call(request, metadata=await token.metadata(), **kwargs)


