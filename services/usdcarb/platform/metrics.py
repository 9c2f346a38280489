"""Serve a server's Prometheus registry over HTTP from a background thread.

prometheus_client's ``start_http_server`` polls for shutdown every 0.5 s, which every
test and every rolling restart would pay; this server polls every 50 ms and can be
stopped. Each gRPC server has its own registry so two servers in one process (tests)
never share or double-register metrics.
"""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)

logger = logging.getLogger(__name__)


def new_registry() -> CollectorRegistry:
    """Return a registry with the process, platform and GC collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    # The GC collector is a process-wide singleton: share it rather than rebuild it.
    registry.register(GC_COLLECTOR)
    return registry


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Drop per-request access lines; scrapes every few seconds would flood logs."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """An HTTP endpoint serving one registry at any path (``/metrics`` by convention)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._httpd = make_server(
            host, port, make_wsgi_app(registry), server_class, handler_class=_Quiet
        )
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"metrics-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        """Stop serving and release the port (blocks up to one poll interval)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
