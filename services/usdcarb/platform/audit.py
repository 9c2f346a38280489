"""Calls the role table refuses, from every service into the identity service's audit log.

Each service's AuthorizationInterceptor runs its denied-call hooks. With
``audit_stream`` on (the dev stack turns it on; identity records its own
refusals directly), the hook here appends one entry to the Redis stream
``usdcarb:audit``; the identity service reads the stream with a consumer group and
records each entry once in its queryable audit log (``ListAuditEvents``,
``action=call.denied``), keyed by the entry id.

A refusal is never failed by auditing and delayed at most ``APPEND_TIMEOUT_S``: a hook
error is logged by the interceptor. The stream is capped (approximately) at ``MAX_ENTRIES``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usdcarb.platform.identity import Caller
from usdcarb.platform.interceptors import DeniedHook

AUDIT_STREAM = "usdcarb:audit"
MAX_ENTRIES = 100_000
APPEND_TIMEOUT_S = 0.5


def client_ip(context: Any) -> str:
    """Return the client address Envoy saw (first x-forwarded-for hop), or ''."""
    metadata = dict(context.invocation_metadata() or ())
    forwarded = str(metadata.get("x-envoy-external-address") or metadata.get("x-forwarded-for")
                    or "")
    return forwarded.split(",")[0].strip()[:64]


@dataclass(frozen=True, kw_only=True)
class DeniedCall:
    """One refused call as it travels on the stream."""

    service: str
    method: str
    subject: str
    roles: tuple[str, ...]
    client_ip: str
    time_ms: int

    def fields(self) -> dict[str, str]:
        return {"service": self.service, "method": self.method, "subject": self.subject,
                "roles": ",".join(self.roles), "client_ip": self.client_ip,
                "time_ms": str(self.time_ms)}

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> DeniedCall:
        """Decode a stream entry's fields (bytes or str keys and values)."""
        f = {as_text(k): as_text(v) for k, v in fields.items()}
        return cls(service=f.get("service", ""), method=f.get("method", ""),
                   subject=f.get("subject", ""),
                   roles=tuple(r for r in f.get("roles", "").split(",") if r),
                   client_ip=f.get("client_ip", ""), time_ms=int(f.get("time_ms") or 0))


def as_text(value: Any) -> str:
    """A Redis reply value as text (bytes unless the client decodes responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_hook(redis: Any, service: str) -> DeniedHook:
    """Return a denied-call hook that appends the refusal to ``AUDIT_STREAM``."""

    async def hook(method: str, caller: Caller, context: Any) -> None:
        entry = DeniedCall(service=service, method=method, subject=caller.subject,
                           roles=tuple(sorted(caller.roles)), client_ip=client_ip(context),
                           time_ms=int(time.time() * 1000))
        # Bounded: a refusal waits at most this long for an unresponsive Redis.
        async with asyncio.timeout(APPEND_TIMEOUT_S):
            await redis.xadd(AUDIT_STREAM, entry.fields(), maxlen=MAX_ENTRIES,
                             approximate=True)

    return hook
