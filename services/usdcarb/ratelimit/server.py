"""The rate limit service's server: a *synchronous* gRPC server, unlike the other services.

Every gated request through the gateway costs one ShouldRateLimit call, so its CPU
cost is the throughput cost of rate limiting. Measured on these machines, a bare
grpc.aio unary call costs ~265 µs of server CPU and a sync (thread pool) one ~140 µs;
the platform's async interceptors add ~250 µs more. So this server is sync, without
the platform's interceptors (Envoy is its only caller: no user identity, no request
ids), but keeps the platform's contract otherwise: health that follows Redis,
reflection, Prometheus metrics, a port file, and a graceful stop on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from envoy_rls import rls_pb2_grpc
from usdcarb.platform.metrics import MetricsServer, new_registry
from usdcarb.platform.settings import PlatformSettings
from usdcarb.platform.tls import server_credentials_for

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class SyncService:
    """Serve one sync servicer with health (following ``check``), reflection, metrics."""

    def __init__(self, name: str, servicer: Any, settings: PlatformSettings, *,
                 check: Callable[[], bool], workers: int = 8) -> None:
        self.name = name
        self.settings = settings
        self.registry = new_registry()
        self.health = health.HealthServicer()
        self._check = check
        self._stop = threading.Event()
        self._serving: bool | None = None
        self._metrics: MetricsServer | None = None
        s = settings
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rls"),
            options=[("grpc.so_reuseport", 0),
                     ("grpc.max_send_message_length", s.grpc_max_message_bytes),
                     ("grpc.max_receive_message_length", s.grpc_max_message_bytes)],
        )
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [name, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        host = f"[{s.grpc_host}]" if ":" in s.grpc_host else s.grpc_host
        # Mutual TLS with Envoy unless the settings ask for plaintext.
        credentials = server_credentials_for(s)
        address = f"{host}:{s.grpc_port}"
        self.port: int = (self.server.add_insecure_port(address) if credentials is None
                          else self.server.add_secure_port(address, credentials))
        if not self.port:
            raise OSError(f"could not bind gRPC on {host}:{s.grpc_port}")
        self._poller = threading.Thread(target=self._poll, name="health", daemon=True)

    def start(self) -> int:
        """Check health once, start serving; return the bound port."""
        self.check_health()
        self.server.start()
        if self.settings.metrics_port >= 0:
            self._metrics = MetricsServer(self.registry, self.settings.metrics_host,
                                          self.settings.metrics_port)
        self._poller.start()
        if self.settings.port_file is not None:
            _write_atomically(self.settings.port_file, f"{self.port}\n")
        logger.info("serving %s on %s:%d", self.name, self.settings.grpc_host, self.port)
        return self.port

    def check_health(self) -> bool:
        try:
            ok = bool(self._check())
        except Exception as exc:
            logger.warning("health check failed: %s: %s", type(exc).__name__, exc)
            ok = False
        if ok != self._serving:
            self._serving = ok
            for service in ("", self.name):
                self.health.set(service, SERVING if ok else NOT_SERVING)
            logger.info("health is %s", "SERVING" if ok else "NOT_SERVING")
        return ok

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.health_interval_s):
            self.check_health()

    def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, drain, stop (safe to call twice)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.health.enter_graceful_shutdown()
        if self.settings.shutdown_drain_delay_s > 0:
            threading.Event().wait(self.settings.shutdown_drain_delay_s)
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.server.stop(grace).wait()
        if self._metrics is not None:
            self._metrics.stop()
        if self.settings.port_file is not None:
            self.settings.port_file.unlink(missing_ok=True)
        logger.info("stopped")

    def serve_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            stop.wait()
            logger.info("shutdown requested by signal")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)
