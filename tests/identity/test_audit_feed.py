"""Refusals from other services reach identity's audit log through Redis, each once."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from usdcarb.identity.audit_feed import GROUP, AuditFeed
from usdcarb.identity.store import IdentityStore
from usdcarb.platform.audit import AUDIT_STREAM, DeniedCall, stream_hook
from usdcarb.platform.identity import Caller

pytestmark = pytest.mark.integration


class Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-forwarded-for", "10.1.2.3, 127.0.0.1"),)


async def rows(pool: Any) -> list[Any]:
    return list(await pool.fetch(
        "SELECT time, actor, action, target, outcome, client_ip, details, source_id "
        "FROM audit_events ORDER BY id"))


async def test_a_refusal_is_recorded_once_even_when_delivered_twice(
        service_pool: Any, redis_server: Any) -> None:
    pool = await service_pool("identity")
    redis = aioredis.Redis.from_url(redis_server.url)
    await redis.delete(AUDIT_STREAM)
    try:
        hook = stream_hook(redis, "usdcarb.v1.StrategyService")
        for sub in ("users/a", "users/b"):
            await hook("usdcarb.v1.StrategyService/CreateStrategy",
                       Caller(subject=sub, roles=frozenset({"viewer"})), Context())

        # A replica records the batch, then dies before acknowledging it.
        dying = AuditFeed(redis, IdentityStore(pool), block_ms=10)
        await dying.ensure_group()

        async def crash(*_: Any) -> None:
            raise ConnectionError("died before XACK")

        redis_xack = redis.xack
        redis.xack = crash  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await dying.step()
        redis.xack = redis_xack  # type: ignore[method-assign]
        assert len(await rows(pool)) == 2
        assert (await redis.xpending(AUDIT_STREAM, GROUP))["pending"] == 2

        # Another replica claims the pending entries: recorded once, then acknowledged.
        survivor = AuditFeed(redis, IdentityStore(pool), block_ms=10, claim_idle_ms=0)
        assert await survivor.step() == 2
        assert survivor.recorded == 0
        assert (await redis.xpending(AUDIT_STREAM, GROUP))["pending"] == 0
        recorded = await rows(pool)
        assert [(r["actor"], r["action"], r["target"], r["outcome"], r["client_ip"])
                for r in recorded] == [
            (sub, "call.denied", "usdcarb.v1.StrategyService/CreateStrategy", "failure",
             "10.1.2.3") for sub in ("users/a", "users/b")]
        assert recorded[0]["details"] == {"roles": ["viewer"],
                                          "service": "usdcarb.v1.StrategyService"}
        assert len({r["source_id"] for r in recorded}) == 2
        assert await survivor.step() == 0  # nothing new
    finally:
        await redis.delete(AUDIT_STREAM)
        await redis.aclose()


def test_entries_round_trip_through_stream_fields() -> None:
    entry = DeniedCall(service="s", method="m", subject="users/x", roles=("analyst", "viewer"),
                       client_ip="", time_ms=1_700_000_000_000)
    as_bytes = {k.encode(): v.encode() for k, v in entry.fields().items()}
    assert DeniedCall.from_fields(as_bytes) == entry
