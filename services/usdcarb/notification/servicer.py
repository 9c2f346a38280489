"""gRPC NotificationService: proto ↔ application calls, nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from redis.exceptions import RedisError

from usdcarb.notification import convert, domain
from usdcarb.notification.app import ChannelInput, NotificationApp, SubscriptionInput, Who
from usdcarb.notification.feed import EventFeed
from usdcarb.platform.errors import InvalidArgument, Unavailable
from usdcarb.platform.identity import get_caller
from usdcarb.platform.status import domain_status
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import notification_pb2 as pb
from usdcarb.v1 import notification_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


def who() -> Who:
    caller = get_caller()
    return Who(subject=caller.subject, admin="admin" in caller.roles)


def channel_input(c: pb.Channel) -> ChannelInput:
    kind = c.WhichOneof("config") or ""
    w, e = c.webhook, c.email
    return ChannelInput(name=c.name, display_name=c.display_name, kind=kind, url=w.url,
                        secret=w.secret, headers=dict(w.headers), max_attempts=w.max_attempts,
                        to=list(e.to), subject_prefix=e.subject_prefix)


def subscription_input(s: pb.Subscription) -> SubscriptionInput:
    return SubscriptionInput(
        name=s.name, channel=s.channel,
        event_types=[convert.enum_name(pb.EventType, t) for t in s.event_types],
        min_severity=convert.enum_name(cpb.Severity, s.min_severity),
        subject_prefix=s.subject_prefix, enabled=s.enabled)


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    """usdcarb.v1.NotificationService."""

    def __init__(self, app: NotificationApp, feed: EventFeed) -> None:
        self._app = app
        self._feed = feed

    async def CreateChannel(self, request: pb.CreateChannelRequest, context: Any) -> Any:
        return convert.channel_to_pb(await self._app.create_channel(
            channel_input(request.channel), who(), request.request_id))

    async def GetChannel(self, request: pb.GetChannelRequest, context: Any) -> Any:
        return convert.channel_to_pb(await self._app.get_channel(request.name, who()))

    async def ListChannels(self, request: pb.ListChannelsRequest, context: Any) -> Any:
        page = await self._app.list_channels(who(), request.page_size, request.page_token)
        return pb.ListChannelsResponse(channels=[convert.channel_to_pb(c) for c in page.items],
                                       next_page_token=page.next_page_token)

    async def UpdateChannel(self, request: pb.UpdateChannelRequest, context: Any) -> Any:
        return convert.channel_to_pb(await self._app.update_channel(
            channel_input(request.channel), list(request.update_mask.paths), who()))

    async def DeleteChannel(self, request: pb.DeleteChannelRequest, context: Any) -> Any:
        await self._app.delete_channel(request.name, who())
        return empty_pb2.Empty()

    async def TestChannel(self, request: pb.TestChannelRequest, context: Any) -> Any:
        return convert.delivery_to_pb(await self._app.test_channel(request.name, who()))

    async def RotateWebhookSecret(self, request: pb.RotateWebhookSecretRequest,
                                  context: Any) -> Any:
        overlap = request.overlap.ToTimedelta().total_seconds() if request.HasField(
            "overlap") else None
        return convert.channel_to_pb(await self._app.rotate_secret(
            request.name, request.secret, overlap, who()))

    async def CreateSubscription(self, request: pb.CreateSubscriptionRequest,
                                 context: Any) -> Any:
        return convert.subscription_to_pb(await self._app.create_subscription(
            subscription_input(request.subscription), who(), request.request_id))

    async def GetSubscription(self, request: pb.GetSubscriptionRequest, context: Any) -> Any:
        return convert.subscription_to_pb(await self._app.get_subscription(request.name, who()))

    async def ListSubscriptions(self, request: pb.ListSubscriptionsRequest,
                                context: Any) -> Any:
        page = await self._app.list_subscriptions(who(), request.page_size, request.page_token,
                                                  request.channel)
        return pb.ListSubscriptionsResponse(
            subscriptions=[convert.subscription_to_pb(s) for s in page.items],
            next_page_token=page.next_page_token)

    async def UpdateSubscription(self, request: pb.UpdateSubscriptionRequest,
                                 context: Any) -> Any:
        return convert.subscription_to_pb(await self._app.update_subscription(
            subscription_input(request.subscription), list(request.update_mask.paths), who()))

    async def DeleteSubscription(self, request: pb.DeleteSubscriptionRequest,
                                 context: Any) -> Any:
        await self._app.delete_subscription(request.name, who())
        return empty_pb2.Empty()

    async def ListDeliveries(self, request: pb.ListDeliveriesRequest, context: Any) -> Any:
        state = convert.enum_name(pb.DeliveryState, request.state) if request.state else None
        page = await self._app.list_deliveries(request.parent, state, who(), request.page_size,
                                               request.page_token)
        return pb.ListDeliveriesResponse(
            deliveries=[convert.delivery_to_pb(d) for d in page.items],
            next_page_token=page.next_page_token)

    async def RedeliverDeliveries(self, request: pb.RedeliverDeliveriesRequest,
                                  context: Any) -> Any:
        count, shown = await self._app.redeliver(request.parent, request.delivery, who())
        return pb.RedeliverDeliveriesResponse(
            redelivered_count=count, deliveries=[convert.delivery_to_pb(d) for d in shown])

    async def SubscribeEvents(self, request: pb.SubscribeEventsRequest,
                              context: Any) -> AsyncIterator[pb.SubscribeEventsResponse]:
        types = [convert.enum_name(pb.EventType, t) for t in request.event_types]
        severity = convert.enum_name(cpb.Severity, request.min_severity)
        violations = domain.check_event_types(types, "event_types")
        violations += domain.check_severity(severity, "min_severity")
        if violations:
            raise InvalidArgument(violations)
        flt = domain.Filter(event_types=frozenset(types), min_severity=severity,
                            subject_prefix=request.subject_prefix)
        outcome = cpb.Outcome(result=cpb.Outcome.RESULT_OK)
        try:
            async for item in self._feed.follow(flt, request.after_id):
                if item is None:
                    beat = timestamp_pb2.Timestamp()
                    beat.GetCurrentTime()
                    yield pb.SubscribeEventsResponse(heartbeat_time=beat)
                else:
                    yield pb.SubscribeEventsResponse(event=convert.event_to_pb(item))
        except (RedisError, OSError) as exc:
            # Past the first message a status would not reach REST callers: say it last.
            logger.warning("SubscribeEvents: %s: %s", type(exc).__name__, exc)
            outcome = cpb.Outcome(result=cpb.Outcome.RESULT_FAILED, error=domain_status(
                Unavailable("the event stream is unavailable; resume with after_id set to "
                            "the last event id received", retry_after=1.0)))
        yield pb.SubscribeEventsResponse(outcome=outcome)
