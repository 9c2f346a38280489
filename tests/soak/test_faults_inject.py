"""Every injector of the soak applied to a small stack run as the soak runs it (two
replicas of each service, Envoy ready for hot restart, ingestion's exchange leg through
the fault proxy): the fault happens, is lifted, and the system serves again — through
the gateway, with a real token — with the record saying when.

One stack for the module; the faults follow one another as in a soak."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit import eventually, trust_stack
from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.ports import pid_alive
from usdcarb.devstack.stack import SERVICES, Stack, StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.soak.faults import FaultRecord, SoakFaults, envoy_hosts
from usdcarb.soak.schedule import SLOW_LEG, FaultSchedule, FaultWindow

pytestmark = pytest.mark.e2e

KLINES = "/api.binance.com/api/v3/klines?symbol=BTCUSDC&interval=1m&limit=5"


@dataclass
class Soak:
    stack: Stack
    info: StackInfo
    faults: SoakFaults
    token: str
    strategy: str

    def get(self, path: str, *, timeout: float = 10) -> int:
        """GET through the gateway with the token; return the status (0: no answer)."""
        request = urllib.request.Request(self.info.gateway + path,
                                         headers={"authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    def exchange(self) -> int:
        """One exchange page request the way ingestion sends it: through the fault proxy."""
        url = self.faults.stack_env()["USDCARB_INGESTION_REPLAY_URL"] + KLINES
        try:
            with urllib.request.urlopen(url, timeout=20) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0


@pytest.fixture(scope="module")
async def soak() -> AsyncIterator[Soak]:
    root = scratch_dir("usdcarb-soakfaults-")
    token = mint_dev_token("soak-faults", ["analyst"])
    strategy = f"soak-{uuid.uuid4().hex[:8]}"
    states: list[Soak] = []

    async def probe() -> bool:  # what a caller sees: a stored strategy read via the gateway
        return await asyncio.to_thread(states[0].get, f"/v1/strategies/{strategy}") == 200

    faults = SoakFaults(root / "stack", FaultSchedule(5, 60.0, []), probe=probe,
                        recover_timeout_s=60)
    try:
        stack = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True,
                      env=await asyncio.to_thread(faults.stack_env), **faults.stack_options())
        # A short drain: the hot restart's parent is waited for.
        stack.ENVOY_DRAIN_S, stack.ENVOY_PARENT_SHUTDOWN_S = 1, 3
        try:
            info = await asyncio.to_thread(stack.up)
            trust_stack(info)
            info = await faults.start(stack, info)
            states.append(Soak(stack, info, faults, token, strategy))
            status = await asyncio.to_thread(_post, info, token, strategy)
            assert status == 200
            yield states[0]
        finally:
            await faults.stop()
            await asyncio.to_thread(stack.down)
    finally:
        await faults.stop()
        shutil.rmtree(root, ignore_errors=True)
    leftover = [pid for pid in faults.started_pids() if pid_alive(pid)]
    assert leftover == [], f"processes the faults started outlived the stack: {leftover}"
    if states:  # nor does Envoy's hot-restart shared memory
        base_id = int(states[0].info.processes["envoy"].extra["base_id"])
        shm = Path(f"/dev/shm/envoy_shared_memory_{base_id * 10}")
        assert not await asyncio.to_thread(shm.exists)


def _post(info: StackInfo, token: str, strategy: str) -> int:
    request = urllib.request.Request(
        f"{info.gateway}/v1/strategies?strategyId={strategy}", method="POST",
        data=b'{"displayName": "soak", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"}',
        headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return int(reply.status)


def _recovered(record: FaultRecord) -> None:
    assert record.start <= record.end, record
    assert record.recovered_at is not None and record.recovered_at >= record.end, record


def test_every_service_runs_twice_behind_envoy_and_peers_name_both(soak: Soak) -> None:
    hosts = envoy_hosts(soak.info.admin)
    for service in SERVICES:
        if service == "ratelimit":  # Envoy's rate limit cluster is not health-checked
            continue
        assert list(hosts[service].values()) == [True, True], (service, hosts[service])
        assert {soak.info.processes[service].port,
                soak.info.processes[f"{service}-2"].port} == set(hosts[service])
    peers = soak.info.service_env("backtest")["USDCARB_BACKTEST_STRATEGY_ADDRESS"]
    assert peers.startswith("ipv4:") and peers.count(",") == 1
    assert soak.info.processes["envoy"].extra["epoch"] == 0


# "fast" takes the same path with the other pg_ctl mode (every soak run injects both).
@pytest.mark.parametrize("mode", ["immediate"])
async def test_postgres_restarts_in_place_and_the_mesh_recovers(soak: Soak, mode: str) -> None:
    before = soak.stack.status()
    port = soak.info.processes["postgres"].port
    record = await soak.faults.inject(FaultWindow(f"pg_restart_{mode}", "postgres", 0, 0,
                                                  {"mode": mode}))
    _recovered(record)
    after = StackInfo.load(soak.stack.state_file)
    assert after.processes["postgres"].port == port
    assert f"-m {mode}" in record.detail
    assert soak.stack.status() == before  # every other process rode it out


async def test_redis_killed_and_restarted_on_its_port_and_data(soak: Soak) -> None:
    old = StackInfo.load(soak.stack.state_file).processes["redis"]
    record = await soak.faults.inject(FaultWindow("redis_kill", "redis", 0, 0, {}))
    _recovered(record)
    new = StackInfo.load(soak.stack.state_file).processes["redis"]
    assert new.port == old.port and new.pid != old.pid and not pid_alive(old.pid)


async def test_a_killed_replica_is_restarted_and_the_other_kept_serving(soak: Soak) -> None:
    old = StackInfo.load(soak.stack.state_file).processes["strategy-2"]
    statuses: list[int] = []
    done = asyncio.Event()

    async def callers() -> None:  # within the analyst's rate limit
        while not done.is_set():
            statuses.append(await asyncio.to_thread(soak.get, f"/v1/strategies/{soak.strategy}"))
            await asyncio.sleep(0.05)

    load = asyncio.create_task(callers())
    try:
        record = await soak.faults.inject(FaultWindow("service_kill", "strategy", 0, 0,
                                                      {"replica": 2}))
    finally:
        done.set()
        await load
    _recovered(record)
    new = StackInfo.load(soak.stack.state_file).processes["strategy-2"]
    assert new.port == old.port and new.pid != old.pid and not pid_alive(old.pid)
    assert envoy_hosts(soak.info.admin)["strategy"][new.port] is True
    # Replica 1 answered throughout: a call sent to the dead one is retried on it by the
    # gateway. Only a call in flight on the killed one at the moment of the kill (or on a
    # pooled database connection an earlier restart left dead) fails, with the retryable 503.
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}, statuses


async def test_the_go_rate_limit_service_killed_is_back_on_its_port(soak: Soak) -> None:
    old = StackInfo.load(soak.stack.state_file).processes["ratelimit"]
    record = await soak.faults.inject(FaultWindow("service_kill", "ratelimit", 0, 0,
                                                  {"replica": 1}))
    _recovered(record)
    new = StackInfo.load(soak.stack.state_file).processes["ratelimit"]
    assert new.port == old.port and new.pid != old.pid and not pid_alive(old.pid)
    assert {old.pid, new.pid} <= set(soak.faults.started_pids())


async def test_envoy_hot_restart_keeps_accepting_connections(soak: Soak) -> None:
    old = StackInfo.load(soak.stack.state_file).processes["envoy"]
    statuses: list[int] = []
    done = asyncio.Event()

    async def callers() -> None:  # a new connection per call: the listener must accept
        while not done.is_set():
            statuses.append(await asyncio.to_thread(soak.get, "/v1/strategyKinds"))
            await asyncio.sleep(0.05)

    load = asyncio.create_task(callers())
    try:
        record = await soak.faults.inject(FaultWindow("envoy_hot_restart", "envoy", 0, 0, {}))
    finally:
        done.set()
        await load
    _recovered(record)
    new = StackInfo.load(soak.stack.state_file).processes["envoy"]
    assert new.extra["epoch"] == old.extra["epoch"] + 1 and new.port == old.port
    assert not pid_alive(old.pid)
    assert len(statuses) >= 3 and set(statuses) == {200}, statuses


@pytest.mark.parametrize("kind,status", [("replay_429", 429), ("replay_5xx", 502)])
async def test_replay_bursts_answer_the_error_then_pages_again(
        soak: Soak, kind: str, status: int) -> None:
    seen: list[int] = []
    done = asyncio.Event()

    async def ingestion_like() -> None:
        while not done.is_set():
            seen.append(await asyncio.to_thread(soak.exchange))
            await asyncio.sleep(0.1)

    load = asyncio.create_task(ingestion_like())
    try:
        record = await soak.faults.inject(FaultWindow(kind, "replay", 0, 0.6,
                                                      {"status": status}))
    finally:
        done.set()
        await load
    _recovered(record)
    assert status in seen and seen[-1] == 200, seen
    answered = int(record.detail.split()[0])
    assert 1 <= answered <= seen.count(status) and f"answered {status}" in record.detail


async def test_the_slow_leg_slows_then_frees_the_exchange_leg(soak: Soak) -> None:
    timings: list[tuple[float, float, int]] = []
    done = asyncio.Event()

    async def ingestion_like() -> None:
        while not done.is_set():
            started = time.time()
            status = await asyncio.to_thread(soak.exchange)
            timings.append((started, time.time() - started, status))
            await asyncio.sleep(0.05)

    load = asyncio.create_task(ingestion_like())
    try:
        record = await soak.faults.inject(FaultWindow(
            "slow_leg", SLOW_LEG, 0, 1.5,
            {"latency_ms": 300, "jitter_ms": 50, "bandwidth_bps": 64_000, "resets": 1}))
    finally:
        done.set()
        await load
    _recovered(record)
    during = [took for started, took, status in timings
              if record.start <= started and started + took <= record.end and status == 200]
    # A request and its answer each wait 300 ms on the leg: 0.6 s at least.
    assert during and min(during) >= 0.6, timings
    assert timings[-1][2] == 200


async def test_run_follows_the_schedule_and_reports_each_fault(soak: Soak) -> None:
    schedule = FaultSchedule(9, 10.0, [
        FaultWindow("replay_5xx", "replay", 0.5, 0.5, {"status": 503}),
        FaultWindow("slow_leg", SLOW_LEG, 1.0, 0.5, {"latency_ms": 50, "resets": 1})])
    faults, original = soak.faults, soak.faults.schedule
    faults.schedule = schedule
    seen: list[FaultRecord] = []
    done = asyncio.Event()

    async def ingestion_like() -> None:  # the exchange traffic recovery is read from
        while not done.is_set():
            await asyncio.to_thread(soak.exchange)
            await asyncio.sleep(0.1)

    load = asyncio.create_task(ingestion_like())
    t0 = time.time()
    try:
        records = await faults.run(t0, seen.append)
    finally:
        faults.schedule = original
        done.set()
        await load
    assert [r.kind for r in records] == ["replay_5xx", "slow_leg"] and seen == records
    assert records[0].start >= t0 + 0.5
    assert records[0].recovered_at is not None and records[1].start >= records[0].recovered_at
    assert all(r.to_json()["time_to_recover_s"] is not None for r in records)


async def test_a_fault_cancelled_midway_is_undone(soak: Soak) -> None:
    burst = asyncio.create_task(soak.faults.inject(
        FaultWindow("replay_429", "replay", 0, 60.0, {"status": 429})))
    replay = f"http://127.0.0.1:{soak.info.processes['replay'].port}/_replay/faults"

    async def switched() -> bool:
        return bool(json.loads(await asyncio.to_thread(_read, replay))["rate_limit"] > 0)

    await eventually(switched)
    burst.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await burst
    assert await asyncio.to_thread(soak.exchange) == 429  # still on: nobody lifted it yet
    await soak.faults.undo()
    assert not await switched()
    assert await asyncio.to_thread(soak.exchange) == 200


def _read(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return bytes(reply.read())


async def test_a_fault_that_cannot_be_applied_is_recorded_as_never_recovered(
        soak: Soak) -> None:
    faults, original = soak.faults, soak.faults.schedule
    faults.schedule = FaultSchedule(9, 10.0, [FaultWindow("service_kill", "nope", 0, 0, {})])
    try:
        records = await faults.run(time.time())
    finally:
        faults.schedule = original
    assert records[-1].target == "nope" and records[-1].recovered_at is None
    assert "injection failed" in records[-1].detail
