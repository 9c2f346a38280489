"""Domain metrics count what happened, with the labels the rules and dashboards query."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from usdcarb.backtest.telemetry import BacktestTelemetry
from usdcarb.identity.model import AuditRecord
from usdcarb.identity.telemetry import IdentityTelemetry
from usdcarb.ingestion.model import JobStats
from usdcarb.ingestion.telemetry import IngestionTelemetry
from usdcarb.validation.domain.model import Severity
from usdcarb.validation.telemetry import ValidationTelemetry

pytestmark = pytest.mark.unit


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_ingestion_counts_bars_per_exchange_as_job_stats_grow() -> None:
    registry = CollectorRegistry()
    telemetry = IngestionTelemetry(registry, pool=None)
    stats = JobStats.of({})
    stats.on_add = lambda d: telemetry.count("binance", d)
    stats.add(bars_fetched=10)
    stats.add(bars_stored=8, bars_quarantined=2, requests=1, retries=0)
    assert stats.values["bars_stored"] == 8
    assert value(registry, "usdcarb_ingestion_bars_stored_total", exchange="binance") == 8
    assert value(registry, "usdcarb_ingestion_bars_quarantined_total", exchange="binance") == 2
    assert value(registry, "usdcarb_ingestion_bars_fetched_total", exchange="binance") == 10
    telemetry.page("kraken", 0.2, 3)
    assert value(registry, "usdcarb_ingestion_page_fetch_seconds_count", exchange="kraken") == 1
    assert value(registry, "usdcarb_ingestion_page_retries_total", exchange="kraken") == 3


@dataclass
class _Finding:
    rule: str
    severity: Severity


@dataclass
class _Issue:
    finding: _Finding


def test_validation_counts_recorded_findings_by_rule_and_severity() -> None:
    registry = CollectorRegistry()
    telemetry = ValidationTelemetry(registry)

    class Quality:
        async def record_findings(self, conn: Any, series: Any, findings: Any) -> list[_Issue]:
            return [_Issue(f) for f in findings[:2]]  # the third was recorded before

    quality = Quality()
    telemetry.watch(quality)
    found = [_Finding("ohlc_consistency", Severity.ERROR), _Finding("gap", Severity.WARNING),
             _Finding("gap", Severity.WARNING)]
    assert len(asyncio.run(quality.record_findings(None, None, found))) == 2
    assert value(registry, "usdcarb_validation_findings_total", rule="ohlc_consistency",
                 severity="error") == 1
    assert value(registry, "usdcarb_validation_findings_total", rule="gap",
                 severity="warning") == 1


def test_identity_counts_logins_and_refusals_with_bounded_reasons() -> None:
    registry = CollectorRegistry()
    telemetry = IdentityTelemetry(registry)
    telemetry.count(AuditRecord(action="login.success"))
    telemetry.count(AuditRecord(action="login.failure", outcome="failure",
                                details={"reason": "bad password"}))
    telemetry.count(AuditRecord(action="token.refresh", outcome="failure",
                                details={"reason": "expired"}))
    telemetry.count(AuditRecord(action="weird.action", outcome="failure",
                                details={"reason": "x" * 200}))
    telemetry.count(AuditRecord(action="user.create"))  # a success: not a refusal
    assert value(registry, "usdcarb_identity_logins_total", outcome="success", reason="none") == 1
    assert value(registry, "usdcarb_identity_logins_total", outcome="refused",
                 reason="bad password") == 1
    assert value(registry, "usdcarb_identity_refusals_total", action="token.refresh",
                 reason="expired") == 1
    assert value(registry, "usdcarb_identity_refusals_total", action="other",
                 reason="other") == 1


@dataclass
class _Runner:
    settings: Any = field(default_factory=lambda: type("S", (), {"processes": 2})())
    busy: set[str] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    on_stages: Any = None


def test_backtest_stages_and_worker_slots() -> None:
    registry = CollectorRegistry()
    runner = _Runner(busy={"job-1"})
    telemetry = BacktestTelemetry(registry, runner=runner, redis=None, pool=None,
                                  streams={"backtests": "s"})
    assert runner.on_stages == telemetry.observe_stages
    created = datetime.now(UTC) - timedelta(seconds=10)
    runner.on_stages({"load": 0.5, "process": 2.0, "engine": 1.5, "columns": 0.1,
                      "store": 0.2, "publish": 0.05}, created)
    assert value(registry, "usdcarb_backtest_stage_seconds_count", stage="load") == 1
    assert value(registry, "usdcarb_backtest_stage_seconds_sum", stage="engine") == 1.5
    assert value(registry, "usdcarb_backtest_stage_seconds_sum", stage="store") == \
        pytest.approx(0.35)
    queued = value(registry, "usdcarb_backtest_stage_seconds_sum", stage="queued")
    assert 7.0 < queued < 8.0
    assert value(registry, "usdcarb_backtest_worker_slots", state="busy") == 1
    assert value(registry, "usdcarb_backtest_worker_slots", state="idle") == 1
    assert value(registry, "usdcarb_backtest_workers_ready") == 0
    runner.ready.set()
    assert value(registry, "usdcarb_backtest_workers_ready") == 1
