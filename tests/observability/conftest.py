"""One mesh with Prometheus and Alertmanager for the monitoring tests, intervals ~1 s."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from testkit import trust_stack
from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.stack import Stack, StackInfo
from usdcarb.observability.monitoring import MonitoringSettings

# Scrapes and evaluations every half second; every rule's `for:` cut to 2 s (the rules'
# real durations are unit-tested by promtool in test_rules.py).
FAST = MonitoringSettings(scrape_interval_s=0.5, evaluation_interval_s=0.5, group_wait_s=0.5,
                          group_interval_s=1.0, repeat_interval_s=3600.0, resolve_timeout_s=5.0,
                          alert_for_override_s=2.0)


@dataclass
class MonitoredStack:
    mesh: Stack
    info: StackInfo


@pytest.fixture(scope="session")
def monitored() -> Iterator[MonitoredStack]:
    root = scratch_dir("usdcarb-obs-e2e-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True, monitoring=FAST)
    try:
        info = mesh.up()
        trust_stack(info)
        yield MonitoredStack(mesh, info)
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)
