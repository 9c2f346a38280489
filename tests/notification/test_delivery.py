"""The delivery engine against a real webhook receiver and a real SMTP server."""

from __future__ import annotations

import asyncio
import itertools
import time

import grpc
import pytest
from google.protobuf import duration_pb2
from standardwebhooks.webhooks import Webhook

from notification.conftest import Env
from notification.nt_helpers import caller, new_secret
from testkit import eventually
from usdcarb.platform import events
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import notification_pb2 as pb

pytestmark = pytest.mark.integration

ALICE = "users/alice"


async def deliveries(env: Env, channel: str, state: int = 0) -> list[pb.Delivery]:
    page = await env.stub.ListDeliveries(pb.ListDeliveriesRequest(
        parent=channel, state=state, page_size=1000), metadata=caller(ALICE))
    return list(page.deliveries)


async def test_a_matching_event_reaches_the_webhook_signed_and_the_email_inbox(env: Env) -> None:
    receiver = await env.receiver()
    hook, _ = await env.webhook(receiver, event_types=[pb.EVENT_TYPE_BACKTEST_SUCCEEDED])
    mail = await env.stub.CreateChannel(pb.CreateChannelRequest(channel=pb.Channel(
        display_name="desk mail", email=pb.EmailConfig(to=["quant@example.org"],
                                                       subject_prefix="[desk]"))),
        metadata=caller(ALICE))
    await env.stub.CreateSubscription(pb.CreateSubscriptionRequest(subscription=pb.Subscription(
        channel=mail.name, enabled=True, subject_prefix="backtests/")), metadata=caller(ALICE))
    await env.publish("EVENT_TYPE_INGESTION_SUCCEEDED", subject="ingestJobs/j1")  # no match
    event_id = await env.publish(total_return=0.042, strategy_version="strategies/s/versions/v")

    await eventually(lambda: len(receiver.received) == 1 and len(env.smtp.messages) == 1)
    got = receiver.received[0]
    assert got.payload is not None, "signature verified with the standardwebhooks library"
    assert got.payload["id"] == event_id
    assert got.payload["type"] == "EVENT_TYPE_BACKTEST_SUCCEEDED"
    assert got.payload["data"]["total_return"] == 0.042
    rcpt, message = env.smtp.messages[0]
    assert rcpt == ["quant@example.org"]
    assert message["Subject"].startswith("[desk] Backtest finished: backtest b1 finished")
    parts = {p.get_content_type(): p.get_payload(decode=True).decode()
             for p in message.walk() if not p.is_multipart()}
    assert "total_return" in parts["text/plain"] and "<table" in parts["text/html"]

    async def both_delivered() -> bool:
        h, m = await deliveries(env, hook.name), await deliveries(env, mail.name)
        return [(d.state, d.response_code) for d in h + m] == [
            (pb.DELIVERY_STATE_DELIVERED, 200), (pb.DELIVERY_STATE_DELIVERED, 250)]
    await eventually(both_delivered)
    [d] = await deliveries(env, hook.name)
    assert got.id == d.name.rsplit("/", 1)[1], "webhook-id is the delivery id"
    assert len(receiver.received) == 1 and len(env.smtp.messages) == 1


async def test_an_event_appended_twice_by_a_retried_publish_is_delivered_once(
        env: Env) -> None:
    receiver = await env.receiver()
    hook, _ = await env.webhook(receiver, event_types=[pb.EVENT_TYPE_BACKTEST_SUCCEEDED])
    event = events.DomainEvent(type="EVENT_TYPE_BACKTEST_SUCCEEDED", source="test",
                               subject="backtests/twice", summary="twice")
    for _ in range(2):  # the first XADD landed but its reply was lost; the publisher retried
        await events.publish(env.redis, event, stream=env.settings.events_stream)
    await env.publish(subject="backtests/after")  # a later, distinct event

    await eventually(lambda: len(receiver.received) == 2)
    await asyncio.sleep(0.5)  # nothing more arrives
    assert sorted(r.payload["subject"] for r in receiver.received if r.payload) == [
        "backtests/after", "backtests/twice"]
    assert len(await deliveries(env, hook.name)) == 2


async def test_503_three_times_then_200_is_delivered_after_four_growing_waits(env: Env) -> None:
    receiver = await env.receiver(script=[503, 503, 503])
    hook, _ = await env.webhook(receiver)
    await env.publish()

    async def delivered() -> list[pb.Delivery]:
        return await deliveries(env, hook.name, pb.DELIVERY_STATE_DELIVERED)
    [d] = await eventually(delivered, within_s=20)
    assert d.attempts == 4 and d.response_code == 200
    assert len({r.id for r in receiver.received}) == 1, "one id on every attempt"
    at = [r.at for r in receiver.received]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert len(gaps) == 3 and gaps[0] < gaps[1] < gaps[2], gaps


async def test_retry_after_is_honoured_and_other_4xx_dead_letter_at_once(env: Env) -> None:
    slow = await env.receiver(script=[429], retry_after="2")
    gone = await env.receiver(script=[410])
    _slow_hook, _ = await env.webhook(slow)
    gone_hook, _ = await env.webhook(gone)
    await env.publish()
    [dead] = await eventually(lambda: deliveries(env, gone_hook.name,
                                                 pb.DELIVERY_STATE_DEAD_LETTERED))
    assert dead.attempts == 1 and dead.response_code == 410
    await eventually(lambda: len(slow.received) == 2, within_s=10)
    assert slow.received[1].at - slow.received[0].at >= 1.9


async def test_a_dead_receiver_is_dead_lettered_then_redelivered_when_back(env: Env) -> None:
    receiver = await env.receiver()
    await receiver.stop()  # down: connections refused
    hook, _ = await env.webhook(receiver, max_attempts=3)
    await env.publish()
    [dead] = await eventually(lambda: deliveries(env, hook.name,
                                                 pb.DELIVERY_STATE_DEAD_LETTERED), within_s=20)
    assert dead.attempts == 3 and "ClientConnectorError" in dead.last_error
    await receiver.start()  # back, same port
    again = await env.stub.RedeliverDeliveries(pb.RedeliverDeliveriesRequest(parent=hook.name),
                                               metadata=caller(ALICE))
    assert again.redelivered_count == 1
    [ok] = await eventually(lambda: deliveries(env, hook.name, pb.DELIVERY_STATE_DELIVERED))
    assert ok.name == dead.name and ok.response_code == 200
    assert [r.id for r in receiver.verified] == [dead.name.rsplit("/", 1)[1]]


async def test_a_hanging_receiver_does_not_slow_another_channel(env: Env) -> None:
    hanging = await env.receiver(hang=True)
    fast = await env.receiver()
    await env.webhook(hanging)
    await env.webhook(fast)
    started = time.monotonic()
    for i in range(40):
        await env.publish(subject=f"backtests/b{i}")
    await eventually(lambda: len(fast.received) == 40, within_s=10)
    assert time.monotonic() - started < 3.0, "the fast channel waited on the hanging one"
    assert 1 <= len(hanging.received) <= env.settings.per_channel_concurrency


async def test_test_channel_sends_a_real_test_event_and_returns_its_delivery(env: Env) -> None:
    receiver = await env.receiver()
    hook, _ = await env.webhook(receiver, event_types=[pb.EVENT_TYPE_GAP_DETECTED])
    d = await env.stub.TestChannel(pb.TestChannelRequest(name=hook.name), metadata=caller(ALICE))
    assert d.state == pb.DELIVERY_STATE_DELIVERED and d.response_code == 200
    assert d.event.type == pb.EVENT_TYPE_TEST and d.event.subject == hook.name
    assert not d.subscription
    [got] = receiver.verified
    assert got.payload is not None and got.payload["type"] == "EVENT_TYPE_TEST"


async def test_both_secrets_sign_during_a_rotation_overlap(env: Env) -> None:
    receiver = await env.receiver()
    old = receiver.secrets[0]
    hook, _ = await env.webhook(receiver)
    new = new_secret()
    await env.stub.RotateWebhookSecret(pb.RotateWebhookSecretRequest(
        name=hook.name, secret=new, overlap=duration_pb2.Duration(seconds=60)),
        metadata=caller(ALICE))
    await asyncio.sleep(1.1)  # the engine's channel cache
    await env.publish()
    await eventually(lambda: receiver.received)
    got = receiver.received[0]
    for secret in (old, new):
        Webhook(secret).verify(got.body, got.headers)


async def test_a_replica_that_dies_mid_burst_loses_nothing(env: Env) -> None:
    receiver = await env.receiver()
    hook, _ = await env.webhook(receiver)
    doomed, doomed_server = await env.start_replica("doomed")
    ids = [await env.publish(subject=f"backtests/b{i}") for i in range(200)]
    await eventually(lambda: len(receiver.received) >= 20)
    # Die as a SIGKILL would: loops gone mid-work, nothing acknowledged or released.
    for task in doomed.tasks:
        task.cancel()
    await doomed.deliverer.stop()
    await doomed_server.service.server.stop(0)

    async def all_delivered() -> bool:
        return len(await deliveries(env, hook.name, pb.DELIVERY_STATE_DELIVERED)) == 200
    await eventually(all_delivered, within_s=30)
    got = {r.payload["id"] for r in receiver.verified if r.payload}
    assert got == set(ids)
    by_id: dict[str, set[str]] = {}
    for r in receiver.verified:
        assert r.payload is not None
        by_id.setdefault(r.payload["id"], set()).add(r.id)
    assert all(len(v) == 1 for v in by_id.values()), "duplicates carry the same webhook-id"


async def test_subscribe_events_resumes_from_a_cursor_on_another_replica(env: Env) -> None:
    _, second = await env.start_replica("second")
    first_ids = [await env.publish(subject=f"backtests/b{i}") for i in range(3)]

    async def take(stub: object, after: str, n: int) -> list[str]:
        got: list[str] = []
        call = stub.SubscribeEvents(pb.SubscribeEventsRequest(  # type: ignore[attr-defined]
            after_id=after, event_types=[pb.EVENT_TYPE_BACKTEST_SUCCEEDED]),
            metadata=caller(ALICE))
        async for msg in call:
            if msg.HasField("event"):
                got.append(msg.event.id)
                if len(got) == n:
                    call.cancel()
                    break
        return got

    from usdcarb.v1 import notification_pb2_grpc
    async with second.channel() as ch:
        other = notification_pb2_grpc.NotificationServiceStub(ch)
        a, b = await asyncio.gather(take(env.stub, "0", 3), take(other, "0", 3))
        assert a == b == first_ids
        await env.publish("EVENT_TYPE_DATA_ISSUE", severity="SEVERITY_ERROR")  # filtered out
        later = [await env.publish(subject=f"backtests/c{i}") for i in range(2)]
        assert await take(other, first_ids[-1], 2) == later


async def test_subscribe_events_sends_heartbeats_and_refuses_bad_cursors(env: Env) -> None:
    call = env.stub.SubscribeEvents(pb.SubscribeEventsRequest(
        min_severity=cpb.SEVERITY_ERROR), metadata=caller(ALICE))
    async for msg in call:
        assert msg.HasField("heartbeat_time")
        call.cancel()
        break
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in env.stub.SubscribeEvents(pb.SubscribeEventsRequest(after_id="yesterday"),
                                                metadata=caller(ALICE)):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_cursor_older_than_the_trimmed_events_is_refused(env: Env) -> None:
    ids = [await env.publish(subject=f"backtests/b{i}") for i in range(3)]
    await env.redis.xtrim(env.settings.events_stream, maxlen=1, approximate=False)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in env.stub.SubscribeEvents(pb.SubscribeEventsRequest(after_id=ids[0]),
                                                metadata=caller(ALICE)):
            pass
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    call = env.stub.SubscribeEvents(pb.SubscribeEventsRequest(after_id=ids[2]),
                                    metadata=caller(ALICE))
    later = await env.publish(subject="backtests/later")
    async for msg in call:
        if msg.HasField("event"):
            assert msg.event.id == later
            call.cancel()
            break
