"""Start a service's server in-process on 127.0.0.1:0 for tests.

async with await start_in_process(["usdcarb.v1.StrategyService"], register) as srv:
    async with srv.channel() as channel:
        ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from usdcarb.platform.server import CloseCallback, HealthCheck, Register, Service
from usdcarb.platform.settings import PlatformSettings


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

    def channel(self) -> Any:
        """Open an insecure grpc.aio channel to the server (close it, or use ``async with``)."""
        return grpc.aio.insecure_channel(self.address)

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
) -> InProcessServer:
    """Start the service on 127.0.0.1 with a free port and return it running."""
    service = Service(
        names,
        register,
        settings or settings_for_tests(),
        health_checks=health_checks,
        on_close=on_close,
    )
    try:
        await service.start()
    except BaseException:
        await service.shutdown(0)
        raise
    return InProcessServer(service)
