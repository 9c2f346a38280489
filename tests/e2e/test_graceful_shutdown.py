"""A service process stopped with SIGTERM finishes its in-flight calls before exiting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import asyncpg
import pytest
from google.protobuf import field_mask_pb2

from testkit import eventually
from usdcarb.devstack import free_port
from usdcarb.devstack.stack import REPO, StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import strategy_pb2 as pb
from usdcarb.v1 import strategy_pb2_grpc

pytestmark = pytest.mark.e2e


async def test_sigterm_drains_in_flight_calls(stack: StackInfo) -> None:
    port = free_port()
    # A strategy replica set up as the stack's own (peers, stores, its certificate).
    env = {**os.environ, "PYTHONPATH": f"{REPO}/services:{REPO}/gen/python",
           **stack.service_env("strategy"), "USDCARB_STRATEGY_GRPC_PORT": str(port),
           "USDCARB_STRATEGY_METRICS_PORT": "-1", "USDCARB_STRATEGY_SHUTDOWN_GRACE_S": "15"}
    # Popen only forks; it does not block the loop.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "usdcarb.strategy.main"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sid = f"drain-{uuid.uuid4().hex[:8]}"
    auth = (("authorization", f"Bearer {mint_dev_token('users/drain', ['trader'])}"),)
    try:
        async with stack.aio_channel("strategy", port=port) as channel:
            stub = strategy_pb2_grpc.StrategyServiceStub(channel)
            await stub.CreateStrategy(
                pb.CreateStrategyRequest(strategy_id=sid, strategy=pb.Strategy(
                    display_name="drain", kind=pb.STRATEGY_KIND_PEG_REVERSION)),
                metadata=auth, wait_for_ready=True, timeout=30)
            # Hold the strategy's row lock so the update below is in flight for as long
            # as the test wants; SIGTERM arrives while it waits.
            conn = await asyncpg.connect(stack.dsn)
            tx = conn.transaction()
            await tx.start()
            await conn.execute("SELECT 1 FROM strategy.strategies WHERE id = $1 FOR UPDATE", sid)
            call = asyncio.ensure_future(stub.UpdateStrategy(pb.UpdateStrategyRequest(
                strategy=pb.Strategy(name=f"strategies/{sid}", description="drained"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"])), metadata=auth,
                timeout=30))
            await eventually(lambda: conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"), within_s=10)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert proc.poll() is None, "exited before its in-flight call finished"
            assert not call.done()
            await tx.commit()
            await conn.close()
            updated = await call
            assert updated.description == "drained"
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
