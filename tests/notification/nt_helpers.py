"""Real receivers for notification tests: a webhook server that verifies Standard Webhooks
signatures with the ``standardwebhooks`` library, and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import base64
import email
import os
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import grpc
from aiohttp import web
from aiosmtpd.controller import Controller
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from usdcarb.devstack import free_port
from usdcarb.platform.testing import bearer


def caller(sub: str = "users/alice", *roles: str) -> tuple[tuple[str, str], ...]:
    """Metadata of a verified caller (analyst unless ``roles`` say otherwise)."""
    return bearer(sub, roles or ("analyst",))


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            return {v.field: v.description for v in br.field_violations}
    raise AssertionError("no BadRequest detail")


@dataclass
class Received:
    """One request the receiver got."""

    id: str
    at: float
    payload: dict[str, Any] | None  # the verified JSON body; None if the signature failed
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server answering webhooks: ``script`` statuses first, then 200."""

    secrets: list[str]
    script: list[int] = field(default_factory=list)
    hang: bool = False
    retry_after: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def verified(self) -> list[Received]:
        return [r for r in self.received if r.payload is not None]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = None
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, dict(request.headers))
                break
            except WebhookVerificationError:
                continue
        self.received.append(Received(request.headers.get("webhook-id", ""), time.monotonic(),
                                      payload, dict(request.headers), body))
        if self.hang:
            await asyncio.sleep(3600)
        status = self.script.pop(0) if self.script else 200
        headers = {"retry-after": self.retry_after} if self.retry_after and status >= 400 else {}
        return web.Response(status=status, headers=headers, text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.original_content)))
        return "250 Message accepted"


class SmtpServer:
    """A real SMTP server on loopback (aiosmtpd) keeping what it receives."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self.port = free_port()
        self._controller = Controller(self._sink, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[tuple[list[str], Message]]:
        return self._sink.messages

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
