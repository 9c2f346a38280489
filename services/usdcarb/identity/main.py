"""Composition root of the identity service: ``python -m usdcarb.identity.main``.

Also ``python -m usdcarb.identity.main rotate-keys``: rotate the signing key now (the
admin path; running replicas pick the new key up within ``key_refresh_s`` and it
signs after ``key_publish_lead_s``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from usdcarb.identity.app import Actor, IdentityApp, TokenPolicy
from usdcarb.identity.audit_feed import AuditFeed
from usdcarb.identity.domain import LockoutPolicy
from usdcarb.identity.keyring import KeyRing, stop_task
from usdcarb.identity.keys import Passwords, read_jwks
from usdcarb.identity.servicer import IdentityServicer
from usdcarb.identity.settings import IdentitySettings
from usdcarb.identity.store import IdentityStore
from usdcarb.identity.telemetry import IdentityTelemetry
from usdcarb.platform import interceptors
from usdcarb.platform.audit import client_ip
from usdcarb.platform.bootstrap import run
from usdcarb.platform.db import create_pool, postgres_check
from usdcarb.platform.identity import Caller
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.server import run_service
from usdcarb.platform.telemetry import domain_registry, instrument_pool
from usdcarb.platform.tokens import TokenVerifier
from usdcarb.v1 import identity_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE = "usdcarb.v1.IdentityService"
SCHEMA = "identity"
MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = ["MIGRATIONS", "SERVICE", "IdentitySettings", "build_app", "main"]


def build_app(pool: Any, settings: IdentitySettings, *,
              telemetry: IdentityTelemetry | None = None) -> tuple[IdentityApp, KeyRing]:
    """Wire the store, the key ring and the application from settings (``telemetry``
    counts logins and refusals as the audit log records them)."""
    store = IdentityStore(pool)
    if telemetry is not None:
        telemetry.watch(store)
    passphrase = settings.key_passphrase.get_secret_value().encode()
    access_ttl = timedelta(seconds=settings.access_ttl_s)
    extra = read_jwks(settings.dev_jwks_path) if settings.publish_dev_key else []
    keyring = KeyRing(
        store, passphrase, rotate_every=timedelta(seconds=settings.key_rotation_interval_s),
        lead=timedelta(seconds=settings.key_publish_lead_s),
        overlap=access_ttl + timedelta(seconds=settings.clock_skew_s), extra_jwks=extra)
    policy = TokenPolicy(
        issuer=settings.issuer, audience=settings.audience, access_ttl=access_ttl,
        refresh_ttl=timedelta(seconds=settings.refresh_ttl_s),
        api_key_max=timedelta(days=settings.api_key_max_days),
        service_key=settings.service_key.get_secret_value(),
        lockout=LockoutPolicy(max_failures=settings.lockout_max_failures,
                              base_lock=timedelta(seconds=settings.lockout_base_s),
                              max_lock=timedelta(seconds=settings.lockout_max_s)))
    app = IdentityApp(store, keyring, Passwords(), policy, secret_box_key=passphrase)
    return app, keyring


def local_verifier(app: IdentityApp, settings: IdentitySettings) -> TokenVerifier:
    """Verify callers of identity itself against its own key ring (no round trip)."""
    async def keys() -> list[dict[str, str]]:
        return app.jwks()
    return TokenVerifier(keys, issuer=settings.issuer, audience=settings.audience,
                         leeway_s=settings.token_leeway_s, max_age_s=1.0, refetch_floor_s=0.0)


def register(app: IdentityApp) -> Any:
    servicer = IdentityServicer(app)
    return lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(  # type: ignore[no-untyped-call]
        servicer, server)


def audit_hook(app: IdentityApp) -> interceptors.DeniedHook:
    """Return the hook that writes calls refused by the role table to the audit log."""
    async def hook(method: str, caller: Caller, context: Any) -> None:
        await app.audit_denied_call(
            Actor(subject=caller.subject, roles=caller.roles, client_ip=client_ip(context)),
            method)
    return hook


async def _open(settings: IdentitySettings) -> Any:
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_pool_min,
                             settings.db_pool_max, search_path=f"{SCHEMA}, public")
    try:
        await apply_migrations(pool, SCHEMA, MIGRATIONS)
    except BaseException:
        await pool.close()
        raise
    return pool


async def serve(settings: IdentitySettings) -> None:
    pool = await _open(settings)
    telemetry = IdentityTelemetry(domain_registry())
    instrument_pool(pool, telemetry.registry)
    app, keyring = build_app(pool, settings, telemetry=telemetry)
    try:
        await keyring.start()
        admin = await app.bootstrap_admin(settings.bootstrap_admin_username,
                                          settings.bootstrap_admin_password.get_secret_value())
        if admin is not None:
            logger.info("bootstrapped admin user %s (%s)", admin.username, admin.name)
    except BaseException:
        await pool.close()
        raise
    interceptors.denied_call_hooks.append(audit_hook(app))
    refresher = asyncio.create_task(keyring.run(settings.key_refresh_s))
    # The other services' refusals (usdcarb.platform.audit); Redis is not a health
    # dependency: while it is away those records wait, nothing else does.
    redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5.0,
                                    socket_connect_timeout=2.0)
    feed_store = IdentityStore(pool)
    telemetry.watch(feed_store)  # the other services' refusals count too
    feed = asyncio.create_task(AuditFeed(redis, feed_store).run(), name="audit-feed")
    await run_service([SERVICE], register(app), settings, verifier=local_verifier(app, settings),
                      health_checks={"postgres": postgres_check(pool)},
                      on_close=[pool.close, redis.aclose, lambda: stop_task(refresher),
                                lambda: stop_task(feed)],
                      collectors=[telemetry.registry])


async def rotate_now(settings: IdentitySettings) -> str | None:
    pool = await _open(settings)
    try:
        app, keyring = build_app(pool, settings)
        await keyring.reload()
        return await app.rotate_keys(Actor(subject="system:rotate-keys"))
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    settings = IdentitySettings()
    if args[:1] == ["rotate-keys"]:
        kid = asyncio.run(rotate_now(settings))
        sys.stdout.write(f"{kid}\n")
        return
    run(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
