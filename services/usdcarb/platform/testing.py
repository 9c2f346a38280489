"""Start a service's server in-process on 127.0.0.1:0 for tests.

async with await start_in_process(["usdcarb.v1.StrategyService"], register) as srv:
    async with srv.channel() as channel:
        ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from usdcarb.platform.server import CloseCallback, HealthCheck, Register, Service
from usdcarb.platform.settings import PlatformSettings
from usdcarb.platform.tokens import TokenVerifier


class InProcessServer:
    """A started Service with its port; stop it with ``stop()`` or ``async with``."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def server(self) -> Any:
        """Return the grpc.aio server."""
        return self.service.server

    @property
    def port(self) -> int:
        """Return the bound gRPC port."""
        return self.service.port

    @property
    def address(self) -> str:
        """Return "127.0.0.1:<port>" for grpc.aio.insecure_channel."""
        return f"127.0.0.1:{self.port}"

    def channel(self, subject: str = "users/tester", roles: Sequence[str] = ("trader",)) -> Any:
        """Open a channel to the server whose calls carry a DEV-ONLY token for ``subject``
        unless they bring their own (close it, or use ``async with``)."""
        return authed_channel(self.address, subject, roles)

    async def stop(self, grace_s: float | None = None) -> None:
        """Shut the service down as SIGTERM would."""
        await self.service.shutdown(grace_s)

    async def __aenter__(self) -> InProcessServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(0)


DEV_JWKS = Path(__file__).resolve().parents[3] / "gateway" / "dev-keys" / "DEV-ONLY-jwks.json"


def bearer(subject: str = "users/alice", roles: Sequence[str] = ("analyst",), *,
           ttl: float = 3600, **claims: Any) -> tuple[tuple[str, str], ...]:
    """Return ``authorization`` metadata with a DEV-ONLY token (test servers trust that key).

    ``claims`` override the standard ones (``aud``, ``iss``, ``exp``...) to forge bad tokens.
    """
    from usdcarb.gateway.devtoken import mint_dev_token  # test tooling, not service code

    token = mint_dev_token(subject, roles, ttl)
    if claims:
        import jwt
        from cryptography.hazmat.primitives import serialization

        from usdcarb.gateway.devtoken import DEV_PRIVATE_KEY
        body = {**jwt.decode(token, options={"verify_signature": False}), **claims}
        key = serialization.load_pem_private_key(DEV_PRIVATE_KEY.read_bytes(), password=None)
        token = jwt.encode(body, key, algorithm="ES256",  # type: ignore[arg-type]
                           headers={"kid": jwt.get_unverified_header(token)["kid"]})
    return (("authorization", f"Bearer {token}"),)


class _DefaultToken(grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
                    grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Add ``authorization`` to calls that carry none (calls that bring their own keep it)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        given = tuple(details.metadata or ())
        if any(k.lower() == "authorization" for k, _ in given):
            return details
        return details._replace(metadata=grpc.aio.Metadata(*given, *self._metadata))

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _DefaultStreamToken(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """``_DefaultToken`` for server-streaming calls: grpc.aio files each interceptor under
    the first call kind it implements only (if/elif), so streams need an object of their own."""

    def __init__(self, inner: _DefaultToken) -> None:
        self._inner = inner

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._inner.intercept_unary_stream(continuation, details, request)


def authed_channel(address: str, subject: str = "users/tester",
                   roles: Sequence[str] = ("trader",)) -> Any:
    """Open a channel whose calls carry a DEV-ONLY token for ``subject`` unless they bring one."""
    token = _DefaultToken(bearer(subject, roles))
    return grpc.aio.insecure_channel(address, interceptors=[token, _DefaultStreamToken(token)])


class DevServiceToken:
    """A ``service:<name>`` token signed with the DEV-ONLY key, for services under test
    that call another in-process service (the token source identity gives in the stack)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.invalidated = 0

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(f"service:{self.service}", (), ttl=300)

    def invalidate(self) -> None:
        self.invalidated += 1

    async def close(self) -> None:
        return None


def settings_for_tests(**overrides: Any) -> PlatformSettings:
    """Return settings for an in-process test server (loopback, free ports, fast health)."""
    values: dict[str, Any] = {
        "env": "test",
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": 0,
        "port_file": None,
        "health_interval_s": 0.05,
        "shutdown_grace_s": 5.0,
        "shutdown_drain_delay_s": 0.0,
        # In-process test servers are one of the places plaintext is asked for explicitly
        # (tests of TLS itself pass tls_* files and plaintext=False).
        "plaintext": True,
        # Callers' tokens are checked against the DEV-ONLY key (``bearer``).
        "jwks_file": DEV_JWKS,
    }
    values.update(overrides)
    return PlatformSettings(**values)


async def start_in_process(
    names: Sequence[str],
    register: Register,
    *,
    settings: PlatformSettings | None = None,
    health_checks: Mapping[str, HealthCheck] | None = None,
    on_close: Sequence[CloseCallback] = (),
    verifier: TokenVerifier | None = None,
    recheck_on: Sequence[Callable[[], Awaitable[Any]]] = (),
) -> InProcessServer:
    """Start the service on 127.0.0.1 with a free port and return it running."""
    service = Service(
        names,
        register,
        settings or settings_for_tests(),
        health_checks=health_checks,
        on_close=on_close,
        verifier=verifier,
        recheck_on=recheck_on,
    )
    try:
        await service.start()
    except BaseException:
        await service.shutdown(0)
        raise
    return InProcessServer(service)
