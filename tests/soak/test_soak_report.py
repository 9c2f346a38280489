"""The soak's verdict rules, on hand-made attempts: which errors are explained (retried to
success, or a retryable status inside a documented fault window) and which fail the run."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from usdcarb.soak.accounting import Table
from usdcarb.soak.load import Recorder
from usdcarb.soak.report import WINDOW_GRACE_S, classify_errors, per_fault, windows

pytestmark = pytest.mark.unit


@dataclass
class Fault:
    kind: str
    target: str
    start: float
    end: float
    recovered_at: float | None
    detail: str = ""


def _call(rec: Recorder, op: str, codes: list[tuple[float, str, bool]]) -> None:
    """One call whose attempts end with ``codes`` (time, code, retryable); ok if last OK."""
    from usdcarb.soak.load import CallRecord

    call_id = rec.new_call()
    for n, (t, code, retryable) in enumerate(codes, start=1):
        rec.attempt(op, "analyst-0", call_id, n, t, code, retryable)
        rec.attempts[-1].latency_s = 0.01
    rec.calls.append(CallRecord(op, "analyst-0", call_id, codes[0][0], codes[-1][0], len(codes),
                                codes[-1][1], codes[-1][1] == "OK"))


def test_errors_retried_to_success_or_retryable_in_a_window_are_explained() -> None:
    t0 = time.time()
    fault = Fault("redis_kill", "redis", t0 + 10, t0 + 10, t0 + 12)
    rec = Recorder()
    _call(rec, "rest.CreateStrategy", [(t0 + 1, "HTTP_503", True), (t0 + 1.2, "OK", False)])
    _call(rec, "ghz.ListStrategyKinds", [(t0 + 11, "UNAVAILABLE", True)])  # in the window
    _call(rec, "ghz.ListStrategyKinds", [(t0 + 12 + WINDOW_GRACE_S - 1, "UNAVAILABLE", True)])
    _, unexplained = classify_errors(rec, windows([fault]))
    assert unexplained == []


def test_unretried_errors_outside_windows_and_non_retryable_ones_fail_the_run() -> None:
    t0 = time.time()
    fault = Fault("pg_restart_fast", "postgres", t0 + 10, t0 + 10.5, t0 + 12)
    rec = Recorder()
    _call(rec, "ghz.ListStrategyKinds", [(t0 + 40, "UNAVAILABLE", True)])  # after the grace
    _call(rec, "grpc.CreateBacktest", [(t0 + 11, "INTERNAL", False)])  # in the window, but
    _call(rec, "rest.GetStrategy", [(t0 + 2, "HTTP_503", True), (t0 + 3, "HTTP_503", True)])
    errors, unexplained = classify_errors(rec, windows([fault]))
    assert sorted(u["op"] for u in unexplained) == [
        "ghz.ListStrategyKinds", "grpc.CreateBacktest", "rest.GetStrategy", "rest.GetStrategy"]
    assert errors["non_retryable"] == {"INTERNAL": 1}
    assert errors["retryable"] == {"UNAVAILABLE": 1, "HTTP_503": 2}


def test_recovery_is_measured_from_the_fault_to_the_first_success_after_the_last_error() -> None:
    t0 = time.time()
    fault = Fault("service_kill", "strategy", t0 + 10, t0 + 10, t0 + 13)
    rec = Recorder()
    _call(rec, "rest.GetStrategy", [(t0 + 9, "OK", False)])
    _call(rec, "rest.GetStrategy", [(t0 + 10.5, "HTTP_503", True), (t0 + 11.5, "OK", False)])
    [got] = per_fault(rec, [fault])
    assert got["component_recovery_s"] == 3.0
    assert got["client_recovery_s"] == pytest.approx(1.51, abs=0.01)
    assert got["errors_in_window"] == {"HTTP_503": 1}
    assert got["latency"]["rest.GetStrategy"]["before"]["n"] == 1


def test_the_accounting_table_totals_every_kind() -> None:
    table = Table()
    table.count("bars", "lost", 3, "binance BTC/USDT: 3 source bars absent")
    table.count("deliveries", "duplicated")
    table.row("strategies")["checked"] += 5
    assert table.totals() == {"lost": 3, "duplicated": 1, "stuck": 0, "wrong": 0}
    assert table.rows["bars"]["examples"] == ["lost: binance BTC/USDT: 3 source bars absent"]
