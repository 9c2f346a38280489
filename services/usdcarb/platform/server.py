"""Bootstrap a service's grpc.aio server: health, reflection, metrics, graceful stop.

A service's ``main`` builds its settings, pools and servicers, then calls::

    await run_service(
        ["usdcarb.v1.StrategyService"],
        lambda server: add_StrategyServiceServicer_to_server(servicer, server),
        settings,
        health_checks={"postgres": postgres_check(pool)},
        on_close=[pool.close],
    )

Health reflects real dependencies: every ``health_interval_s`` the checks run and
each service name (and the overall "") turns SERVING only when all pass. On SIGTERM
or SIGINT the server reports NOT_SERVING, waits ``shutdown_drain_delay_s`` so load
balancers notice, stops with ``shutdown_grace_s`` for in-flight calls to drain, then
runs the close callbacks (last registered first).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Gauge
from prometheus_client.registry import Collector

from usdcarb.platform.apireflection import api_service_names
from usdcarb.platform.audit import stream_hook
from usdcarb.platform.interceptors import DeniedHook, default_interceptors, denied_call_hooks
from usdcarb.platform.metrics import MetricsServer, new_registry
from usdcarb.platform.service_auth import identity_channel, identity_keys
from usdcarb.platform.settings import PlatformSettings
from usdcarb.platform.tls import server_credentials_for
from usdcarb.platform.tokens import TokenVerifier, file_keys

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]
Register = Callable[[Any], None]
CloseCallback = Callable[[], Awaitable[object] | None]

_SERVING = health_pb2.HealthCheckResponse.SERVING
# Holds the gateway's largest REST body (256 KiB) base64-encoded, plus other headers.
MAX_METADATA_BYTES = 512 * 1024
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Service:
    """Run one gRPC server with the platform's interceptors, health and metrics."""

    def __init__(
        self,
        names: Sequence[str],
        register: Register,
        settings: PlatformSettings,
        *,
        health_checks: Mapping[str, HealthCheck] | None = None,
        on_close: Sequence[CloseCallback] = (),
        check_timeout_s: float = 2.0,
        verifier: TokenVerifier | None = None,
        collectors: Sequence[Collector] = (),
        recheck_on: Sequence[Callable[[], Awaitable[Any]]] = (),
    ) -> None:
        self.names = list(names)
        self.verifier = verifier
        self.settings = settings
        self.registry = new_registry()
        for collector in collectors:  # the service's own metrics beside the platform's
            self.registry.register(collector)
        self.health = health.aio.HealthServicer()
        self.server: Any = None
        self.port = 0
        self.metrics_port: int | None = None
        self._register = register
        self._checks = dict(health_checks or {})
        self._check_timeout_s = check_timeout_s
        self._close_callbacks = list(on_close)
        self._healthy: dict[str, bool] = {}
        # 1 while a dependency's health check passes (PostgresUnreachable, RedisUnreachable).
        self._dependency_up = Gauge("usdcarb_dependency_up",
                                    "1 while the dependency's health check passes, else 0.",
                                    ["dependency"], registry=self.registry)
        self._serving: bool | None = None
        self._health_task: asyncio.Task[None] | None = None
        # each, called at start: the checks run again as soon as what it returns completes
        # (a check that turns true at a known moment, as engine processes becoming ready,
        # is not left to the poll)
        self._recheck_on = list(recheck_on)
        self._rechecks: list[asyncio.Task[None]] = []
        self._metrics_http: MetricsServer | None = None
        self._port_file: Path | None = None
        self._stopping = False
        self._stopped = asyncio.Event()

    def add_close_callback(self, callback: CloseCallback) -> None:
        """Run ``callback`` at shutdown, after the server stopped (LIFO order)."""
        self._close_callbacks.append(callback)

    async def start(self) -> int:
        """Bind, check dependencies once, start serving; return the bound gRPC port."""
        s = self.settings
        max_bytes = s.grpc_max_message_bytes
        if self.verifier is None:
            self.verifier = self._token_verifier()
        self.server = grpc.aio.server(
            interceptors=default_interceptors(self.registry, self.verifier,
                                              self._denied_hooks()),
            options=[
                # Linux grpc defaults to SO_REUSEPORT, which lets a second process
                # bind a taken port silently and steal half the connections.
                ("grpc.so_reuseport", 0),
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.max_receive_message_length", max_bytes),
                # A REST request's raw JSON body arrives base64 in a header (the
                # gateway's strict-JSON check, usdcarb.platform.strictjson).
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
            ],
        )
        self._register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*dict.fromkeys([*self.names, *api_service_names()]), health.SERVICE_NAME,
             reflection.SERVICE_NAME],
            self.server,
        )
        host = f"[{s.grpc_host}]" if ":" in s.grpc_host else s.grpc_host
        # Mutual TLS unless the settings ask for plaintext (in-process tests, a mesh sidecar).
        credentials = server_credentials_for(s)
        address = f"{host}:{s.grpc_port}"
        self.port = (self.server.add_insecure_port(address) if credentials is None
                     else self.server.add_secure_port(address, credentials))
        if not self.port:
            raise OSError(f"could not bind gRPC on {host}:{s.grpc_port}")
        await self.check_dependencies()
        await self.server.start()
        if s.metrics_port >= 0:
            self._metrics_http = MetricsServer(self.registry, s.metrics_host, s.metrics_port)
            self.metrics_port = self._metrics_http.port
        self._health_task = asyncio.create_task(self._poll_health(), name="health-poll")
        self._rechecks = [asyncio.create_task(self._recheck_after(when()),
                                              name="health-recheck")
                          for when in self._recheck_on]
        if s.port_file is not None:
            # Written last: once the file exists, the process is fully up.
            _write_atomically(s.port_file, f"{self.port}\n")
            self._port_file = s.port_file
        logger.info(
            "serving %s on %s:%d, %s (metrics port %s)",
            ", ".join(self.names),
            s.grpc_host,
            self.port,
            "plaintext" if credentials is None else "mutual TLS",
            self.metrics_port,
        )
        return self.port

    def _token_verifier(self) -> TokenVerifier:
        """Verify callers against identity's JWKS (or a JWKS file where configured)."""
        s = self.settings
        if s.identity_address:
            channel = identity_channel(s)
            self.add_close_callback(channel.close)
            source = identity_keys(channel)
        elif s.jwks_file is not None:
            source = file_keys(s.jwks_file)
        else:
            raise ValueError("expected identity_address or jwks_file to verify callers' "
                             "tokens, got neither")
        return TokenVerifier(source, issuer=s.token_issuer, audience=s.token_audience,
                             leeway_s=s.token_leeway_s, max_age_s=s.jwks_max_age_s,
                             refetch_floor_s=s.jwks_refetch_floor_s)

    def _denied_hooks(self) -> list[DeniedHook] | None:
        """The module's hooks (None), plus the audit stream's when ``audit_stream`` is on."""
        if not self.settings.audit_stream:
            return None
        # No PING here: auditing must not hold start-up hostage to Redis.
        client = aioredis.Redis.from_url(self.settings.redis_url, socket_timeout=2.0,
                                         socket_connect_timeout=1.0)
        self.add_close_callback(client.aclose)
        return [*denied_call_hooks, stream_hook(client, self.names[0])]

    async def check_dependencies(self) -> bool:
        """Run every dependency check once and publish the result as health status."""
        results = await asyncio.gather(*(self._run_check(n, c) for n, c in self._checks.items()))
        for name, ok in zip(self._checks, results, strict=True):
            if self._healthy.get(name) != ok:
                if ok:
                    logger.info("dependency %s is healthy", name)
                else:
                    logger.warning("dependency %s is unhealthy", name)
            self._healthy[name] = ok
            self._dependency_up.labels(name).set(1 if ok else 0)
        serving = all(results)
        if serving != self._serving:
            self._serving = serving
            status = _SERVING if serving else _NOT_SERVING
            for name in ("", *self.names):
                await self.health.set(name, status)
            logger.info("health is %s", "SERVING" if serving else "NOT_SERVING")
        return serving

    async def _run_check(self, name: str, check: HealthCheck) -> bool:
        try:
            async with asyncio.timeout(self._check_timeout_s):
                return bool(await check())
        except Exception as exc:
            logger.warning("dependency check %s failed: %s: %s", name, type(exc).__name__, exc)
            return False

    async def _recheck_after(self, event: Awaitable[Any]) -> None:
        await event
        if not self._stopping:
            await self.check_dependencies()

    async def _poll_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            await self.check_dependencies()

    async def shutdown(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, drain in-flight RPCs, then run the close callbacks.

        Safe to call more than once and after a failed ``start``.
        """
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        try:
            for task in (self._health_task, *self._rechecks):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.health.enter_graceful_shutdown()
            if self.server is not None:
                if self.settings.shutdown_drain_delay_s > 0:
                    await asyncio.sleep(self.settings.shutdown_drain_delay_s)
                logger.info("stopping; in-flight RPCs have %.1fs to finish", grace)
                await self.server.stop(grace)
            await self._run_close_callbacks()
        finally:
            if self._metrics_http is not None:
                await asyncio.to_thread(self._metrics_http.stop)
            if self._port_file is not None:
                self._port_file.unlink(missing_ok=True)
            self._stopped.set()
            logger.info("stopped")

    async def _run_close_callbacks(self) -> None:
        for callback in reversed(self._close_callbacks):
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # One failing close must not keep the others (pools, files) open.
                logger.exception("close callback %r failed", callback)

    async def wait_stopped(self) -> None:
        """Wait until ``shutdown`` has finished."""
        await self._stopped.wait()


def _write_atomically(path: Path, text: str) -> None:
    # A supervisor polling the file must never read a half-written port.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)


async def run_service(
    names: Sequence[str],
    register: Register,
    settings: PlatformSettings,
    *,
    health_checks: Mapping[str, HealthCheck] | None = None,
    on_close: Sequence[CloseCallback] = (),
    verifier: TokenVerifier | None = None,
    collectors: Sequence[Collector] = (),
    recheck_on: Sequence[Callable[[], Awaitable[Any]]] = (),
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully.

    ``verifier`` checks callers' tokens (default: against identity's JWKS, see
    ``PlatformSettings.identity_address``); the health checks run again as soon as what
    each of ``recheck_on`` returns completes, besides every ``health_interval_s``.
    """
    service = Service(names, register, settings, health_checks=health_checks, on_close=on_close,
                      verifier=verifier, collectors=collectors, recheck_on=recheck_on)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
        await stop.wait()
        logger.info("shutdown requested by signal")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await service.shutdown()
