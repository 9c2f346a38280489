"""LIVE deployments are refused with FAILED_PRECONDITION and a reason (issue 18)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tests.strategy.test_strategy_service import create, params, stub  # noqa: F401

from usdcarb.v1 import strategy_pb2 as pb

pytestmark = pytest.mark.integration


async def test_live_deployment_is_refused_and_nothing_changes(stub: Any) -> None:  # noqa: F811
    await create(stub)
    v = await stub.CreateStrategyVersion(pb.CreateStrategyVersionRequest(
        parent="strategies/usdc-spread", version=pb.StrategyVersion(parameters=params())))
    for state in (pb.VERSION_STATE_BACKTESTED, pb.VERSION_STATE_APPROVED):
        v = await stub.TransitionStrategyVersion(
            pb.TransitionStrategyVersionRequest(name=v.name, state=state, reason="ok"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateDeployment(pb.CreateDeploymentRequest(
            parent="strategies/usdc-spread",
            deployment=pb.Deployment(version=v.name,
                                     environment=pb.DEPLOYMENT_ENVIRONMENT_LIVE)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(err.value)
    assert status is not None
    reasons = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
    assert reasons == ["LIVE_TRADING_UNSUPPORTED"]
    assert "exchange credentials" in (err.value.details() or "")
    # Refused before anything changed: the version is still APPROVED, no deployment.
    again = await stub.GetStrategyVersion(pb.GetStrategyVersionRequest(name=v.name))
    assert again.state == pb.VERSION_STATE_APPROVED
    listed = await stub.ListDeployments(pb.ListDeploymentsRequest(
        parent="strategies/usdc-spread"))
    assert list(listed.deployments) == []
