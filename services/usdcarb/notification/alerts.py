"""Alertmanager's alerts enter as domain events: an authenticated webhook receiver.

Alertmanager can only POST its fixed JSON payload (webhook_config) with a static
credential; it cannot get a JWT from identity nor speak gRPC, so the gRPC API is not an
option. The receiver is therefore a small HTTP endpoint of its own port, bound to the
service's host, that:

- speaks HTTPS with mutual TLS (client certificate from the stack's CA) unless the
  service runs plaintext, like every other port of the mesh;
- requires ``Authorization: Bearer <token>`` equal (constant-time) to a token read from
  ``alert_token_file`` (0600, shared with Alertmanager's ``credentials_file`` only), so a
  process that merely holds some certificate of the CA still cannot inject alerts;
- accepts only the Alertmanager webhook payload (version "4"), refusing anything else
  with a 4xx JSON body, and answers 503 while Redis is away so Alertmanager retries.

Each alert becomes one ``EVENT_TYPE_ALERT_FIRING`` or ``EVENT_TYPE_ALERT_RESOLVED`` event
(subject ``alerts/<alertname>``, severity from the ``severity`` label) on the events
stream, and so reaches every subscribed channel exactly as domain events do. Its key is
made from the alert's fingerprint, status and start, so Alertmanager's retries and
repeats of the same firing are one fact (delivered once per subscription).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from usdcarb.platform.events import DomainEvent

logger = logging.getLogger(__name__)

PATH = "/alertmanager/alerts"
MAX_BODY_BYTES = 1 << 20
_SEVERITIES = {"critical": "SEVERITY_ERROR", "page": "SEVERITY_ERROR", "error": "SEVERITY_ERROR",
               "warning": "SEVERITY_WARNING", "ticket": "SEVERITY_WARNING",
               "info": "SEVERITY_INFO"}

Publish = Callable[[DomainEvent], Awaitable[str]]


class BadPayload(ValueError):
    """The body is not an Alertmanager webhook payload (version 4)."""


def _strings(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadPayload(f"expected {field} to be an object of strings, got {value!r:.80}")
    return dict(value)


def _time_ms(value: Any, field: str) -> int:
    if not isinstance(value, str):
        raise BadPayload(f"expected {field} to be an RFC 3339 time, got {value!r:.80}")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise BadPayload(f"expected {field} to be an RFC 3339 time, got {value!r:.80}") from None


def events_from_payload(payload: Any) -> list[DomainEvent]:
    """Return one domain event per alert of an Alertmanager webhook payload."""
    if not isinstance(payload, dict):
        raise BadPayload(f"expected a JSON object, got {type(payload).__name__}")
    if payload.get("version") != "4":
        raise BadPayload(f"expected version \"4\", got {payload.get('version')!r:.40}")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload(f"expected alerts to be a list, got {alerts!r:.80}")
    out = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise BadPayload(f"expected alerts[{i}] to be an object, got {alert!r:.80}")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise BadPayload(f"expected alerts[{i}].status firing or resolved, got {status!r:.40}")
        labels = _strings(alert.get("labels"), f"alerts[{i}].labels")
        annotations = _strings(alert.get("annotations", {}), f"alerts[{i}].annotations")
        name = labels.get("alertname", "")
        if not name:
            raise BadPayload(f"expected alerts[{i}].labels.alertname, got none")
        starts = _time_ms(alert.get("startsAt"), f"alerts[{i}].startsAt")
        fingerprint = str(alert.get("fingerprint", "")) or hashlib.sha256(
            json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        resolved = status == "resolved"
        summary = annotations.get("summary") or name
        out.append(DomainEvent(
            type="EVENT_TYPE_ALERT_RESOLVED" if resolved else "EVENT_TYPE_ALERT_FIRING",
            source="alertmanager", subject=f"alerts/{name}",
            summary=f"resolved: {summary}" if resolved else summary,
            severity="SEVERITY_INFO" if resolved else _SEVERITIES.get(
                labels.get("severity", ""), "SEVERITY_WARNING"),
            data={"labels": labels, "annotations": annotations, "status": status,
                  "startsAt": alert.get("startsAt"), "endsAt": alert.get("endsAt", ""),
                  "fingerprint": fingerprint,
                  "generatorURL": str(alert.get("generatorURL", ""))},
            time_ms=_time_ms(alert["endsAt"], f"alerts[{i}].endsAt")
            if resolved and alert.get("endsAt") else 0,
            key=hashlib.sha256(f"alert|{fingerprint}|{status}|{starts}".encode()).hexdigest()))
    return out


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "reason": reason, "message": message}},
                             status=status)


class AlertReceiver:
    """The HTTP(S) endpoint Alertmanager posts to; see the module's docstring."""

    def __init__(self, publish: Publish, token_file: Path, *, host: str, port: int,
                 ssl_context: ssl.SSLContext | None,
                 on_alert: Callable[[DomainEvent], None] | None = None) -> None:
        self._publish = publish
        self._token_file = token_file
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._on_alert = on_alert
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _token(self) -> bytes:
        # Read per request: a rotated file takes effect without a restart.
        token = self._token_file.read_text().strip().encode()
        if len(token) < 16:
            raise RuntimeError(f"expected a token of 16+ characters in {self._token_file}")
        return token

    async def _handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                  self._token()):
            logger.warning("alert receiver: refused a call without the right bearer token",
                           extra={"audit": "alerts.unauthenticated"})
            return _error(401, "UNAUTHENTICATED", "expected Authorization: Bearer <token>")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, "TOO_LARGE", f"expected at most {MAX_BODY_BYTES} bytes")
        try:
            events = events_from_payload(json.loads(await request.read()))
        except (BadPayload, ValueError) as exc:
            return _error(400, "BAD_PAYLOAD", str(exc))
        try:
            for event in events:
                await self._publish(event)
                if self._on_alert is not None:
                    self._on_alert(event)
        except Exception as exc:  # Redis away: Alertmanager retries on 5xx
            logger.warning("alert receiver: could not publish: %s: %s", type(exc).__name__, exc)
            return _error(503, "UNAVAILABLE", "could not publish the alerts; retry")
        logger.info("alert receiver: published %d alert event(s)", len(events))
        return web.json_response({"published": len(events)})

    async def start(self) -> int:
        """Bind and serve; return the bound port."""
        self._token()  # fail at start-up, not on the first alert
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        await site.start()
        server = site._server  # the bound socket's port (port 0 in tests)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        logger.info("alert receiver on %s://%s:%d%s", "https" if self._ssl else "http",
                    self._host, self.port, PATH)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def server_ssl_context(cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    """Return a TLS 1.2+ server context that requires a client certificate of ``ca_file``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(cert_file), str(key_file))
    return context

