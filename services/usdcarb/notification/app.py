"""Use cases of the notification service: channels, subscriptions, deliveries.

Every resource has an owner (the subject who created it). Reads show a caller their own
resources, or everything to an admin; writes need the owner or an admin. Input is checked
whole before anything is written, and every bad field is reported at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from usdcarb.notification import domain
from usdcarb.notification.domain import DeliveryState
from usdcarb.notification.engine import Deliverer
from usdcarb.notification.model import (
    ChannelRecord,
    DeliveryRecord,
    StoredEvent,
    SubscriptionRecord,
)
from usdcarb.notification.store import NotificationStore
from usdcarb.platform import paging
from usdcarb.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    expected,
)
from usdcarb.platform.events import DomainEvent

T = TypeVar("T")
DAY_S = 86_400.0
CHANNEL_PATHS = ("display_name", "webhook.url", "webhook.headers", "webhook.max_attempts",
                 "email.to", "email.subject_prefix")
SUBSCRIPTION_PATHS = ("event_types", "min_severity", "subject_prefix", "enabled")
MAX_ATTEMPTS_LIMIT = 50
REDELIVER_SHOWN = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the token of the next."""

    items: list[T]
    next_page_token: str


@dataclass(frozen=True, kw_only=True)
class Who:
    """The caller, as the use cases need it."""

    subject: str
    admin: bool = False


@dataclass(frozen=True, kw_only=True)
class ChannelInput:
    """A channel as a request states it; ``kind`` is "" when neither config is set."""

    name: str = ""
    display_name: str = ""
    kind: str = ""
    url: str = ""
    secret: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int = 0
    to: Sequence[str] = ()
    subject_prefix: str = ""


@dataclass(frozen=True, kw_only=True)
class SubscriptionInput:
    """A subscription as a request states it."""

    name: str = ""
    channel: str = ""
    event_types: Sequence[str] = ()
    min_severity: str = "SEVERITY_UNSPECIFIED"
    subject_prefix: str = ""
    enabled: bool = True


def parse_name(name: str, *collections: str, field: str = "name") -> list[str]:
    """Split "a/{x}/b/{y}" into [x, y], checking the collection segments."""
    parts = name.split("/")
    ok = len(parts) == 2 * len(collections) and all(
        parts[2 * i] == c and parts[2 * i + 1] for i, c in enumerate(collections))
    if not ok:
        pattern = "/".join(f"{c}/{{id}}" for c in collections)
        raise InvalidArgument.for_field(field, f"a resource name {pattern!r}", name)
    return parts[1::2]


def _config(c: ChannelInput) -> dict[str, Any]:
    if c.kind == "webhook":
        return {"url": c.url, "headers": dict(c.headers), "max_attempts": c.max_attempts}
    return {"to": list(c.to), "subject_prefix": c.subject_prefix}


class NotificationApp:
    """Channels, subscriptions, deliveries and tests of channels."""

    def __init__(self, store: NotificationStore, deliverer: Deliverer, *, env: str,
                 publish: Callable[[DomainEvent], Awaitable[str]]) -> None:
        self._store = store
        self._deliverer = deliverer
        self._env = env
        self._publish = publish

    # -- checks -----------------------------------------------------------------------
    def _check_channel(self, c: ChannelInput, *, paths: Sequence[str] | None = None,
                       creating: bool = False) -> None:
        """Raise InvalidArgument listing every bad field (of ``paths`` when updating)."""
        def on(path: str) -> bool:
            return paths is None or path in paths

        v: domain.Violations = []
        if on("display_name") and not c.display_name.strip():
            v.append(("channel.display_name", expected("a non-empty name", c.display_name)))
        if c.kind == "webhook":
            if on("webhook.url"):
                v += domain.check_webhook_url(c.url, env=self._env, field="channel.webhook.url")
            if creating:
                v += domain.check_secret(c.secret, "channel.webhook.secret")
            if on("webhook.headers"):
                v += domain.check_headers(c.headers, "channel.webhook.headers")
            if on("webhook.max_attempts") and not 0 <= c.max_attempts <= MAX_ATTEMPTS_LIMIT:
                v.append(("channel.webhook.max_attempts", expected(
                    f"0 (default) to {MAX_ATTEMPTS_LIMIT}", c.max_attempts)))
        elif c.kind == "email":
            if on("email.to"):
                v += domain.check_recipients(c.to, "channel.email.to")
            if on("email.subject_prefix") and len(c.subject_prefix) > 100:
                v.append(("channel.email.subject_prefix",
                          expected("at most 100 characters", len(c.subject_prefix))))
        else:
            v.append(("channel.config", expected("a webhook or an email config", "neither")))
        if v:
            raise InvalidArgument(v)

    @staticmethod
    def _check_subscription(s: SubscriptionInput) -> None:
        v = domain.check_event_types(s.event_types, "subscription.event_types")
        v += domain.check_severity(s.min_severity, "subscription.min_severity")
        if len(s.subject_prefix) > 500:
            v.append(("subscription.subject_prefix",
                      expected("at most 500 characters", len(s.subject_prefix))))
        if v:
            raise InvalidArgument(v)

    @staticmethod
    def _allow(kind: str, name: str, owner: str, who: Who) -> None:
        if not who.admin and owner != who.subject:
            raise PermissionDenied(
                f"{kind} {name!r}: expected its owner or an admin, got {who.subject!r}",
                permission="owner")

    async def _visible_channel(self, name: str, who: Who, *, field: str = "name",
                               conn: Any = None, lock: bool = False) -> ChannelRecord:
        (cid,) = parse_name(name, "channels", field=field)
        channel = await self._store.get_channel(cid, conn=conn, lock=lock)
        self._allow("channel", name, channel.owner, who)
        return channel

    # -- channels ---------------------------------------------------------------------
    async def create_channel(self, c: ChannelInput, who: Who, request_id: str) -> ChannelRecord:
        self._check_channel(c, creating=True)
        record = ChannelRecord(id=f"c{uuid.uuid4().hex[:15]}", display_name=c.display_name,
                               kind=c.kind, config=_config(c), owner=who.subject,
                               secret=c.secret or None)
        async with self._store.transaction() as conn:
            if request_id:
                done = await self._store.channel_for_request(conn, request_id)
                if done is not None:
                    self._allow("channel", done.name, done.owner, who)
                    return done
            return await self._store.insert_channel(conn, record, request_id)

    async def get_channel(self, name: str, who: Who) -> ChannelRecord:
        return await self._visible_channel(name, who)

    async def list_channels(self, who: Who, page_size: int, page_token: str,
                            ) -> Page[ChannelRecord]:
        size = paging.page_size(page_size)
        filters = {"owner": None if who.admin else who.subject}
        after = _after(paging.decode_token(page_token, filters))
        rows = await self._store.list_channels(owner=filters["owner"], limit=size + 1,
                                               after=after)
        return _page(rows, size, filters)

    async def update_channel(self, c: ChannelInput, mask: Sequence[str], who: Who,
                             ) -> ChannelRecord:
        (cid,) = parse_name(c.name, "channels", field="channel.name")
        if "webhook.secret" in mask:
            raise InvalidArgument.for_field(
                "update_mask", "no webhook.secret (change it with RotateWebhookSecret)", mask)
        async with self._store.transaction() as conn:
            current = await self._visible_channel(c.name, who, field="channel.name",
                                                  conn=conn, lock=True)
            allowed = [p for p in CHANNEL_PATHS if p == "display_name"
                       or p.startswith(current.kind + ".")]
            paths = list(mask) or allowed
            bad = [p for p in paths if p not in allowed]
            if bad:
                raise InvalidArgument.for_field("update_mask", f"paths among {allowed}", bad)
            old = current.config
            merged = ChannelInput(
                display_name=c.display_name if "display_name" in paths else current.display_name,
                kind=current.kind,
                url=c.url if "webhook.url" in paths else old.get("url", ""),
                headers=c.headers if "webhook.headers" in paths else old.get("headers", {}),
                max_attempts=(c.max_attempts if "webhook.max_attempts" in paths
                              else old.get("max_attempts", 0)),
                to=c.to if "email.to" in paths else old.get("to", []),
                subject_prefix=(c.subject_prefix if "email.subject_prefix" in paths
                                else old.get("subject_prefix", "")))
            self._check_channel(merged, paths=paths)
            return await self._store.update_channel(conn, cid, merged.display_name,
                                                    _config(merged))

    async def delete_channel(self, name: str, who: Who) -> None:
        async with self._store.transaction() as conn:
            channel = await self._visible_channel(name, who, conn=conn, lock=True)
            await self._store.delete_channel(conn, channel.id)

    async def rotate_secret(self, name: str, secret: str, overlap_s: float | None,
                            who: Who) -> ChannelRecord:
        overlap = DAY_S if not overlap_s else overlap_s
        v = domain.check_secret(secret, "secret")
        if not 0 < overlap <= 30 * DAY_S:
            v.append(("overlap", expected("a duration up to 30 days", f"{overlap}s")))
        if v:
            raise InvalidArgument(v)
        async with self._store.transaction() as conn:
            channel = await self._visible_channel(name, who, conn=conn, lock=True)
            if channel.kind != "webhook":
                raise FailedPrecondition([("CHANNEL_KIND", name, expected(
                    "a webhook channel", channel.kind))], reason="NOT_A_WEBHOOK")
            return await self._store.rotate_secret(conn, channel.id, secret, overlap)

    async def test_channel(self, name: str, who: Who) -> DeliveryRecord:
        """Publish a test event about the channel and deliver it through the channel now."""
        channel = await self._visible_channel(name, who)
        event = DomainEvent(type="EVENT_TYPE_TEST", source="notification", subject=channel.name,
                            summary=f"Test of channel {channel.display_name!r}",
                            data={"channel": channel.name, "requested_by": who.subject})
        stored = StoredEvent(id=await self._publish(event), event=event)
        delivery_id = domain.delivery_id(stored.id, f"test:{channel.id}")
        await self._store.insert_deliveries([(delivery_id, channel.id, None, stored)],
                                            due_in_s=30.0)
        await self._deliverer.deliver_now([delivery_id])
        return await self._store.get_delivery(channel.id, delivery_id)

    # -- subscriptions ----------------------------------------------------------------
    async def create_subscription(self, s: SubscriptionInput, who: Who,
                                  request_id: str) -> SubscriptionRecord:
        self._check_subscription(s)
        channel = await self._visible_channel(s.channel, who, field="subscription.channel")
        record = SubscriptionRecord(
            id=f"s{uuid.uuid4().hex[:15]}", channel_id=channel.id,
            event_types=sorted(set(s.event_types)), min_severity=s.min_severity,
            subject_prefix=s.subject_prefix, enabled=s.enabled, owner=who.subject)
        async with self._store.transaction() as conn:
            if request_id:
                done = await self._store.subscription_for_request(conn, request_id)
                if done is not None:
                    self._allow("subscription", done.name, done.owner, who)
                    return done
            return await self._store.insert_subscription(conn, record, request_id)

    async def _visible_subscription(self, name: str, who: Who, *, field: str = "name",
                                    conn: Any = None, lock: bool = False) -> SubscriptionRecord:
        (sid,) = parse_name(name, "subscriptions", field=field)
        sub = await self._store.get_subscription(sid, conn=conn, lock=lock)
        self._allow("subscription", name, sub.owner, who)
        return sub

    async def get_subscription(self, name: str, who: Who) -> SubscriptionRecord:
        return await self._visible_subscription(name, who)

    async def list_subscriptions(self, who: Who, page_size: int, page_token: str,
                                 channel: str) -> Page[SubscriptionRecord]:
        size = paging.page_size(page_size)
        channel_id = None
        if channel:
            channel_id = (await self._visible_channel(channel, who, field="channel")).id
        filters = {"owner": None if who.admin else who.subject, "channel": channel_id}
        after = _after(paging.decode_token(page_token, filters))
        rows = await self._store.list_subscriptions(
            owner=filters["owner"], channel_id=channel_id, limit=size + 1, after=after)
        return _page(rows, size, filters)

    async def update_subscription(self, s: SubscriptionInput, mask: Sequence[str], who: Who,
                                  ) -> SubscriptionRecord:
        paths = list(mask) or list(SUBSCRIPTION_PATHS)
        bad = [p for p in paths if p not in SUBSCRIPTION_PATHS]
        if bad:
            raise InvalidArgument.for_field("update_mask",
                                            f"paths among {list(SUBSCRIPTION_PATHS)}", bad)
        async with self._store.transaction() as conn:
            current = await self._visible_subscription(s.name, who, field="subscription.name",
                                                       conn=conn, lock=True)
            merged = replace(
                current,
                event_types=(sorted(set(s.event_types)) if "event_types" in paths
                             else current.event_types),
                min_severity=s.min_severity if "min_severity" in paths else current.min_severity,
                subject_prefix=(s.subject_prefix if "subject_prefix" in paths
                                else current.subject_prefix),
                enabled=s.enabled if "enabled" in paths else current.enabled)
            self._check_subscription(SubscriptionInput(
                event_types=merged.event_types, min_severity=merged.min_severity,
                subject_prefix=merged.subject_prefix))
            return await self._store.update_subscription(conn, merged)

    async def delete_subscription(self, name: str, who: Who) -> None:
        async with self._store.transaction() as conn:
            sub = await self._visible_subscription(name, who, conn=conn, lock=True)
            await self._store.delete_subscription(conn, sub.id)

    # -- deliveries -------------------------------------------------------------------
    async def list_deliveries(self, parent: str, state: str | None, who: Who, page_size: int,
                              page_token: str) -> Page[DeliveryRecord]:
        channel = await self._visible_channel(parent, who, field="parent")
        if state is not None and state not in {s.value for s in DeliveryState}:
            raise InvalidArgument.for_field(
                "state", f"one of {[s.value for s in DeliveryState]}", state)
        size = paging.page_size(page_size)
        filters = {"parent": parent, "state": state}
        after = _after(paging.decode_token(page_token, filters))
        rows = await self._store.list_deliveries(channel_id=channel.id, state=state,
                                                 limit=size + 1, after=after)
        return _page(rows, size, filters)

    async def redeliver(self, parent: str, delivery: str, who: Who,
                        ) -> tuple[int, list[DeliveryRecord]]:
        """Make dead letters (or the one delivery named) due again; wake the engine."""
        delivery_id = None
        if delivery:
            cid, delivery_id = parse_name(delivery, "channels", "deliveries", field="delivery")
            if f"channels/{cid}" != parent:
                raise InvalidArgument.for_field("delivery", f"a delivery of {parent}", delivery)
        async with self._store.transaction() as conn:
            channel = await self._visible_channel(parent, who, field="parent", conn=conn)
            if delivery_id is not None:
                await self._store.get_delivery(channel.id, delivery_id)  # NotFound
            again = await self._store.redeliver(conn, channel.id, delivery_id)
        if again:
            self._deliverer.wake()
        return len(again), again[:REDELIVER_SHOWN]


def _after(key: list[Any] | None) -> tuple[datetime, str] | None:
    return (datetime.fromisoformat(key[0]), str(key[1])) if key else None


def _page(rows: list[Any], size: int, filters: dict[str, Any]) -> Page[Any]:
    if len(rows) <= size:
        return Page(rows, "")
    items = rows[:size]
    last = items[-1]
    return Page(items, paging.encode_token([last.create_time, last.id], filters))
