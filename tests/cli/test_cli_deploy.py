"""``usdcarb deploy`` end to end against the running mesh (issue 18): deploy an APPROVED
spread version in PAPER mode on the demo's stored bars, follow it (status, watch), read
its divergence report (tables, JSON, REST through the gateway), write its HTML report
(opened in headless chromium), stop it; exit codes on refusals."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.test_cli_e2e import SPREAD, Run, check_report, make_version
from usdcarb.devstack.stack import StackInfo
from usdcarb_sdk import Client, v1

pytestmark = pytest.mark.e2e

PAPER = ["--start", "2023-03-12T12:00", "--venue", "binance", "--venue", "bybit",
         "--taker-fee-bps", "10", "--slippage-bps", "2", "--balance", "BTC=5",
         "--balance", "USDC=200000"]


@pytest.fixture
def run(stack: StackInfo, token: str, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(stack, token, capsys)


def approve(stack: StackInfo, token: str, version: str) -> None:
    with Client(stack.gateway, token=token, ca_file=stack.ca) as client:
        for state in (v1.VersionState.BACKTESTED, v1.VersionState.APPROVED):
            client.strategies.transition_strategy_version(name=version, state=state,
                                                          reason="cli test")


def wait_for(check: Callable[[], Any], within_s: float, every_s: float) -> Any:
    deadline = time.monotonic() + within_s
    while (got := check()) is None:
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(every_s)
    return got


def rest(stack: StackInfo, token: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"{stack.gateway}/v1/{path}",
                                     headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60,
                                    context=ssl.create_default_context(cafile=stack.ca)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_deploy_paper_status_watch_divergence_report_stop(
        run: Run, stack: StackInfo, token: str, backfilled: list[str], tmp_path: Path) -> None:
    version = make_version(run, "cross-exchange-spread", SPREAD)
    code, _, err = run("deploy", "paper", version, *PAPER)
    assert code == 5 and "FAILED_PRECONDITION" in err   # not APPROVED yet
    approve(stack, token, version)
    code, _, err = run("deploy", "paper", version, "--max-divergence", "-1", *PAPER)
    assert code == 2 and "max-divergence" in err
    started = run.json("deploy", "paper", version, "--max-divergence", "1000", *PAPER)
    dep = started["deployment"]["name"]
    assert started["deployment"]["environment"] == "DEPLOYMENT_ENVIRONMENT_PAPER"
    assert started["paperRun"]["state"] == "PAPER_RUN_STATE_RUNNING"
    assert started["paperRun"]["name"] == f"{dep}/paperRun"

    seen: list[int] = []

    def caught_up() -> dict[str, Any] | None:
        status = run.json("deploy", "status", dep)
        seen.append(int(status.get("bars", 0)))
        return status if seen[-1] > 500 and seen[-3:] == [seen[-1]] * 3 else None

    status = wait_for(caught_up, 120, 0.5)
    code, out, _ = run("deploy", "status", dep)
    assert code == 0 and "running" in out and "balances" in out and "BTC" in out

    code, out, err = run("deploy", "divergence", dep)
    assert code == 0, err
    assert "paper vs backtest of the same bars" in out and "0 differ" in out
    dv = run.json("deploy", "divergence", dep)
    assert int(dv["bars"]) == int(status["bars"])
    assert dv.get("paperPnl", 0) == dv.get("backtestPnl", 0)
    assert int(dv.get("differingFills", 0)) == 0 and "differences" not in dv
    assert dv["maxDivergence"] == 1000 and not dv.get("diverged")
    assert int(dv.get("paperFills", 0)) == int(dv.get("backtestFills", 0))
    # The same report over REST through the gateway (transcoded), and its 404.
    code, body = rest(stack, token, f"{dep}/paperDivergence?pageSize=5")
    assert code == 200 and int(body["bars"]) == int(dv["bars"]), body
    assert len(body["timeMs"]) == int(dv["bars"])
    code, body = rest(stack, token, f"{dep}x/paperDivergence")
    assert code == 404, body

    report = tmp_path / "deployment.html"
    code, _, err = run("deploy", "divergence", dep, "--html", str(report))
    assert code == 0 and "report written" in err
    html = report.read_text()
    assert dep in html and "Fills that differ (0)" in html and "<script src=" not in html
    charts = check_report(report, {"chart-paper-equity", "chart-paper-difference"})
    assert [t["name"] for t in charts["chart-paper-equity"]["traces"]] == ["paper", "backtest"]
    code, out, _ = run("deploy", "report", dep, "-o", str(tmp_path / "again.html"))
    assert code == 0 and "report written" in out

    code, out, _ = run("deploy", "watch", dep, "--updates", "1", "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["name"] == f"{dep}/paperRun"
    code, out, err = run("deploy", "stop", dep, "--reason", "done")
    assert code == 0, err
    assert "stopped" in out and "paper run stopped" in out
    code, out, _ = run("deploy", "watch", dep)   # a stopped run: its final state, then exit
    assert code == 0 and "stopped" in out

    code, _, err = run("deploy", "status", "strategies/nope/deployments/nope")
    assert code == 3 and "NOT_FOUND" in err
    code, _, err = run("deploy", "divergence", "strategies/nope")
    assert code == 2 and "expected strategies/{s}/deployments/{d}" in err
