"""Rules of the notification service: what a channel may be, which events a subscription
takes, how an attempt's result decides the next step, and when to retry.

Standard library only; enum values travel as usdcarb.v1 enum names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from urllib.parse import urlsplit

from usdcarb.platform.errors import expected

EVENT_TYPES = (
    "EVENT_TYPE_BACKTEST_SUCCEEDED", "EVENT_TYPE_BACKTEST_FAILED", "EVENT_TYPE_SWEEP_FINISHED",
    "EVENT_TYPE_INGESTION_SUCCEEDED", "EVENT_TYPE_INGESTION_FAILED", "EVENT_TYPE_GAP_DETECTED",
    "EVENT_TYPE_DATA_ISSUE", "EVENT_TYPE_DEPLOYMENT_CHANGED", "EVENT_TYPE_VERSION_STATE_CHANGED",
    "EVENT_TYPE_TEST", "EVENT_TYPE_SERIES_VERDICT_CHANGED", "EVENT_TYPE_DATA_QUALITY_DIGEST",
    "EVENT_TYPE_ALERT_FIRING", "EVENT_TYPE_ALERT_RESOLVED", "EVENT_TYPE_DEPLOYMENT_DIVERGED",
)
SEVERITY_RANK = {"SEVERITY_UNSPECIFIED": 0, "SEVERITY_INFO": 1, "SEVERITY_WARNING": 2,
                 "SEVERITY_ERROR": 3}
# Headers the service sets itself: a channel's extra headers may not replace them.
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "webhook-id",
                              "webhook-timestamp", "webhook-signature", "user-agent"})
SECRET_PREFIX = "whsec_"
MAX_RECIPIENTS = 50

Violations = list[tuple[str, str]]


class DeliveryState(StrEnum):
    """State of a delivery (usdcarb.v1.DeliveryState names)."""

    PENDING = "DELIVERY_STATE_PENDING"
    DELIVERED = "DELIVERY_STATE_DELIVERED"
    DEAD_LETTERED = "DELIVERY_STATE_DEAD_LETTERED"


# -- input checks -------------------------------------------------------------------
def check_webhook_url(url: str, *, env: str, field: str) -> Violations:
    """Refuse what is not an absolute http(s) URL, plain http outside dev/test, and hosts
    in private, loopback or link-local ranges in prod (a webhook must not reach inside)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [(field, expected("an absolute https:// URL", url))]
    prod = env not in ("dev", "test")
    if parts.scheme == "http" and prod:
        return [(field, expected("an https:// URL in prod", url))]
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return [(field, expected("a URL with a valid port", url))]
    host = parts.hostname
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return [(field, expected("a public host in prod", url))] if prod else []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return []  # a name: resolved addresses are checked again when sending
    if not address_allowed(address, env=env):
        return [(field, expected("a public address in prod" if prod
                                 else "an address outside link-local ranges", url))]
    return []


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, env: str) -> bool:
    """Tell whether a webhook may connect to ``address``: only global ones in prod; in
    dev and test anything but link-local (cloud metadata lives there)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if env not in ("dev", "test"):
        return address.is_global and not address.is_multicast
    return not address.is_link_local


def check_secret(secret: str, field: str) -> Violations:
    """A Standard Webhooks secret: "whsec_" + base64 of 24 to 64 bytes."""
    body = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else ""
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not 24 <= len(raw) <= 64:
        return [(field, expected('"whsec_" + base64 of 24 to 64 random bytes',
                                 "a secret of another form" if secret else ""))]
    return []


def check_headers(headers: Mapping[str, str], field: str) -> Violations:
    bad = sorted(k for k in headers if k.lower() in RESERVED_HEADERS or not k.strip())
    if bad:
        return [(field, expected(f"no headers among {sorted(RESERVED_HEADERS)}", bad))]
    return []


def check_recipients(to: Sequence[str], field: str) -> Violations:
    if not to:
        return [(field, expected("at least one recipient", []))]
    if len(to) > MAX_RECIPIENTS:
        return [(field, expected(f"at most {MAX_RECIPIENTS} recipients", len(to)))]
    bad = [a for a in to if a.count("@") != 1 or not all(a.split("@")) or any(
        c.isspace() or c in "<>,;\r\n" for c in a)]
    return [(field, expected("addresses like name@example.org", bad))] if bad else []


def check_event_types(types: Iterable[str], field: str) -> Violations:
    bad = [t for t in types if t not in EVENT_TYPES]
    return [(field, expected(f"event types among {list(EVENT_TYPES)}", bad))] if bad else []


def check_severity(severity: str, field: str) -> Violations:
    if severity not in SEVERITY_RANK:
        return [(field, expected(f"one of {list(SEVERITY_RANK)}", severity))]
    return []


# -- matching -----------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Filter:
    """Which events a subscription (or a SubscribeEvents caller) takes."""

    event_types: frozenset[str] = frozenset()
    min_severity: str = "SEVERITY_UNSPECIFIED"
    subject_prefix: str = ""

    def matches(self, *, type_: str, severity: str, subject: str) -> bool:
        return ((not self.event_types or type_ in self.event_types)
                and SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(self.min_severity, 0)
                and subject.startswith(self.subject_prefix))


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The stable id of an event's delivery to a subscription: the webhook-id receivers
    deduplicate on, the same however often the event is consumed."""
    return "d" + hashlib.sha256(f"{event_id}|{subscription_id}".encode()).hexdigest()[:23]


# -- attempts -----------------------------------------------------------------------
class Verdict(StrEnum):
    """What an attempt's result means for the delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


def http_verdict(status: int) -> Verdict:
    """2xx delivered; 429, 408 and 5xx retried; any other answer will not change."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 425, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.DEAD


def smtp_verdict(code: int) -> Verdict:
    """2xx delivered; 4xx transient (retried); 5xx permanent."""
    if 200 <= code < 300:
        return Verdict.DELIVERED
    return Verdict.RETRY if 400 <= code < 500 else Verdict.DEAD


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits in [3d/4, d], d = base * 2^(n-1)
    capped: retries of many deliveries spread out, yet each wait is longer than the last."""

    base_s: float = 1.0
    cap_s: float = 3600.0
    max_retry_after_s: float = 3600.0

    def delay(self, attempts: int, *, retry_after_s: float | None = None,
              rng: random.Random | None = None) -> float:
        d = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        wait: float = d * (0.75 + 0.25 * (rng or random).random())
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_retry_after_s))
        return wait


def parse_retry_after(value: str | None, *, now_s: float) -> float | None:
    """Seconds a Retry-After header asks for (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - now_s)
