"""The slow exchange leg against ingestion's real ccxt client: a page whose connection the
fault proxy drops in the middle of the body is retried (ccxt calls it a plain
ExchangeError; it is a network failure), and the page is whole in the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from testkit import eventually
from usdcarb.ingestion.exchanges import ExchangeClient, RetryPolicy, spec_of
from usdcarb.replay.data import load_catalog
from usdcarb.replay.server import ReplayServer
from usdcarb.soak.faultproxy import FaultProxy, LegFaults

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "services/usdcarb/replay/samples"
SINCE_MS = 1678406400000  # 2023-03-10, inside the committed samples


@pytest.fixture
async def leg() -> AsyncIterator[FaultProxy]:
    replay = await ReplayServer(load_catalog(SAMPLES)).start()
    proxy = FaultProxy(("127.0.0.1", replay.port), seed=3)
    await proxy.start()
    yield proxy
    await proxy.stop()
    await replay.stop()


async def test_a_page_cut_short_by_a_dropped_connection_is_fetched_again(
        leg: FaultProxy) -> None:
    client = ExchangeClient(spec_of("binance"), replay_url=f"http://127.0.0.1:{leg.port}",
                            retry=RetryPolicy(attempts=4, base_delay_s=0.05, max_delay_s=0.2))
    try:
        whole, _ = await client.fetch_page("BTC/USDT", "1m", SINCE_MS, 1000)
        # A slow leg, and the connection dropped while the next page is on the wire.
        leg.set_faults(LegFaults(bandwidth_bps=40_000))

        async def drop_mid_body() -> int:
            await eventually(lambda: leg.stats.bytes_down > before, within_s=30, interval=0.01)
            leg.set_faults(LegFaults())
            return leg.reset_all()

        before = leg.stats.bytes_down
        dropper = asyncio.create_task(drop_mid_body())
        rows, retries = await asyncio.wait_for(
            client.fetch_page("BTC/USDT", "1m", SINCE_MS, 1000), 60)
        assert await dropper == 1
    finally:
        await client.close()
    assert retries >= 1 and rows == whole and len(rows) == 1000
