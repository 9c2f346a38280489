"""Ownership of strategies, versions and deployments over gRPC against real PostgreSQL.

Alice (trader) owns; Bob (trader too: the role allows every call) is refused with
NOT_OWNER and changes nothing; an admin and the backtest service principal pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from testkit import eventually
from usdcarb.platform.testing import authed_channel, bearer, start_in_process
from usdcarb.strategy.main import SERVICE, build
from usdcarb.v1 import strategy_pb2 as pb
from usdcarb.v1 import strategy_pb2_grpc

pytestmark = pytest.mark.integration

ALICE, BOB, ADMIN = "users/alice", "users/bob", "users/root"
SPREAD: dict[str, Any] = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken",
                          "entryBps": 15, "exitBps": 3, "quantity": 10000}


def as_(subject: str, *roles: str) -> tuple[tuple[str, str], ...]:
    """Metadata with a verified token for ``subject`` (trader unless roles are given)."""
    return bearer(subject, roles or ("trader",))


def admin() -> tuple[tuple[str, str], ...]:
    return as_(ADMIN, "admin")


@pytest.fixture
async def env(service_pool: Any) -> AsyncIterator[tuple[Any, Any]]:
    pool = await service_pool("strategy")
    async with await start_in_process([SERVICE], build(pool)) as server:
        async with authed_channel(server.address, ALICE) as channel:
            yield strategy_pb2_grpc.StrategyServiceStub(channel), pool


def not_owner(err: grpc.aio.AioRpcError, resource: str, caller: str = BOB) -> None:
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    status = rpc_status.from_call(err)
    assert status is not None
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    assert [(i.reason, dict(i.metadata)) for i in infos] == [
        ("NOT_OWNER", {"resource": resource})]
    # Names the resource and the caller, never the owner.
    assert err.details() == f"expected the owner of {resource} or role admin, got {caller!r}"


async def refused(call: Any, resource: str, caller: str = BOB) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    not_owner(info.value, resource, caller)


async def seed(stub: Any, sid: str = "sone") -> tuple[pb.Strategy, pb.StrategyVersion]:
    """Alice's strategy with one APPROVED version."""
    s = await stub.CreateStrategy(pb.CreateStrategyRequest(
        strategy_id=sid, strategy=pb.Strategy(
            display_name="spread", kind=pb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)))
    v = await stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
        parent=s.name, version=pb.StrategyVersion(parameters=json_format.ParseDict(
            {"crossExchangeSpread": SPREAD}, pb.StrategyParameters()))))
    for state in (pb.VERSION_STATE_BACKTESTED, pb.VERSION_STATE_APPROVED):
        v = await stub.TransitionStrategyVersion(
            pb.TransitionStrategyVersionRequest(name=v.name, state=state))
    return s, v


async def test_creator_owns_strategy_version_and_deployment(env: Any) -> None:
    stub, _ = env
    s, v = await seed(stub)
    d = await stub.CreateDeployment(pb.CreateDeploymentRequest(
        parent=s.name, deployment=pb.Deployment(
            version=v.name, environment=pb.DEPLOYMENT_ENVIRONMENT_PAPER)))
    assert (s.owner, v.owner, d.owner) == (ALICE, ALICE, ALICE)
    listed = await stub.ListStrategies(pb.ListStrategiesRequest(), metadata=as_(BOB, "viewer"))
    assert [x.owner for x in listed.strategies] == [ALICE]  # readable by the team


async def test_other_user_cannot_write_and_nothing_changes(env: Any) -> None:
    stub, pool = env
    s, v = await seed(stub)
    d = await stub.CreateDeployment(pb.CreateDeploymentRequest(
        parent=s.name, deployment=pb.Deployment(
            version=v.name, environment=pb.DEPLOYMENT_ENVIRONMENT_PAPER)))
    before = await pool.fetch("SELECT * FROM strategies ORDER BY id")
    versions_before = await pool.fetch("SELECT * FROM versions ORDER BY version_id")
    deployments_before = await pool.fetch("SELECT * FROM deployments ORDER BY id")
    bob = as_(BOB)
    await refused(stub.UpdateStrategy(pb.UpdateStrategyRequest(
        strategy=pb.Strategy(name=s.name, display_name="mine now"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"])), metadata=bob), s.name)
    await refused(stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
        parent=s.name, version=pb.StrategyVersion(parameters=json_format.ParseDict(
            {"crossExchangeSpread": {**SPREAD, "entryBps": 9}}, pb.StrategyParameters()))),
        metadata=bob), s.name)
    await refused(stub.TransitionStrategyVersion(pb.TransitionStrategyVersionRequest(
        name=v.name, state=pb.VERSION_STATE_RETIRED), metadata=bob), v.name)
    await refused(stub.CreateDeployment(pb.CreateDeploymentRequest(
        parent=s.name, deployment=pb.Deployment(
            version=v.name, environment=pb.DEPLOYMENT_ENVIRONMENT_PAPER)), metadata=bob), v.name)
    await refused(stub.StopDeployment(pb.StopDeploymentRequest(name=d.name), metadata=bob),
                  d.name)
    await refused(stub.DeleteStrategy(pb.DeleteStrategyRequest(name=s.name), metadata=bob),
                  s.name)
    assert await pool.fetch("SELECT * FROM strategies ORDER BY id") == before
    assert await pool.fetch("SELECT * FROM versions ORDER BY version_id") == versions_before
    assert await pool.fetch("SELECT * FROM deployments ORDER BY id") == deployments_before
    assert await pool.fetchval("SELECT count(*) FROM version_transitions "
                               "WHERE actor = $1", BOB) == 0


async def test_admin_may_write_what_others_own(env: Any) -> None:
    stub, pool = env
    s, v = await seed(stub)
    renamed = await stub.UpdateStrategy(pb.UpdateStrategyRequest(
        strategy=pb.Strategy(name=s.name, display_name="by admin"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"])), metadata=admin())
    assert renamed.display_name == "by admin" and renamed.owner == ALICE  # owner stays
    d = await stub.CreateDeployment(pb.CreateDeploymentRequest(
        parent=s.name, deployment=pb.Deployment(
            version=v.name, environment=pb.DEPLOYMENT_ENVIRONMENT_PAPER)), metadata=admin())
    assert d.owner == ADMIN
    stopped = await stub.StopDeployment(pb.StopDeploymentRequest(name=d.name), metadata=admin())
    assert stopped.state == pb.DEPLOYMENT_STATE_STOPPED
    await stub.DeleteStrategy(pb.DeleteStrategyRequest(name=s.name), metadata=admin())
    assert await pool.fetchval("SELECT count(*) FROM strategies") == 0


async def test_backtest_service_moves_a_version_it_does_not_own(env: Any) -> None:
    stub, _ = env
    s = await stub.CreateStrategy(pb.CreateStrategyRequest(
        strategy_id="stwo", strategy=pb.Strategy(
            display_name="spread", kind=pb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)))
    v = await stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
        parent=s.name, version=pb.StrategyVersion(parameters=json_format.ParseDict(
            {"crossExchangeSpread": SPREAD}, pb.StrategyParameters()))))
    moved = await stub.TransitionStrategyVersion(pb.TransitionStrategyVersionRequest(
        name=v.name, state=pb.VERSION_STATE_BACKTESTED, reason="backtests/b1 succeeded"),
        metadata=bearer("service:backtest", ()))
    assert moved.state == pb.VERSION_STATE_BACKTESTED and moved.owner == ALICE
    # ...but only through the methods its service is granted.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DeleteStrategy(pb.DeleteStrategyRequest(name=s.name),
                                  metadata=bearer("service:backtest", ()))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_rows_from_before_owners_are_admin_only(env: Any) -> None:
    stub, pool = env
    s, _ = await seed(stub)
    await pool.execute("UPDATE strategies SET owner = '' WHERE id = 'sone'")  # a legacy row
    await refused(stub.UpdateStrategy(pb.UpdateStrategyRequest(
        strategy=pb.Strategy(name=s.name, display_name="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]))), s.name, ALICE)
    got = await stub.UpdateStrategy(pb.UpdateStrategyRequest(
        strategy=pb.Strategy(name=s.name, display_name="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"])), metadata=admin())
    assert got.display_name == "x" and got.owner == ""


async def test_list_strategies_by_owner(env: Any) -> None:
    stub, _ = env
    await seed(stub, "alices")
    await stub.CreateStrategy(pb.CreateStrategyRequest(
        strategy_id="bobs", strategy=pb.Strategy(
            display_name="bob's", kind=pb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)),
        metadata=as_(BOB))
    everyone = await stub.ListStrategies(pb.ListStrategiesRequest())
    assert {s.name for s in everyone.strategies} == {"strategies/alices", "strategies/bobs"}
    mine = await stub.ListStrategies(pb.ListStrategiesRequest(owner="users/me"))
    assert [s.name for s in mine.strategies] == ["strategies/alices"]
    bobs = await stub.ListStrategies(pb.ListStrategiesRequest(owner=BOB, page_size=1))
    assert [s.name for s in bobs.strategies] == ["strategies/bobs"]
    assert not bobs.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a token is bound to its filters
        page = await stub.ListStrategies(pb.ListStrategiesRequest(page_size=1))
        await stub.ListStrategies(pb.ListStrategiesRequest(
            page_size=1, owner="users/me", page_token=page.next_page_token))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _blocked_on_a_row_lock(pool: Any) -> bool:
    return bool(await pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype IN "
        "('transactionid', 'tuple')"))


async def test_the_owner_is_read_under_the_writes_row_lock(env: Any) -> None:
    """A change of owner committed while a write waits is what the write checks: no
    check-then-write race (the check does not run on a row read before the lock)."""
    stub, pool = env
    s, _ = await seed(stub, "raced")
    await pool.execute("UPDATE strategies SET owner = $1 WHERE id = 'raced'", BOB)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM strategies WHERE id = 'raced' FOR UPDATE")
        bobs_update = asyncio.ensure_future(stub.UpdateStrategy(pb.UpdateStrategyRequest(
            strategy=pb.Strategy(name=s.name, display_name="bob was here"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"])), metadata=as_(BOB)))
        await eventually(lambda: _blocked_on_a_row_lock(pool))
        assert not bobs_update.done()
        await conn.execute("UPDATE strategies SET owner = $1 WHERE id = 'raced'", ALICE)
        await tx.commit()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await bobs_update
    not_owner(info.value, s.name)
    assert await pool.fetchval("SELECT display_name FROM strategies WHERE id = 'raced'") == (
        "spread")
