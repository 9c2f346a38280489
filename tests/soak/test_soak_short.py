"""A shortened soak (issue 19) in the suite: ``python -m usdcarb.soak`` as `make soak` runs
it — a stack of its own with two replicas per service, 40 s of mixed load through the
gateway while the short fault schedule runs (a PostgreSQL restart, the Redis kill, one
replica killed, the Envoy hot restart, a replay burst), then the accounting pass.

The run's own verdict is the first assertion; the others check that the verdict rests on
something: every store was counted, every transport and fault kind was exercised and
came back, and nothing the soak started is left running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from usdcarb.devstack import scratch_dir
from usdcarb.devstack.stack import REPO
from usdcarb.soak.tools import binary

pytestmark = pytest.mark.e2e

LOAD_S = 40
FAMILIES = {"pg_restart_fast": "postgres", "pg_restart_immediate": "postgres",
            "redis_kill": "redis", "service_kill": "service",
            "envoy_hot_restart": "envoy", "replay_429": "replay", "replay_5xx": "replay"}


def _faults_available() -> bool:
    return (REPO / "services/usdcarb/soak/faults.py").exists()


@pytest.fixture(scope="module")
def soak() -> Iterator[tuple[int, dict[str, Any], str]]:
    out = scratch_dir("usdcarb-soak-")  # PostgreSQL's data dir lives under it
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            str(REPO / p) for p in ("services", "gen/python", "clients/python"))}
        proc = subprocess.run(
            [sys.executable, "-m", "usdcarb.soak", "--seconds", str(LOAD_S), "--seed", "7",
             "--out", str(out)], env=env, cwd=REPO, capture_output=True, text=True,
            timeout=600, check=False)
        report = json.loads((out / "report.json").read_text())
        assert (out / "report.txt").read_text().startswith(f"soak {report['run']}: ")
        yield proc.returncode, report, proc.stdout + proc.stderr[-4000:]
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.timeout(700)
def test_a_short_soak_passes_with_all_zero_accounting(soak: tuple[int, dict[str, Any], str]) -> None:
    code, report, output = soak
    assert report["passed"], output
    assert code == 0
    totals = report["accounting"]["totals"]
    assert totals == {"lost": 0, "duplicated": 0, "stuck": 0, "wrong": 0}, output
    assert report["unexplained_count"] == 0
    assert report["accounting"]["processes"]["left_running"] == []


@pytest.mark.timeout(700)
def test_every_store_and_transport_was_counted(soak: tuple[int, dict[str, Any], str]) -> None:
    _, report, output = soak
    rows = report["accounting"]["rows"]
    for name in ("strategies", "versions", "backtests", "backtests streams", "sweeps",
                 "ingest jobs", "bars", "deliveries", "event stream", "redis consumer groups"):
        assert rows[name]["checked"] > 0, (name, output)
    jobs = report["jobs"]
    assert set(jobs["backtests"]["by_transport"]) == {"sse", "ndjson", "grpc"}
    assert jobs["webhook_receipts"] >= rows["deliveries"]["checked"] > 0
    ops = report["operations"]
    for op in ("rest.CreateStrategy", "grpc.CreateStrategy", "rest.UpdateStrategy",
               "grpc.DeleteStrategy", "sdk.CreateStrategy", "sdk.UpdateStrategy",
               "grpc.CreateIngestJob", "rest.CreateSweep"):
        assert ops[op]["succeeded"] > 0, op
    if binary("ghz") is not None and binary("vegeta") is not None:
        assert ops["ghz.ListStrategyKinds"]["calls"] > 0
        assert ops["vegeta.ListStrategies"]["calls"] > 0


@pytest.mark.timeout(700)
def test_each_fault_family_was_injected_and_recovered(soak: tuple[int, dict[str, Any], str]) -> None:
    if not _faults_available():
        pytest.skip("no fault injectors in this tree (services/usdcarb/soak/faults.py)")
    _, report, output = soak
    faults = report["faults"]
    assert {FAMILIES.get(f["kind"]) for f in faults} >= {
        "postgres", "redis", "service", "envoy", "replay"}, output
    for f in faults:
        assert f["component_recovery_s"] is not None, f
        assert f["client_recovery_s"] != float("inf"), f
    assert [w["kind"] for w in report["schedule"]["windows"]] == [f["kind"] for f in faults]


def test_the_soak_refuses_a_run_length_out_of_bounds(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(REPO / p) for p in ("services", "gen/python", "clients/python"))}
    proc = subprocess.run([sys.executable, "-m", "usdcarb.soak", "--seconds", "5",
                           "--out", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2
    assert "expected --seconds within 10..3600, got 5.0" in proc.stderr
    assert not (tmp_path / "stack").exists()
