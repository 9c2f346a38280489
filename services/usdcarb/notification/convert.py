"""Records ↔ usdcarb.v1 notification messages. Secrets never enter a message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from usdcarb.notification.model import (
    ChannelRecord,
    DeliveryRecord,
    StoredEvent,
    SubscriptionRecord,
)
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import notification_pb2 as pb


def ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def enum_name(enum: Any, number: int) -> str:
    return str(enum.Name(number)) if number in enum.values() else str(number)


def event_to_pb(e: StoredEvent) -> pb.Event:
    data = struct_pb2.Struct()
    data.update(json_safe(dict(e.event.data)))
    when = timestamp_pb2.Timestamp()
    when.FromMilliseconds(e.event.time_ms)
    return pb.Event(id=e.id, type=_enum_value(pb.EventType, e.event.type), time=when,
                    source=e.event.source, subject=e.event.subject,
                    severity=_enum_value(cpb.Severity, e.event.severity),
                    summary=e.event.summary, data=data)


def event_json(e: StoredEvent) -> str:
    """The webhook body: the Event in proto3 JSON, compact."""
    return str(json_format.MessageToJson(event_to_pb(e), indent=None))


def json_safe(value: Any) -> Any:
    """Struct holds JSON only: numbers become floats, anything else its string."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def _enum_value(enum: Any, name: str) -> Any:
    """The enum value named ``name`` (unknown names, from newer publishers: unspecified)."""
    return name if name in enum.keys() else 0


def channel_to_pb(c: ChannelRecord) -> pb.Channel:
    out = pb.Channel(name=c.name, display_name=c.display_name, owner=c.owner,
                     has_secret=bool(c.secret), create_time=ts(c.create_time),
                     previous_secret_expire_time=ts(c.previous_secret_expire_time))
    if c.kind == "webhook":
        out.webhook.CopyFrom(pb.WebhookConfig(
            url=c.config["url"], headers=c.config.get("headers", {}),
            max_attempts=int(c.config.get("max_attempts", 0))))
    else:
        out.email.CopyFrom(pb.EmailConfig(to=c.config["to"],
                                          subject_prefix=c.config.get("subject_prefix", "")))
    return out


def subscription_to_pb(s: SubscriptionRecord) -> pb.Subscription:
    return pb.Subscription(
        name=s.name, channel=f"channels/{s.channel_id}",
        event_types=[_enum_value(pb.EventType, t) for t in s.event_types],
        min_severity=_enum_value(cpb.Severity, s.min_severity), subject_prefix=s.subject_prefix,
        enabled=s.enabled, owner=s.owner, create_time=ts(s.create_time))


def delivery_to_pb(d: DeliveryRecord) -> pb.Delivery:
    return pb.Delivery(
        name=d.name, event=event_to_pb(d.event),
        subscription=f"subscriptions/{d.subscription_id}" if d.subscription_id else "",
        state=pb.DeliveryState.Value(d.state.value), attempts=d.attempts,
        response_code=d.response_code, last_error=d.last_error, create_time=ts(d.create_time),
        end_time=ts(d.end_time), next_attempt_time=ts(d.next_attempt_time))
