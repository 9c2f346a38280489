"""Sane inputs: a range mostly without data is refused with each series' coverage, and
numeric knobs outside their documented bounds are INVALID_ARGUMENT, before any job."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backtest.service.bt_helpers import START_MS, caller, config_json, venue_configs
from backtest.service.conftest import BARS
from usdcarb.v1 import backtest_pb2 as pb

pytestmark = pytest.mark.integration

END_MS = START_MS + BARS * 60_000
YEAR_MS = 365 * 86_400_000
VERDICTS_DDL = (Path(__file__).resolve().parents[3] / "services/usdcarb/validation/migrations"
                / "0003_series_verdicts.sql").read_text()


async def _refused(env: Any, version: str, cfg: dict[str, Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.backtest.CreateBacktest(pb.CreateBacktestRequest(backtest=pb.Backtest(
            strategy_version=version, config=json_format.ParseDict(cfg, pb.BacktestConfig()))),
            metadata=caller())
    return err.value


def _detail(err: grpc.aio.AioRpcError, kind: Any) -> Any:
    status = rpc_status.from_call(err)
    assert status is not None
    for d in status.details:
        if d.Is(kind.DESCRIPTOR):
            out = kind()
            d.Unpack(out)
            return out
    raise AssertionError(f"no {kind.DESCRIPTOR.name} in {status}")


async def test_a_range_mostly_without_data_is_refused_with_its_coverage(env: Any) -> None:
    version = await env.version()
    # 10 years over ~2 days of bars: refused, naming both series and their coverage.
    err = await _refused(env, version, config_json(START_MS, START_MS + 10 * YEAR_MS))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = _detail(err, error_details_pb2.ErrorInfo)
    assert info.reason == "RANGE_MOSTLY_EMPTY"
    pf = _detail(err, error_details_pb2.PreconditionFailure)
    assert {v.subject for v in pf.violations} == {"venuea:USDC/USDT:1m", "venueb:USDC/USDT:1m"}
    assert all(v.type == "RANGE_COVERAGE" and "got 0.06%" in v.description
               for v in pf.violations), pf
    assert await env.pool.fetchval("SELECT count(*) FROM backtests") == 0
    # Twice the data's span is still half covered: accepted.
    ok = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(backtest=pb.Backtest(
        strategy_version=version, config=json_format.ParseDict(
            config_json(START_MS, START_MS + 2 * (END_MS - START_MS) - 120_000),
            pb.BacktestConfig()))), metadata=caller())
    assert ok.name.startswith("backtests/")


@pytest.mark.parametrize(("overrides", "field"), [
    ({"periodsPerYear": 0.5}, "config.periods_per_year"),
    ({"periodsPerYear": 600_000}, "config.periods_per_year"),
    ({"venues": venue_configs(latencyBars=10_001)}, "config.venues[0].latency_bars"),
    ({"venues": venue_configs(takerFeeBps=1_500)}, "config.venues[0].taker_fee_bps"),
    ({"venues": venue_configs(slippage={"fixedBps": 2_000})},
     "config.venues[0].slippage.fixed_bps"),
    ({"venues": venue_configs(initialBalances=[{"asset": "USDT", "amount": 1e16}])},
     "config.venues[0].initial_balances[0].amount"),
])
async def test_knobs_outside_their_bounds_are_invalid_argument(
        env: Any, overrides: dict[str, Any], field: str) -> None:
    version = await env.version()
    err = await _refused(env, version, config_json(START_MS, END_MS, **overrides))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field: v.description for v in
              _detail(err, error_details_pb2.BadRequest).field_violations}
    assert f"backtest.{field}" in fields, fields
    assert fields[f"backtest.{field}"].startswith("expected "), fields


async def test_a_leg_over_a_stale_span_is_refused_naming_it_unless_overridden(env: Any) -> None:
    """Issue 15 through CreateBacktest: validation's verdicts (here a STALE span on one leg,
    as validation stores it) refuse the run with the span named; the recorded override
    lets a researcher run it anyway."""
    schema = await env.market_pool.fetchval("SELECT current_schema()")
    table = f"{schema}.series_verdicts"
    async with env.market_pool.acquire() as conn:
        await conn.execute(VERDICTS_DDL)  # validation's own table, in this test's schema
        await conn.execute(
            f"""INSERT INTO {table} (exchange, symbol, timeframe, verdict, start_time,
                   end_time, bars, reason)
                VALUES ('venueb', 'USDC/USDT', '1m', 'SERIES_VERDICT_KIND_STALE', to_timestamp($1 / 1000.0),
                        to_timestamp($2 / 1000.0), 900, 'flat price, no volume')""",
            START_MS + 600_000, START_MS + 600_000 + 900 * 60_000)
    app = env.components.app
    app.settings = dataclasses.replace(app.settings, verdict_table=table)
    version = await env.version()
    cfg = config_json(START_MS, END_MS)
    err = await _refused(env, version, cfg)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _detail(err, error_details_pb2.ErrorInfo).reason == "UNUSABLE_MARKET_DATA"
    (violation,) = _detail(err, error_details_pb2.PreconditionFailure).violations
    assert violation.subject == "venueb:USDC/USDT:1m" and "STALE" in violation.type + \
        violation.description, violation
    assert await env.pool.fetchval("SELECT count(*) FROM backtests") == 0
    ok = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(backtest=pb.Backtest(
        strategy_version=version, config=json_format.ParseDict(
            {**cfg, "allowUnusableData": True}, pb.BacktestConfig()))), metadata=caller())
    assert ok.name.startswith("backtests/")
