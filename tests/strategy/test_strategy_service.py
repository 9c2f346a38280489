"""StrategyService over gRPC against real PostgreSQL (a schema per test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from usdcarb.platform.testing import authed_channel, bearer, start_in_process
from usdcarb.strategy.main import SERVICE, build
from usdcarb.v1 import strategy_pb2 as pb
from usdcarb.v1 import strategy_pb2_grpc

pytestmark = pytest.mark.integration

SPREAD: dict[str, Any] = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken",
                          "entryBps": 15, "exitBps": 3, "quantity": 10000}


def caller(sub: str) -> tuple[tuple[str, str], ...]:
    """Metadata with a verified analyst token for ``sub``."""
    return bearer(sub, ("analyst",))


@pytest.fixture
async def stub(service_pool: Any) -> AsyncIterator[strategy_pb2_grpc.StrategyServiceStub]:
    pool = await service_pool("strategy")
    async with await start_in_process([SERVICE], build(pool)) as server:
        async with authed_channel(server.address) as channel:
            yield strategy_pb2_grpc.StrategyServiceStub(channel)


def params(**overrides: Any) -> pb.StrategyParameters:
    return json_format.ParseDict(
        {"crossExchangeSpread": {**SPREAD, **overrides}}, pb.StrategyParameters()
    )


async def create(stub: Any, sid: str = "usdc-spread", *, as_: str = "", **kw: Any
                 ) -> pb.Strategy:
    """Create a strategy as ``as_`` (an analyst), else as the channel's own caller."""
    return await stub.CreateStrategy(
        pb.CreateStrategyRequest(
            strategy_id=sid,
            strategy=pb.Strategy(display_name="USDC spread",
                                 kind=pb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD, **kw)),
        metadata=caller(as_) if as_ else None)


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            return {v.field: v.description for v in br.field_violations}
    raise AssertionError("no BadRequest detail")


async def test_create_and_get_strategy_records_the_verified_caller(stub: Any) -> None:
    created = await create(stub, as_="alice", labels={"desk": "stables"})
    assert created.name == "strategies/usdc-spread"
    assert created.creator == "alice" and created.owner == "alice"
    got = await stub.GetStrategy(pb.GetStrategyRequest(name="strategies/usdc-spread"))
    assert got == created


async def test_versions_are_content_addressed_and_immutable(stub: Any) -> None:
    await create(stub)
    req = pb.CreateStrategyVersionRequest(
        parent="strategies/usdc-spread", version=pb.StrategyVersion(parameters=params()))
    v1 = await stub.CreateStrategyVersion(req)
    again = await stub.CreateStrategyVersion(req)
    assert again.name == v1.name and again.sequence == 1
    v2 = await stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
        parent="strategies/usdc-spread",
        version=pb.StrategyVersion(parameters=params(entryBps=10))))
    assert v2.sequence == 2 and v2.version_id != v1.version_id
    assert v1.version_id == v1.content_hash[:16]
    latest = await stub.GetStrategyVersion(
        pb.GetStrategyVersionRequest(name="strategies/usdc-spread/versions/latest"))
    assert latest.name == v2.name
    diff = await stub.DiffStrategyVersions(pb.DiffStrategyVersionsRequest(
        name=v1.name, other=v2.name))
    assert [(c.path, c.old_value.number_value, c.new_value.number_value)
            for c in diff.changes] == [("crossExchangeSpread.entryBps", 15.0, 10.0)]
    strategy = await stub.GetStrategy(pb.GetStrategyRequest(name="strategies/usdc-spread"))
    assert strategy.version_count == 2 and strategy.latest_version_id == v2.version_id


async def test_concurrent_identical_versions_create_one(stub: Any) -> None:
    await create(stub)
    req = pb.CreateStrategyVersionRequest(
        parent="strategies/usdc-spread", version=pb.StrategyVersion(parameters=params()))
    made = await asyncio.gather(*(stub.CreateStrategyVersion(req) for _ in range(8)))
    assert {v.name for v in made} == {made[0].name}
    listed = await stub.ListStrategyVersions(
        pb.ListStrategyVersionsRequest(parent="strategies/usdc-spread"))
    assert len(listed.versions) == 1


async def test_bad_parameters_are_invalid_argument_with_field_violations(stub: Any) -> None:
    await create(stub)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
            parent="strategies/usdc-spread",
            version=pb.StrategyVersion(parameters=params(entryBps=-5, venueB="binance"))))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    got = violations(err.value)
    assert got["version.parameters.crossExchangeSpread.entryBps"] == (
        "expected a number > 0, got -5.0")
    assert "version.parameters.crossExchangeSpread.venueB" in got
    listed = await stub.ListStrategyVersions(
        pb.ListStrategyVersionsRequest(parent="strategies/usdc-spread"))
    assert listed.versions == []  # nothing half-written


async def test_wrong_kind_parameters_and_bad_names_are_refused(stub: Any) -> None:
    await create(stub)
    peg = json_format.ParseDict({"pegReversion": {"venue": "kraken"}}, pb.StrategyParameters())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
            parent="strategies/usdc-spread", version=pb.StrategyVersion(parameters=peg)))
    assert "version.parameters" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetStrategy(pb.GetStrategyRequest(name="strategy/x"))
    assert violations(err.value) == {"name": "expected a resource name 'strategies/{id}', "
                                             "got 'strategy/x'"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetStrategy(pb.GetStrategyRequest(name="strategies/missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unspecified_kind_and_duplicate_id_are_refused(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateStrategy(pb.CreateStrategyRequest(
            strategy=pb.Strategy(display_name="x")))
    assert "strategy.kind" in violations(err.value)
    await create(stub)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(stub)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_request_id_makes_create_idempotent(stub: Any) -> None:
    req = pb.CreateStrategyRequest(
        strategy=pb.Strategy(display_name="x", kind=pb.STRATEGY_KIND_PEG_REVERSION),
        request_id="7f2c1e9a-retry")
    first = await stub.CreateStrategy(req)
    second = await stub.CreateStrategy(req)
    assert first.name == second.name
    listed = await stub.ListStrategies(pb.ListStrategiesRequest())
    assert [s.name for s in listed.strategies] == [first.name]


async def test_list_pages_through_every_strategy_once(stub: Any) -> None:
    for i in range(7):
        await create(stub, sid=f"s-{i:02d}")
    seen, token, pages = [], "", 0
    while True:
        page = await stub.ListStrategies(pb.ListStrategiesRequest(page_size=3, page_token=token))
        seen += [s.name for s in page.strategies]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and sorted(seen) == [f"strategies/s-{i:02d}" for i in range(7)]
    assert len(set(seen)) == 7
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListStrategies(pb.ListStrategiesRequest(page_token="garbage"))
    assert "page_token" in violations(err.value)


async def test_update_respects_mask_and_etag(stub: Any) -> None:
    created = await create(stub)
    updated = await stub.UpdateStrategy(pb.UpdateStrategyRequest(
        strategy=pb.Strategy(name=created.name, description="new", display_name="ignored"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"])))
    assert updated.description == "new" and updated.display_name == "USDC spread"
    assert updated.etag != created.etag
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateStrategy(pb.UpdateStrategyRequest(
            strategy=pb.Strategy(name=created.name, description="stale", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["description"])))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_lifecycle_and_deployments(stub: Any) -> None:
    await create(stub)
    v = await stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
        parent="strategies/usdc-spread", version=pb.StrategyVersion(parameters=params())))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateDeployment(pb.CreateDeploymentRequest(
            parent="strategies/usdc-spread",
            deployment=pb.Deployment(version=v.name,
                                     environment=pb.DEPLOYMENT_ENVIRONMENT_PAPER)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for state in (pb.VERSION_STATE_BACKTESTED, pb.VERSION_STATE_APPROVED):
        v = await stub.TransitionStrategyVersion(
            pb.TransitionStrategyVersionRequest(name=v.name, state=state, reason="ok"))
    assert v.state == pb.VERSION_STATE_APPROVED
    d = await stub.CreateDeployment(pb.CreateDeploymentRequest(
        parent="strategies/usdc-spread",
        deployment=pb.Deployment(version=v.name, environment=pb.DEPLOYMENT_ENVIRONMENT_PAPER)))
    assert d.state == pb.DEPLOYMENT_STATE_ACTIVE
    v = await stub.GetStrategyVersion(pb.GetStrategyVersionRequest(name=v.name))
    assert v.state == pb.VERSION_STATE_DEPLOYED
    for blocked in (
        stub.TransitionStrategyVersion(pb.TransitionStrategyVersionRequest(
            name=v.name, state=pb.VERSION_STATE_RETIRED)),
        stub.DeleteStrategy(pb.DeleteStrategyRequest(name="strategies/usdc-spread")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await blocked
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stopped = await stub.StopDeployment(pb.StopDeploymentRequest(name=d.name, reason="done"))
    assert stopped.state == pb.DEPLOYMENT_STATE_STOPPED
    retired = await stub.TransitionStrategyVersion(pb.TransitionStrategyVersionRequest(
        name=v.name, state=pb.VERSION_STATE_RETIRED))
    assert retired.state == pb.VERSION_STATE_RETIRED
    listed = await stub.ListDeployments(pb.ListDeploymentsRequest(
        parent="strategies/usdc-spread"))
    assert [x.name for x in listed.deployments] == [d.name]


async def test_kinds_expose_their_parameter_schemas(stub: Any) -> None:
    kinds = await stub.ListStrategyKinds(pb.ListStrategyKindsRequest())
    assert [k.name for k in kinds.strategy_kinds] == [
        "strategyKinds/cross-exchange-spread", "strategyKinds/peg-reversion",
        "strategyKinds/triangular"]
    one = await stub.GetStrategyKind(pb.GetStrategyKindRequest(
        name="strategyKinds/peg-reversion"))
    schema = json_format.MessageToDict(one.parameter_schema)
    assert schema["properties"]["peg"]["default"] == 1.0
    assert "entryBps" in schema["required"]
