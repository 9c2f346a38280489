"""The Go SDK against the session's stack: its live tests (clients/go/usdcarb/live_test.go)
run a backtest with streamed progress, read its result and trades, watch and cancel; its
example runs the demo backtest and prints the progress. Both run inside `make test` here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from usdcarb.devstack.stack import StackInfo

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")]

GO_MODULE = Path(__file__).resolve().parents[2] / "clients" / "go"


def go_env(stack: StackInfo, token: str) -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod",
            "USDCARB_LIVE_TARGET": stack.gateway_target, "USDCARB_CA_FILE": stack.ca,
            "USDCARB_TOKEN": token}


def test_go_live_tests_run_a_backtest_with_streamed_progress(
        stack: StackInfo, token: str, backfilled: list[str]) -> None:
    done = subprocess.run(
        ["go", "test", "-count=1", "-run", "^TestLive", "-v", "./usdcarb"],
        cwd=GO_MODULE, env=go_env(stack, token), capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("TestLiveBacktestStreamsProgressAndReadsItsResult",
                 "TestLiveBacktestCreateWatchAndCancel"):
        assert f"--- PASS: {name}" in done.stdout, done.stdout  # ran, not skipped


def test_go_example_runs_a_backtest_and_prints_progress(
        stack: StackInfo, token: str, backfilled: list[str]) -> None:
    done = subprocess.run(
        ["go", "run", "./examples/backtest", "-target", stack.gateway_target,
         "-cacert", stack.ca, "-token", token],
        cwd=GO_MODULE, env=go_env(stack, token), capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("progress ")]
    assert progress and progress[-1].startswith("progress 100.0% 4320/4320 bars"), done.stderr
    backtest = json.loads(done.stdout)
    assert backtest["state"] == "JOB_STATE_SUCCEEDED"
    assert int(backtest["result"]["tradeCount"]) > 0
