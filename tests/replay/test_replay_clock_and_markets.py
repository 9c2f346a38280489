"""The replay server answers each exchange's server-time endpoint with the replay clock
(ccxt's ``fetch_time`` reads the exchange's clock, not ours) and its market-list
endpoints with the recorded markets (ccxt's ``load_markets``), in its own format."""

from __future__ import annotations

from typing import Any

import pytest

from testkit import SHARED_DATA, require_shared_data
from usdcarb.ingestion.exchanges import create_exchange
from usdcarb.replay.data import Catalog, load_catalog
from usdcarb.replay.server import ReplayServer

pytestmark = pytest.mark.integration
CLOCK = 1678530912345  # 2023-03-11T10:35:12.345Z


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    require_shared_data(SHARED_DATA)
    return load_catalog(SHARED_DATA)


@pytest.fixture
async def server(catalog: Catalog) -> Any:
    async with ReplayServer(catalog, clock_ms=CLOCK) as srv:
        yield srv


@pytest.mark.parametrize(("exchange", "resolution_ms"), [
    ("binance", 1), ("coinbase", 1000), ("kraken", 1000), ("okx", 1), ("bybit", 1)])
async def test_fetch_time_reads_the_replay_clock(server: ReplayServer, exchange: str,
                                                 resolution_ms: int) -> None:
    ex = create_exchange(exchange, server.url)
    try:
        assert await ex.fetch_time() == CLOCK - CLOCK % resolution_ms
        server.clock_ms = CLOCK + 3_600_000
        assert await ex.fetch_time() == CLOCK + 3_600_000 - CLOCK % resolution_ms
    finally:
        await ex.close()


@pytest.mark.parametrize("exchange", ["binance", "coinbase", "kraken", "okx", "bybit"])
async def test_load_markets_lists_the_recorded_markets_in_the_exchange_format(
        server: ReplayServer, catalog: Catalog, exchange: str) -> None:
    ex = create_exchange(exchange, server.url, markets=False)
    try:
        markets = await ex.load_markets()
        recorded = {s.symbol for s in catalog if s.exchange == exchange}
        assert recorded and set(markets) == recorded
        for symbol, market in markets.items():
            assert market["spot"] and market["active"] is not False
            assert (market["base"], market["quote"]) == tuple(symbol.split("/"))
    finally:
        await ex.close()
