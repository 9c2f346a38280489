"""Records of the notification service, as the application and the store exchange them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from usdcarb.notification.domain import DeliveryState, Filter
from usdcarb.platform.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ChannelRecord:
    """A channel row. ``config`` is the webhook or email settings, without the secret."""

    id: str
    display_name: str
    kind: str  # "webhook" | "email"
    config: dict[str, Any]
    owner: str
    secret: str | None = None
    previous_secret: str | None = None
    previous_secret_expire_time: datetime | None = None
    create_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"channels/{self.id}"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign now: the current one, and the previous during its overlap."""
        secrets = [self.secret] if self.secret else []
        if (self.previous_secret and self.previous_secret_expire_time is not None
                and now < self.previous_secret_expire_time):
            secrets.append(self.previous_secret)
        return secrets


@dataclass(frozen=True, kw_only=True)
class SubscriptionRecord:
    """A subscription row."""

    id: str
    channel_id: str
    event_types: list[str] = field(default_factory=list)
    min_severity: str = "SEVERITY_UNSPECIFIED"
    subject_prefix: str = ""
    enabled: bool = True
    owner: str = ""
    create_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"subscriptions/{self.id}"

    @property
    def filter(self) -> Filter:
        return Filter(event_types=frozenset(self.event_types), min_severity=self.min_severity,
                      subject_prefix=self.subject_prefix)


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    """A domain event with its stream id (the cursor and the deduplication key)."""

    id: str
    event: DomainEvent

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {"id": self.id, "type": e.type, "source": e.source, "subject": e.subject,
                "summary": e.summary, "severity": e.severity, "data": dict(e.data),
                "time_ms": e.time_ms}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StoredEvent:
        return cls(id=d["id"], event=DomainEvent(
            type=d["type"], source=d["source"], subject=d["subject"], summary=d["summary"],
            severity=d["severity"], data=d.get("data") or {}, time_ms=int(d["time_ms"])))

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.event.time_ms / 1000, UTC)


@dataclass(frozen=True, kw_only=True)
class DeliveryRecord:
    """A delivery row: one event through one channel."""

    id: str
    channel_id: str
    subscription_id: str | None
    event: StoredEvent
    state: DeliveryState
    attempts: int = 0
    response_code: int = 0
    last_error: str = ""
    create_time: datetime | None = None
    end_time: datetime | None = None
    next_attempt_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"channels/{self.channel_id}/deliveries/{self.id}"


@dataclass(frozen=True, kw_only=True)
class Result:
    """What one attempt of a delivery ended with, as stored."""

    id: str
    state: DeliveryState
    code: int
    error: str
    retry_in_s: float | None  # PENDING only: when to try again
