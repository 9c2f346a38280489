"""The replay server answers each exchange's server-time endpoint, in its own format,
with the replay clock: ccxt's ``fetch_time`` reads the exchange's clock, not ours."""

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
