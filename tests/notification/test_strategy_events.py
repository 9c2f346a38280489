"""The strategy service publishes version and deployment changes, one event per fact."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from notification.nt_helpers import caller
from usdcarb.platform.events import DomainEvent, publish
from usdcarb.platform.redis import create_redis
from usdcarb.platform.testing import start_in_process
from usdcarb.strategy.main import SERVICE, build
from usdcarb.v1 import strategy_pb2 as spb
from usdcarb.v1 import strategy_pb2_grpc

pytestmark = pytest.mark.integration


class StreamSink:
    def __init__(self, redis: Any, stream: str) -> None:
        self.redis, self.stream = redis, stream

    async def publish(self, event: DomainEvent) -> None:
        await publish(self.redis, event, stream=self.stream)


async def test_deploying_and_stopping_publish_each_change_once(
        service_pool: Any, redis_server: Any) -> None:
    pool = await service_pool("strategy")
    redis = await create_redis(redis_server.url)
    stream = f"test:strategy-events:{uuid.uuid4().hex[:8]}"
    who = caller("users/trader", "trader")
    try:
        async with await start_in_process([SERVICE], build(pool, StreamSink(redis, stream))) as s:
            async with grpc.aio.insecure_channel(s.address) as ch:
                stub = strategy_pb2_grpc.StrategyServiceStub(ch)
                await stub.CreateStrategy(spb.CreateStrategyRequest(
                    strategy_id="spread", strategy=spb.Strategy(
                        display_name="spread", kind=spb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)),
                    metadata=who)
                v = await stub.CreateStrategyVersion(spb.CreateStrategyVersionRequest(
                    parent="strategies/spread", version=spb.StrategyVersion(
                        parameters=json_format.ParseDict({"crossExchangeSpread": {
                            "symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken",
                            "entryBps": 15, "exitBps": 3, "quantity": 10000}},
                            spb.StrategyParameters()))), metadata=who)
                for state in (spb.VERSION_STATE_BACKTESTED, spb.VERSION_STATE_APPROVED):
                    await stub.TransitionStrategyVersion(spb.TransitionStrategyVersionRequest(
                        name=v.name, state=state, reason="ok"), metadata=who)
                await stub.TransitionStrategyVersion(spb.TransitionStrategyVersionRequest(
                    name=v.name, state=spb.VERSION_STATE_APPROVED), metadata=who)  # no change
                d = await stub.CreateDeployment(spb.CreateDeploymentRequest(
                    parent="strategies/spread", deployment=spb.Deployment(
                        version=v.name, environment=spb.DEPLOYMENT_ENVIRONMENT_PAPER)),
                    metadata=who)
                for _ in range(2):  # the second stop changes nothing
                    await stub.StopDeployment(spb.StopDeploymentRequest(name=d.name,
                                                                        reason="done"),
                                              metadata=who)
        entries = [DomainEvent.from_fields(f) for _, f in await redis.xrange(stream)]
    finally:
        await redis.aclose()
    assert [(e.type, e.subject, e.data.get("to_state") or e.data.get("state"))
            for e in entries] == [
        ("EVENT_TYPE_VERSION_STATE_CHANGED", v.name, "VERSION_STATE_BACKTESTED"),
        ("EVENT_TYPE_VERSION_STATE_CHANGED", v.name, "VERSION_STATE_APPROVED"),
        ("EVENT_TYPE_VERSION_STATE_CHANGED", v.name, "VERSION_STATE_DEPLOYED"),
        ("EVENT_TYPE_DEPLOYMENT_CHANGED", d.name, "DEPLOYMENT_STATE_ACTIVE"),
        ("EVENT_TYPE_DEPLOYMENT_CHANGED", d.name, "DEPLOYMENT_STATE_STOPPED"),
    ]
    assert all(e.source == "strategy" for e in entries)
