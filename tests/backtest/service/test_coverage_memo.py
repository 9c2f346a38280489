"""A range found covered is not looked up again for a while; a refusal always is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from usdcarb.backtest.app import AppSettings, BacktestApp

START = datetime(2025, 1, 6, tzinfo=UTC)
LEGS = [("venuea", "USDC/USDT"), ("venueb", "USDC/USDT")]


class CountingPool:
    """Answers range_coverage's first/last-bar queries with fixed bars, counting them."""

    def __init__(self, first: datetime, last: datetime) -> None:
        self.first, self.last, self.queries = first, last, 0

    async def fetchval(self, sql: str, *args: Any) -> datetime:
        self.queries += 1
        return self.first if "min(ts)" in sql else self.last


def app(pool: CountingPool, memo_s: float) -> BacktestApp:
    return BacktestApp(store=SimpleNamespace(pool=pool), bus=None, queue=None,  # type: ignore[arg-type]
                       lanes=None, strategy=None,  # type: ignore[arg-type]
                       settings=AppSettings(coverage_memo_s=memo_s))


def spec(days: int) -> Any:
    return SimpleNamespace(timeframe="1m", timeframe_ms=60_000, start=START,
                           end=START + timedelta(days=days))


@pytest.mark.unit
async def test_a_covered_range_is_remembered_and_a_thin_one_looked_up_every_time() -> None:
    covered = CountingPool(START, START + timedelta(days=10) - timedelta(minutes=1))
    a = app(covered, 60.0)
    assert await a._coverage(LEGS, spec(10)) == ([], [])
    asked = covered.queries
    assert asked > 0
    assert await a._coverage(LEGS, spec(10)) == ([], [])
    assert covered.queries == asked                 # remembered
    assert await a._coverage(LEGS, spec(9)) == ([], [])
    assert covered.queries == 2 * asked             # another range: looked up

    thin = CountingPool(START, START + timedelta(days=1))   # 1 day of a 10-day range
    b = app(thin, 60.0)
    for _ in range(2):
        _, refused = await b._coverage(LEGS, spec(10))
        assert [label for _, label, _ in refused] == ["venuea:USDC/USDT:1m",
                                                      "venueb:USDC/USDT:1m"]
    assert thin.queries == 2 * asked                # a refusal is never remembered

    never = CountingPool(START, START + timedelta(days=10) - timedelta(minutes=1))
    c = app(never, 0.0)
    for _ in range(2):
        assert await c._coverage(LEGS, spec(10)) == ([], [])
    assert never.queries == 2 * asked               # coverage_memo_s 0: always asked
