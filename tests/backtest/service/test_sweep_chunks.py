"""Sweeps scale out: a grid split into chunks that any replica's slots take gives the
same points, bit for bit, as one worker running it whole, and both replicas did part."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf import json_format

from backtest.service.bt_helpers import START_MS, caller, config_json
from backtest.service.conftest import BARS
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

pytestmark = pytest.mark.integration

ENTRY = [float(x) for x in range(5, 45)]          # 40 values
EXIT = [0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 4.75, 4.9]   # 8 values: 320 points


async def _sweep(env: Any, version: str) -> pb.Sweep:
    sweep = await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
        strategy_version=version,
        config=json_format.ParseDict(config_json(START_MS, START_MS + BARS * 60_000),
                                     pb.BacktestConfig()),
        axes=[pb.ParameterAxis(path="entryBps", values=ENTRY),
              pb.ParameterAxis(path="exitBps", values=EXIT)])), metadata=caller())
    last = None
    async for event in env.backtest.WatchSweep(pb.WatchSweepRequest(name=sweep.name),
                                               metadata=caller()):
        last = event
    assert last is not None and last.outcome.result == common_pb2.Outcome.RESULT_OK, last
    got = await env.backtest.GetSweep(pb.GetSweepRequest(name=sweep.name))
    assert got.state == common_pb2.JOB_STATE_SUCCEEDED
    return got


async def test_a_chunked_sweep_on_two_replicas_equals_one_worker_bit_for_bit(env: Any) -> None:
    version = await env.version(entryBps=45, exitBps=0.25)
    await env.components.runner.stop()
    solo, _ = await env.start_replica("solo", worker_processes=1, sweep_chunk_points=0)
    await asyncio.wait_for(solo.runner.ready.wait(), 300)
    whole = await _sweep(env, version)
    await solo.runner.stop()
    r1, _ = await env.start_replica("r1", worker_processes=1, sweep_chunk_points=20)
    r2, _ = await env.start_replica("r2", worker_processes=1, sweep_chunk_points=20)
    await asyncio.wait_for(asyncio.gather(r1.runner.ready.wait(), r2.runner.ready.wait()), 300)
    chunked = await _sweep(env, version)
    assert len(whole.points) == len(chunked.points) == len(ENTRY) * len(EXIT)
    # Same points, same ranking, every figure bit for bit (protobuf equality of doubles).
    assert list(chunked.points) == list(whole.points)
    job = chunked.name.split("/")[1]
    by = await env.redis.hgetall(f"{env.settings.redis_prefix}:chunks:{job}:1")
    workers = {v.decode() for k, v in by.items() if k.startswith(b"by:")}
    assert len([k for k in by if k.startswith(b"by:")]) == 16      # 320 / 20 spans
    assert {w.rsplit("-", 1)[0] for w in workers} == {"r1", "r2"}, workers
