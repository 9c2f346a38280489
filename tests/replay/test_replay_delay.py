"""The replay server's delay switch: one exchange serves only the bars closed by the
replay clock minus the delay (its bars arrive late), the others and its server time are
unchanged; set and cleared through /_replay/faults as a test driving a stack does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from testkit import SHARED_DATA, require_shared_data
from usdcarb.ingestion.exchanges import create_exchange
from usdcarb.replay.data import Catalog, load_catalog
from usdcarb.replay.server import ReplayServer

pytestmark = pytest.mark.integration
CLOCK = 1678406400000 + 30 * 60_000  # 2023-03-10T00:30Z


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    require_shared_data(SHARED_DATA)
    return load_catalog(SHARED_DATA)


async def last_bar(server: ReplayServer, exchange: str) -> int:
    ex = create_exchange(exchange, server.url)
    try:
        rows: list[Any] = await ex.fetch_ohlcv("BTC/USDC", "1m", CLOCK - 20 * 60_000, 100)
        assert await ex.fetch_time() == server.clock_ms   # the replay clock, not delayed
        return int(rows[-1][0])
    finally:
        await ex.close()


async def test_a_delayed_exchange_serves_its_bars_late(catalog: Catalog) -> None:
    async with ReplayServer(catalog, clock_ms=CLOCK) as server:
        assert await last_bar(server, "bybit") == CLOCK - 60_000
        reply = await server.handle("POST", "/_replay/faults", json.dumps(
            {"exchange": "bybit", "delay_ms": 5 * 60_000}).encode())
        assert reply.status == 200 and json.loads(reply.body)["delay_ms"] == 300_000
        assert await last_bar(server, "bybit") == CLOCK - 6 * 60_000
        assert await last_bar(server, "binance") == CLOCK - 60_000   # only bybit is late
        server.clock_ms = CLOCK + 60_000
        assert await last_bar(server, "bybit") == CLOCK - 5 * 60_000
        server.clock_ms = CLOCK
        reply = await server.handle("POST", "/_replay/faults", b"{}")
        assert json.loads(reply.body)["delay_ms"] == 0
        assert await last_bar(server, "bybit") == CLOCK - 60_000
