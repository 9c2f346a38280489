"""Open the Redis client a service uses: bounded timeouts, retries, a start-up ping.

Without timeouts a half-open connection hangs a call forever; without retries every
Redis restart fails in-flight commands. ``socket_timeout`` also bounds blocking
reads: an ``XREADGROUP ... BLOCK`` must block for less than it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)


async def create_redis(
    url: str,
    *,
    socket_timeout_s: float = 10.0,
    connect_timeout_s: float = 2.0,
    retries: int = 3,
    health_check_interval_s: int = 15,
    attempts: int = 10,
    first_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
) -> aioredis.Redis:
    """Create a client for ``url`` and wait (with backoff) until Redis answers PING.

    Raise the last error after ``attempts`` failed pings; close the client then.
    """
    client = aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        # Idle pooled connections are PINGed before reuse after this many seconds,
        # so a Redis restart surfaces as a reconnect rather than a failed command.
        health_check_interval=health_check_interval_s,
        decode_responses=False,
    )
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            await _ping(client)
        except (RedisError, OSError) as exc:
            if attempt == attempts:
                await client.aclose()
                raise
            logger.warning(
                "Redis not ready (attempt %d/%d): %s: %s; retrying in %.1fs",
                attempt,
                attempts,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
        else:
            logger.info("Redis client ready")
            return client
    raise AssertionError("unreachable")  # pragma: no cover


async def _ping(client: aioredis.Redis) -> bool:
    # redis-py types commands as sync-or-async; on the asyncio client they are awaitable.
    return bool(await cast(Awaitable[bool], client.ping()))


def redis_check(client: aioredis.Redis, timeout_s: float = 2.0) -> Callable[[], Awaitable[bool]]:
    """Return a health check that PINGs Redis."""

    async def check() -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                return await _ping(client)
        except Exception as exc:
            logger.warning("Redis health check failed: %s: %s", type(exc).__name__, exc)
            return False

    return check
