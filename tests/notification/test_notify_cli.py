"""``usdcarb notify`` against a running notification server."""

from __future__ import annotations

import asyncio
import io

import pytest

from notification.conftest import Env
from notification.nt_helpers import caller
from usdcarb.notification.cli import parse_args, run

pytestmark = pytest.mark.integration


async def test_notify_cli_manages_channels_and_watches_events(env: Env) -> None:
    receiver = await env.receiver()
    _, server = await env.start_replica("cli")
    token = caller("users/alice")[0][1].removeprefix("Bearer ")

    async def notify(*argv: str) -> str:
        out = io.StringIO()
        assert await run(parse_args(["--gateway", server.address, "--token", token, *argv]),
                         out) == 0
        return out.getvalue()

    created = await notify("channels", "create-webhook", "--name", "ops", "--url", receiver.url,
                           "--secret", receiver.secrets[0])
    channel = created.split()[0]
    assert channel.startswith("channels/") and receiver.url in created
    assert channel in await notify("channels", "list")
    sub = (await notify("subscriptions", "create", "--channel", channel, "--types",
                        "gap-detected", "--min-severity", "warning")).strip()
    assert sub in await notify("subscriptions", "list", "--channel", channel)
    assert "DELIVERED" in await notify("channels", "test", channel)
    assert "DELIVERED" in await notify("deliveries", "list", channel, "--state", "delivered")

    out = io.StringIO()
    watch = asyncio.create_task(run(parse_args([
        "--gateway", server.address, "--token", token, "watch", "--types", "gap-detected",
        "--after", "0"]), out))
    await env.publish("EVENT_TYPE_GAP_DETECTED", subject="series/x", summary="3 bars missing",
                      severity="SEVERITY_WARNING")
    for _ in range(100):
        if "3 bars missing" in out.getvalue():
            break
        await asyncio.sleep(0.05)
    watch.cancel()
    assert "GAP_DETECTED" in out.getvalue() and "series/x" in out.getvalue()
