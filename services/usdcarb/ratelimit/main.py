"""Composition root of the rate-limit service: ``python -m usdcarb.ratelimit.main``.

Implements Envoy's ``envoy.service.ratelimit.v3.RateLimitService`` on Redis (see
``service.py``) on a synchronous gRPC server (see ``server.py`` for why); limits come
from a YAML file reloaded when it changes; health follows Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Literal

import redis
from pydantic import Field
from redis.exceptions import RedisError

from usdcarb.platform.logging import configure_logging
from usdcarb.platform.settings import PlatformSettings, service_config
from usdcarb.ratelimit.counter import RedisCounter
from usdcarb.ratelimit.server import SyncService
from usdcarb.ratelimit.service import LimitsFile, RateLimitServicer

logger = logging.getLogger(__name__)

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
DEFAULT_LIMITS = Path(__file__).with_name("limits.yaml")


class RateLimitSettings(PlatformSettings):
    """Settings of the rate-limit service (environment variables USDCARB_RATELIMIT_*)."""

    model_config = service_config("USDCARB_RATELIMIT_")

    limits_file: Path = Field(default=DEFAULT_LIMITS, description="YAML limits, hot-reloaded.")
    reload_interval_s: float = Field(default=1.0, gt=0, description="How often to stat it.")
    failure_mode: Literal["open", "closed"] = Field(
        default="open", description="When Redis is down: let requests through, or refuse them."
    )
    redis_timeout_ms: int = Field(
        default=500, ge=1,
        description="Socket timeout of one Redis call (a flush or ping, off the request path).",
    )
    flush_interval_ms: float = Field(
        default=10, gt=0,
        description="Local counts reach Redis this often; bounds the overshoot across replicas.",
    )
    redis_cooldown_s: float = Field(
        default=0.2, gt=0, description="While Redis is down, retry it this often."
    )
    workers: int = Field(
        default=2, ge=1, description="gRPC handler threads. Handlers never wait on Redis "
        "(counts are flushed by their own thread), so a few suffice; each extra thread adds "
        "GIL hand-offs (16 requests in flight: 8 threads ~470 µs CPU per check, 2 ~370 µs).")


def open_redis(settings: RateLimitSettings, *, attempts: int = 20) -> redis.Redis:
    """Connect to Redis with short timeouts, waiting (with backoff) for a first PING."""
    timeout = settings.redis_timeout_ms / 1000
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout,
                                  socket_connect_timeout=max(timeout, 0.2))
    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            client.ping()
            return client
        except (RedisError, OSError) as exc:
            if attempt == attempts:
                client.close()
                raise
            logger.warning("Redis not ready (attempt %d/%d): %s", attempt, attempts, exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")  # pragma: no cover


def build(client: redis.Redis, settings: RateLimitSettings
          ) -> tuple[RateLimitServicer, LimitsFile, RedisCounter]:
    """Wire the limits file, the Redis counter and the servicer."""
    limits = LimitsFile(settings.limits_file)
    counter = RedisCounter(client, flush_interval_s=settings.flush_interval_ms / 1000,
                           cooldown_s=settings.redis_cooldown_s)
    servicer = RateLimitServicer(limits, counter, failure_mode=settings.failure_mode)
    return servicer, limits, counter


def watch(limits: LimitsFile, interval_s: float, stop: threading.Event) -> threading.Thread:
    """Start a thread reloading the limits file whenever it changes, until ``stop``."""
    def run() -> None:
        while not stop.wait(interval_s):
            limits.maybe_reload()
    thread = threading.Thread(target=run, name="limits-watch", daemon=True)
    thread.start()
    return thread


def ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False


def create_service(settings: RateLimitSettings) -> tuple[SyncService, RateLimitServicer,
                                                          LimitsFile, list[object]]:
    """Build the whole service (not started); the last item lists what ``close`` needs."""
    client = open_redis(settings)
    servicer, limits, counter = build(client, settings)
    stop = threading.Event()
    watch(limits, settings.reload_interval_s, stop)
    service = SyncService(SERVICE, servicer, settings, check=lambda: ping(client),
                          workers=settings.workers)
    return service, servicer, limits, [stop, counter, client]


def close(resources: list[object]) -> None:
    stop, counter, client = resources
    assert isinstance(stop, threading.Event) and isinstance(counter, RedisCounter)
    stop.set()
    counter.close()
    assert isinstance(client, redis.Redis)
    client.close()


def main() -> None:
    settings = RateLimitSettings()
    configure_logging(settings.log_level, json=settings.log_json)
    service, _, _, resources = create_service(settings)
    try:
        service.serve_until_signalled()
    finally:
        close(resources)


if __name__ == "__main__":
    main()
