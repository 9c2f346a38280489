"""The backtest's precondition on series verdicts, against verdicts the validation
service computed on real data: a stale leg and two legs that are one book are named
with their spans; real, independent legs pass."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from usdcarb.backtest.loading import verdict_violations
from usdcarb.v1 import validation_pb2 as pb

from .conftest import Env, real_frame
from .test_verdicts_service import FROZEN, MARCH, frozen, key

pytestmark = pytest.mark.integration


async def test_stale_and_aliased_legs_are_named_with_their_spans(env: Env) -> None:
    usd = real_frame("kraken_btcusd")
    await env.load("kraken", "BTC/USD", usd)
    await env.load("kraken", "BTC/USDC", usd)  # the planted alias
    await env.load("okx", "BTC/USD", frozen(real_frame("coinbase_btcusd"), *FROZEN))
    await env.load("binance", "BTC/USDC", real_frame("binance_btcusdc"))
    for exchange, symbol in (("kraken", "BTC/USDC"), ("kraken", "BTC/USD"), ("okx", "BTC/USD"),
                             ("binance", "BTC/USDC")):
        await env.stub.ValidateRange(pb.ValidateRangeRequest(series=key(exchange, symbol),
                                                             range=MARCH))
    table = f"{await env.quality.fetchval('SELECT current_schema()')}.series_verdicts"
    start, end = datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 3, 22, tzinfo=UTC)

    async def check(*legs: tuple[str, str], lo: datetime = start) -> list[tuple[str, str, str]]:
        return await verdict_violations(env.quality, list(legs), timeframe="1m", start=lo,
                                        end=end, table=table)

    one_book = await check(("kraken", "BTC/USDC"), ("kraken", "BTC/USD"))
    assert [(v[0], v[1]) for v in one_book] == [("ALIASED_LEGS", "kraken:BTC/USDC:1m")]
    assert "identical to the leg kraken:BTC/USD:1m (100.0% of traded bars)" in one_book[0][2]
    copy = await check(("kraken", "BTC/USDC"), ("binance", "BTC/USDC"))
    assert [(v[0], v[1]) for v in copy] == [("ALIASED_MARKET_DATA", "kraken:BTC/USDC:1m")]
    stale = await check(("okx", "BTC/USD"), ("binance", "BTC/USDC"))
    assert [(v[0], v[1]) for v in stale] == [("STALE_MARKET_DATA", "okx:BTC/USD:1m")]
    assert "from 2023-03-05T00:00:00+00:00 to 2023-03-08T00:00:00+00:00" in stale[0][2]
    # After the frozen days, or on real independent legs: nothing to refuse.
    assert await check(("okx", "BTC/USD"), lo=datetime(2023, 3, 9, tzinfo=UTC)) == []
    assert await check(("kraken", "BTC/USD"), ("binance", "BTC/USDC")) == []
    assert await verdict_violations(env.quality, [("kraken", "BTC/USD")], timeframe="1m",
                                    start=start, end=end, table="nowhere.series_verdicts") == []
