"""Composition root of the rate-limit service: ``python -m usdcarb.ratelimit.main``.

It will implement Envoy's ``envoy.service.ratelimit.v3.RateLimitService`` on Redis
(issue #6). Until then ShouldRateLimit answers UNIMPLEMENTED, and the gateway is
rendered without the global rate-limit filter, so nothing relies on it; the process
serves health (following Redis), reflection and metrics like every service.
"""

from __future__ import annotations

from typing import Any

import grpc

from usdcarb.platform.bootstrap import run
from usdcarb.platform.errors import Unimplemented
from usdcarb.platform.redis import create_redis, redis_check
from usdcarb.platform.server import run_service
from usdcarb.platform.settings import PlatformSettings, service_config

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
OWNER = "identity and rate limits (issue #6)"


class RateLimitSettings(PlatformSettings):
    """Settings of the rate-limit service (environment variables USDCARB_RATELIMIT_*)."""

    model_config = service_config("USDCARB_RATELIMIT_")


async def _should_rate_limit(request: bytes, context: Any) -> bytes:
    raise Unimplemented(f"/{SERVICE}/ShouldRateLimit", OWNER)


def _register(server: Any) -> None:
    # Raw bytes in and out: the Envoy API's descriptors arrive with issue #6.
    handler = grpc.unary_unary_rpc_method_handler(_should_rate_limit)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"ShouldRateLimit": handler})]
    )


async def serve(settings: RateLimitSettings) -> None:
    client = await create_redis(settings.redis_url)
    await run_service(
        [], _register, settings, health_checks={"redis": redis_check(client)},
        on_close=[client.aclose],
    )


def main() -> None:
    settings = RateLimitSettings()
    run(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
