"""Send one delivery: a signed webhook POST (aiohttp) or an email (aiosmtplib).

Each send returns a ``Sent``: the receiver's code, what it means (domain verdicts) and
any Retry-After. Transport failures (refused, reset, timeout) are retried; a webhook host
resolving to an address the environment forbids (prod: anything not global) is not.

Why aiohttp: it is already in the tree (ccxt), pools connections per host with a bounded
connector, takes a custom resolver (the SSRF guard must see resolved addresses, or a
name could point inside), and is the fastest asyncio client for many small POSTs.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks.webhooks import Webhook

from usdcarb.notification import convert, emails
from usdcarb.notification.domain import (
    Verdict,
    address_allowed,
    http_verdict,
    parse_retry_after,
    smtp_verdict,
)
from usdcarb.notification.model import ChannelRecord, DeliveryRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    """What one attempt got back."""

    verdict: Verdict
    code: int = 0
    error: str = ""
    retry_after_s: float | None = None


class ForbiddenAddress(OSError):
    """A webhook host resolved to an address this environment may not reach."""


class GuardedResolver(AbstractResolver):
    """Resolve as usual, then drop addresses ``address_allowed`` refuses (SSRF guard)."""

    def __init__(self, env: str) -> None:
        self._env = env
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results
                   if address_allowed(ipaddress.ip_address(r["host"]), env=self._env)]
        if not allowed:
            raise ForbiddenAddress(f"expected {host} to resolve to an address allowed in "
                                   f"{self._env}, got {[r['host'] for r in results]}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class WebhookSender:
    """POST deliveries as Standard Webhooks: webhook-id is the delivery id, so a receiver
    drops duplicates of an at-least-once delivery; every signing secret signs."""

    def __init__(self, *, env: str, timeout_s: float, max_connections: int,
                 user_agent: str = "usdcarb-notification/1") -> None:
        self._env = env
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        # One event goes to many subscriptions: its JSON body is built once; a channel's
        # secret is decoded once.
        self._bodies: dict[str, bytes] = {}
        self._signers: dict[str, Webhook] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections,
                                             resolver=GuardedResolver(self._env))
            # No cookie jar: a receiver's cookies are never sent back (nor kept per host).
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _signer(self, secret: str) -> Webhook:
        signer = self._signers.get(secret)
        if signer is None:
            if len(self._signers) >= 1024:
                self._signers.clear()
            signer = self._signers[secret] = Webhook(secret)
        return signer

    async def send(self, channel: ChannelRecord, delivery: DeliveryRecord) -> Sent:
        body = self._bodies.get(delivery.event.id)
        if body is None:
            if len(self._bodies) >= 1024:
                self._bodies.clear()
            body = self._bodies[delivery.event.id] = convert.event_json(delivery.event).encode()
        now = datetime.now(UTC)
        signatures = " ".join(self._signer(s).sign(delivery.id, now, body)
                              for s in channel.signing_secrets(now))
        headers = {**channel.config.get("headers", {}), "content-type": "application/json",
                   "user-agent": self._user_agent, "webhook-id": delivery.id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signatures}
        try:
            async with self._client().post(channel.config["url"], data=body, headers=headers,
                                           allow_redirects=False) as response:
                await response.read()
                verdict = http_verdict(response.status)
                error = "" if verdict is Verdict.DELIVERED else f"HTTP {response.status}"
                return Sent(verdict, response.status, error, parse_retry_after(
                    response.headers.get("retry-after"), now_s=time.time()))
        except ForbiddenAddress as exc:
            return Sent(Verdict.DEAD, 0, str(exc))
        except TimeoutError:
            return Sent(Verdict.RETRY, 0, f"timed out after {self._timeout.total}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Sent(Verdict.RETRY, 0, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True, kw_only=True)
class SmtpConfig:
    """Where and how to send email (one per deployment)."""

    host: str
    port: int
    sender: str
    username: str = ""
    password: str = ""
    use_tls: bool = False  # implicit TLS (port 465); otherwise STARTTLS when offered
    validate_certs: bool = True
    timeout_s: float = 30.0


class EmailSender:
    """Send deliveries by SMTP, STARTTLS whenever the server offers it."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    async def send(self, channel: ChannelRecord, delivery: DeliveryRecord) -> Sent:
        c = self._config
        mail = emails.render(delivery.event,
                             subject_prefix=channel.config.get("subject_prefix") or "[usdcarb]")
        message = EmailMessage()
        message["From"] = c.sender
        message["To"] = ", ".join(channel.config["to"])
        message["Subject"] = mail.subject
        message["Message-ID"] = f"<{delivery.id}@usdcarb>"
        message["X-Usdcarb-Delivery"] = delivery.id
        message.set_content(mail.text)
        message.add_alternative(mail.html, subtype="html")
        auth: dict[str, Any] = ({"username": c.username, "password": c.password}
                                if c.username else {})
        try:
            refused, _reply = await aiosmtplib.send(
                message, hostname=c.host, port=c.port, use_tls=c.use_tls,
                start_tls=None if not c.use_tls else False, validate_certs=c.validate_certs,
                timeout=c.timeout_s, **auth)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            code = max(codes) if codes else 550
            return Sent(smtp_verdict(code), code, f"recipients refused: {exc}")
        except aiosmtplib.SMTPResponseException as exc:
            return Sent(smtp_verdict(exc.code), exc.code, f"SMTP {exc.code}: {exc.message}")
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            return Sent(Verdict.RETRY, 0, f"{type(exc).__name__}: {exc}")
        if refused:
            code = max(r.code for r in refused.values())
            return Sent(smtp_verdict(code), code, f"recipients refused: {sorted(refused)}")
        return Sent(Verdict.DELIVERED, 250, "")


class Senders:
    """The sender of each channel kind."""

    def __init__(self, webhook: WebhookSender, email: EmailSender) -> None:
        self.webhook = webhook
        self.email = email

    async def send(self, channel: ChannelRecord, delivery: DeliveryRecord) -> Sent:
        sender = self.webhook if channel.kind == "webhook" else self.email
        return await sender.send(channel, delivery)

    async def close(self) -> None:
        await self.webhook.close()
