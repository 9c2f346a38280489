"""Notifications through Envoy, as a user calls them: a backtest finishes → the subscribed
webhook receives one correctly signed delivery and the email arrives; SubscribeEvents as
NDJSON; bad input refused with field violations."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backtest.service.bt_helpers import (
    START_MS,
    SYMBOL,
    VENUES,
    config_json,
    load_bars,
    spread_params,
    synthetic_pair,
)
from notification.nt_helpers import SmtpServer, new_secret
from usdcarb.devstack.stack import StackInfo
from usdcarb.gateway.devtoken import mint_dev_token

pytestmark = pytest.mark.e2e

BARS = 5_000
END_MS = START_MS + BARS * 60_000


def http(stack: StackInfo, method: str, path: str, token: str, body: Any = None,
         ) -> tuple[int, Any]:
    req = urllib.request.Request(
        stack.gateway + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw, code = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, code = err.read(), err.code
    return code, json.loads(raw or b"null")


class Hook:
    """A webhook receiver on loopback verifying signatures with standardwebhooks."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[str, dict[str, Any] | None]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    payload = Webhook(hook.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    payload = None
                hook.received.append((self.headers.get("webhook-id", ""), payload))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    h = Hook(new_secret())
    yield h
    h.server.shutdown()


@pytest.fixture(scope="module")
def token() -> str:
    return mint_dev_token("users/notify-e2e", ["analyst"])


@pytest.fixture(scope="module")
def version(stack: StackInfo, token: str) -> str:
    async def load() -> None:
        conn = await asyncpg.connect(stack.dsn)
        try:
            data = synthetic_pair(BARS)
            for venue in VENUES:
                await conn.execute("DELETE FROM ingestion.market_data WHERE exchange = $1",
                                   venue)
                await load_bars(conn, "ingestion.market_data", venue, SYMBOL, data[venue])
        finally:
            await conn.close()

    asyncio.run(load())
    sid = f"notify-e2e-{uuid.uuid4().hex[:6]}"
    code, body = http(stack, "POST", f"/v1/strategies?strategyId={sid}", token,
                      {"displayName": "e2e", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
    assert code == 200, body
    code, body = http(stack, "POST", f"/v1/strategies/{sid}/versions", token,
                      {"parameters": spread_params()})
    assert code == 200, body
    return str(body["name"])


def wait_for(check: Any, within_s: float = 60.0) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {within_s}s")


def test_a_finished_backtest_reaches_webhook_and_email_through_the_gateway(
        stack: StackInfo, token: str, version: str, hook: Hook,
        mail_server: SmtpServer) -> None:
    code, web = http(stack, "POST", "/v1/channels", token, {
        "displayName": "desk hook", "webhook": {"url": hook.url, "secret": hook.secret}})
    assert code == 200 and not web["webhook"].get("secret") and web["hasSecret"], web
    code, mail = http(stack, "POST", "/v1/channels", token, {
        "displayName": "desk mail", "email": {"to": ["quant@example.org"]}})
    assert code == 200, mail
    for channel in (web, mail):
        code, sub = http(stack, "POST", "/v1/subscriptions", token, {
            "channel": channel["name"], "eventTypes": ["EVENT_TYPE_BACKTEST_SUCCEEDED"],
            "subjectPrefix": "backtests/", "enabled": True})
        assert code == 200, sub
    code, job = http(stack, "POST", "/v1/backtests", token, {
        "strategyVersion": version, "config": config_json(START_MS, END_MS)})
    assert code == 200, job

    def signed() -> list[tuple[str, dict[str, Any] | None]]:
        return [r for r in hook.received if r[1] and r[1]["subject"] == job["name"]]
    [(webhook_id, payload)] = wait_for(signed, 120)
    assert payload is not None and payload["type"] == "EVENT_TYPE_BACKTEST_SUCCEEDED"
    wait_for(lambda: any(job["name"] in str(m) for _, m in mail_server.messages), 60)

    def delivered(channel: dict[str, Any]) -> list[dict[str, Any]]:
        code, page = http(stack, "GET", f"/v1/{channel['name']}/deliveries", token)
        assert code == 200, page
        return [d for d in page.get("deliveries", [])
                if d["state"] == "DELIVERY_STATE_DELIVERED"]
    [dw] = wait_for(lambda: delivered(web), 30)
    [dm] = wait_for(lambda: delivered(mail), 30)
    assert dw["responseCode"] == 200 and dm["responseCode"] == 250
    assert dw["name"].endswith("/" + webhook_id)
    time.sleep(1.0)
    assert len(signed()) == 1, "one delivery per event and subscription"

    # The same event on SubscribeEvents, as NDJSON through Envoy, replayed from the start.
    req = urllib.request.Request(
        stack.gateway + "/v1/events:subscribe?afterId=0&eventTypes=EVENT_TYPE_BACKTEST_SUCCEEDED",
        headers={"authorization": f"Bearer {token}"})
    seen = None
    with urllib.request.urlopen(req, timeout=30) as resp:
        for line in resp:
            message = json.loads(line)
            event = message.get("result", message).get("event")
            if event and event["subject"] == job["name"]:
                seen = event
                break
    assert seen is not None and seen["id"] == payload["id"]
    # And as Server-Sent Events for a caller that asks for them, resumed after an id.
    before = str(int(payload["id"].split("-")[0]) - 1)
    req = urllib.request.Request(
        stack.gateway + f"/v1/events:subscribe?afterId={before}"
        "&eventTypes=EVENT_TYPE_BACKTEST_SUCCEEDED",
        headers={"authorization": f"Bearer {token}", "accept": "text/event-stream"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("data: "):
                message = json.loads(line.removeprefix("data: "))
                assert message["event"]["id"] == payload["id"]
                break


def test_bad_channels_are_refused_through_the_gateway(stack: StackInfo, token: str) -> None:
    code, body = http(stack, "POST", "/v1/channels", token, {
        "displayName": "bad", "webhook": {"url": "not a url", "secret": new_secret()}})
    assert code == 400 and body["code"] == 3, body
    br = next(d for d in body["details"] if "BadRequest" in d["@type"])
    assert br["fieldViolations"][0]["field"] == "channel.webhook.url"
    code, body = http(stack, "POST", "/v1/channels", token, {
        "displayName": "bad", "email": {"to": []}})
    assert code == 400, body
    code, page = http(stack, "GET", "/v1/channels", token)
    assert code == 200 and all(c["displayName"] != "bad" for c in page.get("channels", []))
