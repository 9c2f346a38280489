"""An alert's whole path on a real stack: a service stops → Prometheus fires ServiceDown →
Alertmanager → the notification service's alert receiver (mutual TLS + bearer token) →
a domain event → a signed delivery to a subscribed webhook; the service back → resolved.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notification.nt_helpers import new_secret
from observability.conftest import MonitoredStack
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.observability.monitoring import ALERT_PATH, api_get

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], within_s: float = 60.0, what: str = "") -> T:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"expected {what or 'the condition'} within {within_s}s")


def http(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class Hook:
    """A webhook receiver on loopback keeping the bodies whose signature verifies."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    hook.received.append(Webhook(secret).verify(body, dict(self.headers.items())))
                except WebhookVerificationError:
                    pass
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, type_: str, job: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e["type"] == type_
                and e.get("data", {}).get("labels", {}).get("job") == job]


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook(new_secret())
    yield h
    h.server.shutdown()


def _service_down(prometheus: str, job: str) -> list[dict[str, Any]]:
    alerts = api_get(prometheus, "/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == "ServiceDown"
            and a["labels"].get("job") == job and a["state"] == "firing"]


def test_a_stopped_service_pages_through_alertmanager_and_notification_and_resolves(
        monitored: MonitoredStack, hook: Hook) -> None:
    info = monitored.info
    token = mint_dev_token("users/sre", ["analyst"])
    code, channel = http(info.gateway, "POST", "/v1/channels", token, {
        "displayName": "pager", "webhook": {"url": hook.url, "secret": hook.secret}})
    assert code == 200, channel
    code, sub = http(info.gateway, "POST", "/v1/subscriptions", token, {
        "channel": channel["name"], "subjectPrefix": "alerts/ServiceDown", "enabled": True,
        "eventTypes": ["EVENT_TYPE_ALERT_FIRING", "EVENT_TYPE_ALERT_RESOLVED"]})
    assert code == 200, sub
    wait_for(lambda: [t for t in api_get(info.prometheus, "/api/v1/targets")["activeTargets"]
                      if t["labels"]["job"] == "strategy" and t["health"] == "up"],
             30, "strategy scraped")

    monitored.mesh.stop_service("strategy")
    try:
        [alert] = wait_for(lambda: _service_down(info.prometheus, "strategy"), 60,
                           "ServiceDown firing in Prometheus")
        assert alert["labels"]["severity"] == "critical"
        [fired] = wait_for(lambda: hook.events("EVENT_TYPE_ALERT_FIRING", "strategy"), 60,
                           "the firing alert delivered to the webhook")
        assert fired["subject"] == "alerts/ServiceDown"
        assert fired["severity"] == "SEVERITY_ERROR"
        assert fired["data"]["labels"]["alertname"] == "ServiceDown"
        assert "strategy" in fired["summary"]
    finally:
        monitored.mesh.start_service("strategy")

    wait_for(lambda: not _service_down(info.prometheus, "strategy") or None, 60,
             "ServiceDown no longer firing")
    [resolved] = wait_for(lambda: hook.events("EVENT_TYPE_ALERT_RESOLVED", "strategy"), 60,
                          "the resolution delivered to the webhook")
    assert resolved["subject"] == "alerts/ServiceDown"
    assert resolved["data"]["fingerprint"] == fired["data"]["fingerprint"]
    # Alertmanager's repeats of the same firing are one fact: delivered once.
    assert len(hook.events("EVENT_TYPE_ALERT_FIRING", "strategy")) == 1


def test_the_alert_receiver_refuses_callers_without_the_token_or_a_client_certificate(
        monitored: MonitoredStack) -> None:
    info = monitored.info
    port = info.processes["notification"].extra["alert_port"]
    url = f"https://127.0.0.1:{port}{ALERT_PATH}"
    body = json.dumps({"version": "4", "alerts": []}).encode()
    with_cert = ssl.create_default_context(cafile=info.ca)
    with_cert.check_hostname = False
    with_cert.load_cert_chain(info.client_cert, info.client_key)
    for headers in ({}, {"authorization": "Bearer wrong-token-of-enough-length"}):
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10, context=with_cert)
        assert err.value.code == 401
    token = (Path(info.root) / "monitoring" / "alert-token").read_text()
    req = urllib.request.Request(url, data=b'{"version": "3"}', method="POST",
                                 headers={"authorization": f"Bearer {token}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10, context=with_cert)
    assert err.value.code == 400 and "version" in json.loads(err.value.read())["error"]["message"]
    # No client certificate: the TLS handshake itself fails.
    no_cert = ssl.create_default_context(cafile=info.ca)
    no_cert.check_hostname = False
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"authorization": f"Bearer {token}"})
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(req, timeout=10, context=no_cert)
