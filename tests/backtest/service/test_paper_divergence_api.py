"""GetPaperDivergence through the backtest service (issue 18): a paper run whose bars all
arrived on time shows no differing fill and the same PnL as its backtest; its bound is
kept; bad names, unknown runs and bad bounds are refused with google.rpc details."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_status import rpc_status

from backtest.service.bt_helpers import START_MS, caller, config_json
from backtest.service.test_paper_service import TRADER, deploy
from testkit import eventually
from usdcarb.platform.events import STREAM, DomainEvent
from usdcarb.v1 import backtest_pb2 as pb

pytestmark = pytest.mark.integration

FIRST = 2700   # the run starts 300 bars before the end of the stored bars


def _details(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    return [d.type_url.rsplit(".", 1)[-1] for d in status.details] if status else []


async def test_paper_divergence_of_a_run_on_time(env: Any) -> None:
    dep = await deploy(env)
    name = f"{dep}/paperRun"
    start_ms = START_MS + FIRST * 60_000
    cfg = json_format.ParseDict(config_json(start_ms, start_ms + 60_000), pb.BacktestConfig())
    cfg.range.ClearField("end_time")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.backtest.StartPaperRun(pb.StartPaperRunRequest(
            name=name, config=cfg, max_divergence=-1.0), metadata=TRADER)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_divergence" in (err.value.details() or "")
    assert "BadRequest" in _details(err.value)
    await env.backtest.StartPaperRun(pb.StartPaperRunRequest(
        name=name, config=cfg, max_divergence=250.0), metadata=TRADER)

    async def ran() -> pb.PaperRun | None:
        got = await env.backtest.GetPaperRun(pb.GetPaperRunRequest(name=name),
                                             metadata=caller())
        return got if got.bars >= 250 else None

    await eventually(ran, within_s=120)
    report = await env.backtest.GetPaperDivergence(pb.GetPaperDivergenceRequest(
        name=f"{dep}/paperDivergence"), metadata=caller())
    assert report.bars >= 250 and report.name == f"{dep}/paperDivergence"
    assert report.differing_fills == 0 and not report.differences
    assert report.paper_fills == report.backtest_fills > 0
    assert report.paper_pnl == report.backtest_pnl and report.pnl_difference == 0
    assert report.paper_equity == report.backtest_equity
    assert list(report.paper_equity_curve) == list(report.backtest_equity_curve)
    assert len(report.time_ms) == report.bars and report.time_ms[0] >= start_ms
    assert report.gap_bars > 0 and report.late_bars == 0   # synthetic gaps, in the store
    assert report.max_divergence == 250.0 and not report.diverged

    # The replica following the run compares it with its backtest (its bound is kept):
    # within the bound, so no DEPLOYMENT_DIVERGED event.
    async def checked() -> Any:
        row = await env.pool.fetchrow("SELECT * FROM paper_tracking WHERE deployment = $1",
                                      dep)
        return row if row is not None and row["checked_bars"] > 0 else None

    row = await eventually(checked, within_s=60)
    assert row["max_divergence"] == 250.0 and not row["diverged"] and row["difference"] == 0
    published = [DomainEvent.from_fields(f) for _, f in await env.redis.xrange(STREAM)]
    assert not [e for e in published if e.type == "EVENT_TYPE_DEPLOYMENT_DIVERGED"
                and e.subject == name]

    for bad, code in (("strategies/x/paperDivergence", grpc.StatusCode.INVALID_ARGUMENT),
                      (f"{dep}x/paperDivergence", grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await env.backtest.GetPaperDivergence(pb.GetPaperDivergenceRequest(name=bad),
                                                  metadata=caller())
        assert err.value.code() == code
        assert _details(err.value)
