"""The replay server answers ccxt's real requests in each exchange's own format."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pytest

from testkit import SHARED_DATA, require_shared_data
from usdcarb.ingestion.exchanges import create_exchange
from usdcarb.replay.data import OKX_STANDIN, Catalog, load_catalog, read_sample
from usdcarb.replay.server import ReplayServer

pytestmark = pytest.mark.integration

DATA = SHARED_DATA
SAMPLES = Path(__file__).resolve().parents[2] / "services" / "usdcarb" / "replay" / "samples"
SINCE = 1678406400000  # 2023-03-10T00:00Z


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    require_shared_data(DATA)
    return load_catalog(DATA)


@pytest.fixture
async def server(catalog: Catalog) -> Any:
    async with ReplayServer(catalog) as srv:
        yield srv


async def body(server: ReplayServer, target: str) -> tuple[int, Any, dict[str, str]]:
    reply = await server.handle("GET", target)
    return reply.status, json.loads(reply.body), dict(reply.headers)


async def test_parameters_are_parsed_not_matched_and_limits_hold(server: ReplayServer) -> None:
    a = await body(server, f"/api.binance.com/api/v3/klines?symbol=USDCUSDT&interval=1m"
                           f"&startTime={SINCE}&limit=5")
    b = await body(server, f"/api.binance.com/api/v3/klines?limit=5&startTime={SINCE}"
                           f"&interval=1m&symbol=USDCUSDT")
    assert a == b and a[0] == 200 and [r[0] for r in a[1]] == [SINCE + i * 60_000
                                                              for i in range(5)]
    status, err, _ = await body(server, "/api.binance.com/api/v3/klines?symbol=USDCUSDT"
                                        "&interval=1m&limit=1001")
    assert status == 400 and err["code"] == -1100
    status, err, _ = await body(server, f"/api.coinbase.com/api/v3/brokerage/market/products/"
                                        f"BTC-USD/candles?granularity=ONE_MINUTE"
                                        f"&start={SINCE // 1000}&end={SINCE // 1000 + 400 * 60}")
    assert status == 400 and "350" in err["message"]


async def test_newest_first_where_the_exchange_does_that(server: ReplayServer) -> None:
    _, cb, _ = await body(server, "/api.coinbase.com/api/v3/brokerage/market/products/USDT-USD/"
                                  f"candles?granularity=ONE_MINUTE&start={SINCE // 1000}"
                                  f"&end={SINCE // 1000 + 300}")
    starts = [int(c["start"]) for c in cb["candles"]]
    assert starts == sorted(starts, reverse=True) and min(starts) == SINCE // 1000
    _, okx, _ = await body(server, "/www.okx.com/api/v5/market/history-candles?instId=USDC-USDT"
                                   f"&bar=1m&limit=3&before={SINCE - 1}&after={SINCE + 600_000}")
    assert [int(r[0]) for r in okx["data"]] == [SINCE + 540_000, SINCE + 480_000,
                                                 SINCE + 420_000]  # the newest 3 in range
    _, bybit, _ = await body(server, "/api.bybit.com/v5/market/kline?category=spot&symbol="
                                     f"BTCUSDC&interval=1&start={SINCE}&limit=3")
    assert [int(r[0]) for r in bybit["result"]["list"]] == [SINCE + 120_000, SINCE + 60_000,
                                                             SINCE]


async def test_kraken_serves_only_the_latest_720_bars_of_its_clock(server: ReplayServer) -> None:
    server.clock_ms = SINCE + 24 * 3_600_000
    _, all_, _ = await body(server, "/api.kraken.com/0/public/OHLC?pair=XXBTZUSD&interval=1")
    rows = all_["result"]["XXBTZUSD"]
    assert 700 <= len(rows) <= 720
    assert rows[0][0] * 1000 >= server.clock_ms - 720 * 60_000
    assert rows[-1][0] * 1000 + 60_000 <= server.clock_ms and all_["result"]["last"] == rows[-1][0]
    _, old, _ = await body(server, f"/api.kraken.com/0/public/OHLC?pair=XXBTZUSD&interval=1"
                                    f"&since={SINCE // 1000}")
    assert old["result"]["XXBTZUSD"] == rows  # older history is simply not there


@pytest.mark.parametrize(("exchange", "symbol", "error"), [
    ("binance", "USDC/USDT", "DDoSProtection"), ("coinbase", "BTC/USD", "RateLimitExceeded"),
    ("kraken", "BTC/USD", "DDoSProtection"), ("okx", "USDC/USDT", "RateLimitExceeded"),
    ("bybit", "BTC/USDC", "RateLimitExceeded"),
])
async def test_429_and_5xx_reach_ccxt_as_its_own_retryable_errors(
        server: ReplayServer, exchange: str, symbol: str, error: str) -> None:
    ex = create_exchange(exchange, server.url)
    try:
        server.set_faults(rate_limit=1, server_errors=1)
        with pytest.raises(ccxt_async.NetworkError) as first:
            await ex.fetch_ohlcv(symbol, "1m", SINCE, 10)
        assert type(first.value).__name__ == error
        with pytest.raises(ccxt_async.ExchangeNotAvailable):
            await ex.fetch_ohlcv(symbol, "1m", SINCE, 10)
        since = SINCE if exchange != "kraken" else None
        assert await ex.fetch_ohlcv(symbol, "1m", since, 10)
        assert server.stats.statuses[exchange] == {429: 1, 503: 1, 200: 1}
    finally:
        await ex.close()


async def test_binance_429_carries_retry_after(server: ReplayServer) -> None:
    server.set_faults(rate_limit=1)
    reply = await server.handle("GET", "/api.binance.com/api/v3/klines?symbol=BTCUSDC&interval=1m")
    assert reply.status == 429 and reply.headers["Retry-After"] == "1"


def _http(url: str, data: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 method="GET" if data is None else "POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


async def test_admin_endpoints_over_http(server: ReplayServer) -> None:
    catalog = await asyncio.to_thread(_http, server.url + "/_replay/catalog")
    okx = [s for s in catalog["series"] if s["exchange"] == "okx"]
    assert okx and all(s["note"] == OKX_STANDIN for s in okx)
    faults = await asyncio.to_thread(_http, server.url + "/_replay/faults",
                                     {"server_errors": 2, "exchange": "bybit"})
    assert faults["server_errors"] == 2 and server.faults.exchange == "bybit"
    await asyncio.to_thread(_http, server.url + "/_replay/clock", {"now_ms": SINCE})
    assert server.clock_ms == SINCE
    rows = await asyncio.to_thread(
        _http, server.url + "/api.binance.com/api/v3/klines?symbol=BTCUSDC&interval=1m&limit=2")
    assert rows[-1][0] == SINCE - 60_000  # the last bar closed by the replay clock
    stats = await asyncio.to_thread(_http, server.url + "/_replay/stats")
    assert stats["requests"]["binance"] == 1
    await asyncio.to_thread(_http, server.url + "/_replay/reset", {})
    assert server.faults.server_errors == 0 and not server.stats.requests


def test_committed_samples_match_the_recordings(catalog: Catalog) -> None:
    samples = sorted(SAMPLES.glob("*.csv.gz"))
    assert samples, "expected demo samples under replay/samples"
    for path in samples:
        sample = read_sample(path)
        source = catalog.get(sample.exchange, sample.symbol, sample.timeframe)
        assert source is not None
        lo, hi = source.window(int(sample.ts_ms[0]), int(sample.ts_ms[-1]) + 1)
        assert (source.ts_ms[lo:hi] == sample.ts_ms).all()
        assert (source.close[lo:hi] == sample.close).all()
        assert (source.volume[lo:hi] == sample.volume).all()
