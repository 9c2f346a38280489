"""Channels and subscriptions over gRPC: owners, paging, validation, secret rotation."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from notification.conftest import Env
from notification.nt_helpers import caller, new_secret, violations
from usdcarb.notification.app import Who
from usdcarb.notification.main import build
from usdcarb.notification.servicer import channel_input
from usdcarb.platform.errors import InvalidArgument
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import notification_pb2 as pb

pytestmark = pytest.mark.integration

ALICE, BOB, ADMIN = "users/alice", "users/bob", "users/root"


def webhook(url: str = "https://hooks.example.org/x", **kw: Any) -> pb.Channel:
    return pb.Channel(display_name="ops hook",
                      webhook=pb.WebhookConfig(url=url, secret=kw.pop("secret", new_secret()),
                                               **kw))


async def count_rows(env: Env) -> tuple[int, int]:
    return (await env.pool.fetchval("SELECT count(*) FROM channels"),
            await env.pool.fetchval("SELECT count(*) FROM subscriptions"))


async def test_channel_lifecycle_never_returns_the_secret(env: Env) -> None:
    created = await env.stub.CreateChannel(pb.CreateChannelRequest(channel=webhook(
        headers={"x-team": "desk"})), metadata=caller(ALICE))
    assert created.name.startswith("channels/")
    assert created.owner == ALICE and created.has_secret
    assert created.webhook.secret == "" and created.webhook.headers["x-team"] == "desk"
    got = await env.stub.GetChannel(pb.GetChannelRequest(name=created.name),
                                    metadata=caller(ALICE))
    assert got == created
    updated = await env.stub.UpdateChannel(pb.UpdateChannelRequest(
        channel=pb.Channel(name=created.name, display_name="renamed"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"])), metadata=caller(ALICE))
    assert updated.display_name == "renamed" and updated.webhook.url == created.webhook.url
    await env.stub.DeleteChannel(pb.DeleteChannelRequest(name=created.name),
                                 metadata=caller(ALICE))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.GetChannel(pb.GetChannelRequest(name=created.name),
                                  metadata=caller(ALICE))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_create_channel_with_a_request_id_is_idempotent(env: Env) -> None:
    req = pb.CreateChannelRequest(channel=webhook(), request_id="req-1")
    a = await env.stub.CreateChannel(req, metadata=caller(ALICE))
    b = await env.stub.CreateChannel(req, metadata=caller(ALICE))
    assert a.name == b.name
    assert await count_rows(env) == (1, 0)


async def test_others_cannot_read_or_change_a_channel_but_an_admin_can(env: Env) -> None:
    mine = await env.stub.CreateChannel(pb.CreateChannelRequest(channel=webhook()),
                                        metadata=caller(ALICE))
    for call in (env.stub.GetChannel(pb.GetChannelRequest(name=mine.name),
                                     metadata=caller(BOB)),
                 env.stub.DeleteChannel(pb.DeleteChannelRequest(name=mine.name),
                                        metadata=caller(BOB)),
                 env.stub.CreateSubscription(pb.CreateSubscriptionRequest(
                     subscription=pb.Subscription(channel=mine.name)), metadata=caller(BOB))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await env.stub.ListChannels(pb.ListChannelsRequest(), metadata=caller(BOB))
    assert list(listed.channels) == []
    seen = await env.stub.GetChannel(pb.GetChannelRequest(name=mine.name),
                                     metadata=caller(ADMIN, "admin"))
    assert seen.owner == ALICE
    all_ = await env.stub.ListChannels(pb.ListChannelsRequest(),
                                       metadata=caller(ADMIN, "admin"))
    assert [c.name for c in all_.channels] == [mine.name]


async def test_channels_page_newest_first_with_stable_tokens(env: Env) -> None:
    names = [(await env.stub.CreateChannel(pb.CreateChannelRequest(channel=webhook()),
                                           metadata=caller(ALICE))).name for _ in range(5)]
    seen, token = [], ""
    while True:
        page = await env.stub.ListChannels(pb.ListChannelsRequest(page_size=2, page_token=token),
                                           metadata=caller(ALICE))
        seen += [c.name for c in page.channels]
        token = page.next_page_token
        if not token:
            break
    assert seen == names[::-1]


@pytest.mark.parametrize(("channel", "field"), [
    (webhook("not a url"), "channel.webhook.url"),
    (webhook("https://169.254.169.254/latest"), "channel.webhook.url"),
    (webhook(secret="hunter2"), "channel.webhook.secret"),
    (webhook(headers={"webhook-id": "x"}), "channel.webhook.headers"),
    (pb.Channel(display_name="mail", email=pb.EmailConfig()), "channel.email.to"),
    (pb.Channel(display_name="mail", email=pb.EmailConfig(to=["nobody"])), "channel.email.to"),
    (pb.Channel(display_name="none"), "channel.config"),
    (pb.Channel(display_name="", email=pb.EmailConfig(to=["a@b.org"])), "channel.display_name"),
])
async def test_bad_channels_are_refused_with_field_violations_and_nothing_written(
        env: Env, channel: pb.Channel, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.CreateChannel(pb.CreateChannelRequest(channel=channel),
                                     metadata=caller(ALICE))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(err.value)
    assert await count_rows(env) == (0, 0)


@pytest.mark.parametrize(("url", "why"), [
    ("http://hooks.example.org/x", "https"),
    ("https://10.1.2.3/x", "public address"),
    ("https://192.168.0.9/x", "public address"),
    ("https://[fe80::1]/x", "public address"),
    ("https://127.0.0.1/x", "public address"),
    ("https://localhost/x", "public host"),
])
async def test_prod_refuses_plain_http_and_inner_addresses(env: Env, url: str, why: str) -> None:
    # The prod rules of the application itself (a prod server also needs TLS files).
    app = build(env.pool, env.redis, env.settings.model_copy(update={"env": "prod"})).app
    with pytest.raises(InvalidArgument) as err:
        await app.create_channel(channel_input(webhook(url)), Who(subject=ALICE), "")
    assert why in dict(err.value.field_violations)["channel.webhook.url"]
    assert await count_rows(env) == (0, 0)


async def test_subscriptions_filter_and_refuse_unknown_event_types(env: Env) -> None:
    channel = await env.stub.CreateChannel(pb.CreateChannelRequest(channel=webhook()),
                                           metadata=caller(ALICE))
    sub = await env.stub.CreateSubscription(pb.CreateSubscriptionRequest(
        subscription=pb.Subscription(
            channel=channel.name, event_types=[pb.EVENT_TYPE_BACKTEST_FAILED],
            min_severity=cpb.SEVERITY_WARNING, subject_prefix="backtests/", enabled=True)),
        metadata=caller(ALICE))
    assert sub.owner == ALICE and sub.enabled
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.CreateSubscription(pb.CreateSubscriptionRequest(
            subscription=pb.Subscription(channel=channel.name, event_types=[99])),
            metadata=caller(ALICE))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "subscription.event_types" in violations(err.value)
    paused = await env.stub.UpdateSubscription(pb.UpdateSubscriptionRequest(
        subscription=pb.Subscription(name=sub.name, enabled=False),
        update_mask=field_mask_pb2.FieldMask(paths=["enabled"])), metadata=caller(ALICE))
    assert not paused.enabled and list(paused.event_types) == [pb.EVENT_TYPE_BACKTEST_FAILED]
    listed = await env.stub.ListSubscriptions(pb.ListSubscriptionsRequest(channel=channel.name),
                                              metadata=caller(ALICE))
    assert [s.name for s in listed.subscriptions] == [sub.name]
    await env.stub.DeleteChannel(pb.DeleteChannelRequest(name=channel.name),
                                 metadata=caller(ALICE))
    assert await count_rows(env) == (0, 0)


async def test_rotation_sets_an_overlap_and_email_channels_have_no_secret(env: Env) -> None:
    channel = await env.stub.CreateChannel(pb.CreateChannelRequest(channel=webhook()),
                                           metadata=caller(ALICE))
    rotated = await env.stub.RotateWebhookSecret(pb.RotateWebhookSecretRequest(
        name=channel.name, secret=new_secret(), overlap=duration_pb2.Duration(seconds=600)),
        metadata=caller(ALICE))
    assert rotated.HasField("previous_secret_expire_time") and rotated.webhook.secret == ""
    mail = await env.stub.CreateChannel(pb.CreateChannelRequest(channel=pb.Channel(
        display_name="mail", email=pb.EmailConfig(to=["ops@example.org"]))),
        metadata=caller(ALICE))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.RotateWebhookSecret(pb.RotateWebhookSecretRequest(
            name=mail.name, secret=new_secret()), metadata=caller(ALICE))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
