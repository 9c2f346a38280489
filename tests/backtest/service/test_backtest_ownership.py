"""Ownership of backtests and sweeps: only the owner or an admin cancels; nothing changes
after a refused cancel (real PostgreSQL, Redis, StrategyService and engine)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backtest.service.bt_helpers import START_MS, caller, config_json
from usdcarb.platform.testing import bearer
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

pytestmark = pytest.mark.integration

END_MS = START_MS + 3000 * 60_000


def config() -> pb.BacktestConfig:
    return json_format.ParseDict(config_json(START_MS, END_MS), pb.BacktestConfig())


async def refused(call: Any, resource: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    status = rpc_status.from_call(err)
    assert status is not None
    reasons = []
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            ei = error_details_pb2.ErrorInfo()
            d.Unpack(ei)
            reasons.append((ei.reason, dict(ei.metadata)))
    assert reasons == [("NOT_OWNER", {"resource": resource})]


async def test_only_owner_or_admin_cancels_backtests_and_sweeps(env: Any) -> None:
    version = await env.version()
    big = [float(x) for x in range(5, 405)]  # a long grid keeps the only worker busy
    sweep = await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
        strategy_version=version, config=config(),
        axes=[pb.ParameterAxis(path="crossExchangeSpread.entryBps", values=big),
              pb.ParameterAxis(path="exitBps", values=[0.5, 1, 2, 3, 4])])), metadata=caller())
    real = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(
        backtest=pb.Backtest(strategy_version=version, config=config())), metadata=caller())
    assert (sweep.owner, real.owner) == ("alice", "alice")
    # A job that stays QUEUED whatever the lanes do: a row no worker was ever told about.
    await env.pool.execute(
        "INSERT INTO backtests (id, strategy_version, config, creator, owner) "
        "VALUES ('bt-held', $1, '{}', 'alice', 'alice')", version)
    queued = await env.backtest.GetBacktest(pb.GetBacktestRequest(name="backtests/bt-held"))
    async for event in env.backtest.WatchSweep(pb.WatchSweepRequest(name=sweep.name),
                                               metadata=caller()):
        if event.progress.done > 0 and event.state == common_pb2.JOB_STATE_RUNNING:
            break
    bob = bearer("bob", ("analyst",))
    await refused(env.backtest.CancelBacktest(
        pb.CancelBacktestRequest(name=queued.name), metadata=bob), queued.name)
    await refused(env.backtest.CancelSweep(
        pb.CancelSweepRequest(name=sweep.name), metadata=bob), sweep.name)
    states = dict(await env.pool.fetch(
        "SELECT id, state FROM backtests UNION ALL SELECT id, state FROM sweeps"))
    assert states[queued.name.split("/")[1]] == "JOB_STATE_QUEUED"
    assert states[sweep.name.split("/")[1]] == "JOB_STATE_RUNNING"
    # Bob may still read them (research is readable by the team), and list his own.
    got = await env.backtest.GetSweep(pb.GetSweepRequest(name=sweep.name), metadata=bob)
    assert got.owner == "alice"
    for who, expected in ((bob, set()), (caller(), {queued.name, real.name})):
        listed = await env.backtest.ListBacktests(
            pb.ListBacktestsRequest(owner="users/me"), metadata=who)
        assert {b.name for b in listed.backtests} == expected
    listed_sweeps = await env.backtest.ListSweeps(pb.ListSweepsRequest(owner="alice"),
                                                  metadata=bob)
    assert [s.name for s in listed_sweeps.sweeps] == [sweep.name]
    admin = bearer("root", ("admin",))
    cancelled = await env.backtest.CancelBacktest(
        pb.CancelBacktestRequest(name=queued.name), metadata=admin)
    assert cancelled.state == common_pb2.JOB_STATE_CANCELLED and cancelled.owner == "alice"
    stopped = await env.backtest.CancelSweep(
        pb.CancelSweepRequest(name=sweep.name), metadata=caller())
    assert stopped.state == common_pb2.JOB_STATE_CANCELLED
    # A refused cancel of a finished job is still refused (no state is leaked as success).
    await refused(env.backtest.CancelBacktest(
        pb.CancelBacktestRequest(name=queued.name), metadata=bob), queued.name)
