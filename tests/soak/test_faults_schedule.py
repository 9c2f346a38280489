"""The fault schedule is a pure function of (seed, duration, kinds): faults inside the
middle of the run, apart from one another, every family present; and the gateway config
a two-replica stack renders (one endpoint per replica, retries only of calls that never
reached a service)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from usdcarb.devstack.stack import SERVICES as STACK_SERVICES
from usdcarb.devstack.stack import _peers, _target, replica_key, service_of
from usdcarb.gateway.api import load_services
from usdcarb.gateway.config import GatewayConfig
from usdcarb.gateway.envoy import build_bootstrap
from usdcarb.soak.schedule import (
    AFTER_SHARE,
    BEFORE_SHARE,
    FAULT_KINDS,
    SERVICES,
    FaultSchedule,
    FaultWindow,
    expected_s,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    a, b = FaultSchedule.build(7, 180), FaultSchedule.build(7, 180)
    assert a.to_json() == b.to_json()
    assert FaultSchedule.from_json(a.to_json()) == a
    assert FaultSchedule.build(8, 180).to_json() != a.to_json()


@pytest.mark.parametrize("seed", range(6))
def test_a_full_run_injects_every_kind_in_its_middle_without_overlap(seed: int) -> None:
    schedule = FaultSchedule.build(seed, 180)
    kinds = {w.kind for w in schedule.windows}
    assert kinds == set(FAULT_KINDS)
    killed = {w.target for w in schedule.windows if w.kind == "service_kill"}
    assert killed == set(SERVICES)  # one replica of every service
    assert {w.params["replica"] for w in schedule.windows if w.kind == "service_kill"} <= {1, 2}
    windows = schedule.windows
    assert all(180 * BEFORE_SHARE <= w.start_s for w in windows)
    # Every window starts inside the fault zone; each leaves the one before it the time
    # that one is expected to take (the zone is full at 180 s: the last may spill over,
    # and the runner waits for recoveries anyway).
    assert all(w.start_s <= 180 * (1 - AFTER_SHARE) for w in windows)
    for before, after in itertools.pairwise(windows):
        assert before.start_s + expected_s(before.kind, before.target) <= after.start_s + 1e-6


def test_a_short_run_gets_one_of_each_family() -> None:
    schedule = FaultSchedule.build(3, 60)
    kinds = [w.kind for w in schedule.windows]
    assert len(kinds) == 5
    assert sum(k.startswith("pg_restart") for k in kinds) == 1
    assert sum(k.startswith("replay_") for k in kinds) == 1
    assert {"redis_kill", "service_kill", "envoy_hot_restart"} <= set(kinds)
    for seed in range(20):  # no time in a short run for a replica's warm-up
        short = FaultSchedule.build(seed, 60)
        assert all(w.target not in ("backtest", "ingestion") for w in short.windows)


def test_chosen_kinds_and_bad_input() -> None:
    schedule = FaultSchedule.build(1, 120, ["slow_leg", "redis_kill"])
    assert sorted(w.kind for w in schedule.windows) == ["redis_kill", "slow_leg"]
    slow = next(w for w in schedule.windows if w.kind == "slow_leg")
    assert slow.duration_s > 0 and slow.params["latency_ms"] > 0
    with pytest.raises(ValueError, match="expected kinds among"):
        FaultSchedule.build(1, 120, ["meteor"])
    with pytest.raises(ValueError, match="duration_s > 0"):
        FaultSchedule.build(1, 0)
    with pytest.raises(ValueError, match="expected a kind"):
        FaultWindow("meteor", "x", 0, 0)


def test_schedule_services_are_the_stacks() -> None:
    assert SERVICES == STACK_SERVICES
    assert service_of(replica_key("backtest", 2)) == "backtest"
    assert service_of("backtest") == "backtest" and service_of("postgres-replica") == (
        "postgres-replica")


def test_peers_name_every_replica_and_one_replica_stays_a_plain_address() -> None:
    assert _target([5001]) == "127.0.0.1:5001"
    both = _target([5001, 5002])
    assert both == "ipv4:127.0.0.1:5001,127.0.0.1:5002"
    env = _peers("backtest", {"strategy": both, "identity": 6001, "backtest": 7001})
    assert env == {"USDCARB_BACKTEST_STRATEGY_ADDRESS": both,
                   "USDCARB_BACKTEST_IDENTITY_ADDRESS": "127.0.0.1:6001"}


def test_a_backend_with_two_replicas_gets_two_endpoints_and_a_connect_failure_retry() -> None:
    services = load_services(REPO / "gen/descriptor/usdcarb.binpb")
    ports: dict[str, int | str] = {s.short_name: 7000 + i for i, s in enumerate(services)}
    ports["strategy"] = "127.0.0.1:7100,127.0.0.1:7101"
    cfg = GatewayConfig(descriptor_path=REPO / "gen/descriptor/usdcarb.binpb").with_ports(ports)
    boot = build_bootstrap(cfg, services)
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    endpoints = clusters["strategy"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [
        7100, 7101]
    routes = [r for vh in _virtual_hosts(boot) for r in vh["routes"] if "route" in r]
    strategy = [r["route"] for r in routes if r["route"].get("cluster") == "strategy"]
    others = [r["route"] for r in routes if r["route"].get("cluster") == "backtest"]
    assert strategy and all(r["retry_policy"]["retry_on"] == "connect-failure,refused-stream"
                            for r in strategy)
    assert others and all("retry_policy" not in r for r in others)  # one replica: none


def _virtual_hosts(boot: dict[str, Any]) -> list[dict[str, Any]]:
    listener = boot["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return list(hcm["route_config"]["virtual_hosts"])
