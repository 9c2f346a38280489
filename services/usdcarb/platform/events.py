"""Domain events on a Redis stream: what services publish for notifications.

Contract: ``publish`` appends one event to the stream ``usdcarb:events`` (trimmed to
about ``maxlen`` entries) and returns its id, which is also the event's cursor for
SubscribeEvents. Fields are flat strings; ``data`` is JSON. Consumers read with a
consumer group so that every event is handled once per group, at least once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STREAM = "usdcarb:events"
MAXLEN = 100_000


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """One event; ``type`` and ``severity`` are usdcarb.v1 enum names."""

    type: str  # e.g. "EVENT_TYPE_BACKTEST_SUCCEEDED"
    source: str  # emitting service, e.g. "backtest"
    subject: str  # resource name, e.g. "backtests/abc"
    summary: str
    severity: str = "SEVERITY_INFO"
    data: Mapping[str, Any] = field(default_factory=dict)
    time_ms: int = 0
    # Made once per fact: a publish retried after a lost reply (the XADD may have landed)
    # appends the same key again, and consumers treat both entries as one event.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_fields(self) -> dict[str, str]:
        return {
            "type": self.type, "source": self.source, "subject": self.subject,
            "summary": self.summary, "severity": self.severity,
            "data": json.dumps(dict(self.data), sort_keys=True, default=str),
            "time_ms": str(self.time_ms or int(time.time() * 1000)),
            "key": self.key,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> DomainEvent:
        f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
             else v) for k, v in fields.items()}
        return cls(type=f["type"], source=f["source"], subject=f["subject"],
                   summary=f["summary"], severity=f["severity"], data=json.loads(f["data"]),
                   time_ms=int(f["time_ms"]), key=f.get("key", ""))


async def publish(redis: Any, event: DomainEvent, *, stream: str = STREAM) -> str:
    """Append ``event`` to the stream and return its id."""
    event_id = await redis.xadd(stream, event.to_fields(), maxlen=MAXLEN, approximate=True)
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)
