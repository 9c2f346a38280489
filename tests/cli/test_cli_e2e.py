"""The ``usdcarb`` CLI end to end against the running mesh (the session's stack): every
command, its progress output, ``--json``, exit codes on errors, and the HTML reports
opened in Debian's headless chromium.

Market data comes in the way a user brings it: ``usdcarb data backfill`` through the
gateway from the replay server's committed samples (all three strategy kinds run on them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cli.cli_chromium import chromium_binary, open_page
from cli.cli_data import END, SERIES, START
from usdcarb.cli import main as usdcarb
from usdcarb.devstack.stack import REPO, StackInfo

pytestmark = pytest.mark.e2e



class Run:
    """Call the CLI in this process with the stack's connection options."""

    def __init__(self, stack: StackInfo, token: str, capsys: pytest.CaptureFixture[str]
                 ) -> None:
        self.stack, self.token, self.capsys = stack, token, capsys

    def __call__(self, *argv: str, token: str | None = None) -> tuple[int, str, str]:
        self.capsys.readouterr()
        args = [*argv, "--gateway", self.stack.gateway, "--cacert", self.stack.ca,
                "--token", self.token if token is None else token]
        code = usdcarb(args)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(stack: StackInfo, token: str, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(stack, token, capsys)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_version(cli: Run, kind: str, params: dict[str, Any]) -> str:
    sid = new_id(f"cli-{kind[:4]}")
    code, out, _ = cli("strategy", "create", sid, "--kind", kind, "--name", f"CLI {kind}")
    assert code == 0 and f"created strategies/{sid}" in out
    version = cli.json("strategy", "version", sid, "--params", json.dumps(params))
    assert version["name"].startswith(f"strategies/{sid}/versions/")
    return str(version["name"])


SPREAD = {"crossExchangeSpread": {"symbol": "BTC/USDC", "venueA": "binance", "venueB": "bybit",
                                  "entryBps": 60, "exitBps": 5, "quantity": 0.5,
                                  "maxHoldingBars": 720}}
SPREAD_RUN = ["--start", START, "--end", END, "--venue", "binance", "--venue", "bybit",
              "--taker-fee-bps", "10", "--slippage-bps", "2", "--balance", "BTC=5",
              "--balance", "USDC=200000", "--transfer", "binance:bybit:USDC:1:30",
              "--transfer", "bybit:binance:USDC:1:30"]


def test_data_backfill_draws_progress_and_coverage_lists_what_is_stored(
        cli: Run, backfilled: list[str]) -> None:
    assert any(line.startswith("backfill binance BTC/USDT 100.0%") for line in backfilled)
    rows = cli.json("data", "coverage", "--exchange", "binance", "--exchange", "bybit")
    got = {(r["exchange"], r["symbol"]): r for r in rows if r["timeframe"] == "1m"}
    for key in SERIES:
        assert got[key]["bars"] >= 4000, got
    assert got[("binance", "BTC/USDT")]["coverage"] == 1.0
    code, out, _ = cli("data", "coverage", "--exchange", "binance", "--symbol", "USDC/USDT")
    assert code == 0 and "USDC/USDT" in out and "100.00%" in out and "BTC/USDC" not in out
    # Kraken serves only its latest 720 bars: a backfill is refused, an incremental sync works.
    code, _, err = cli("data", "backfill", "--exchange", "kraken", "--symbol", "USDC/USD",
                       "--start", START, "--end", END)
    assert code == 5 and "FAILED_PRECONDITION" in err
    code, out, _ = cli("data", "backfill", "--exchange", "kraken", "--symbol", "USDC/USD",
                       "--incremental")
    assert code == 0 and "succeeded" in out


def test_strategy_commands_create_version_list_and_show(cli: Run) -> None:
    sid = new_id("cli-s")
    code, out, _ = cli("strategy", "create", sid, "--kind", "peg-reversion",
                       "--label", "desk=research")
    assert code == 0 and f"created strategies/{sid} (peg_reversion" in out
    code, _, err = cli("strategy", "create", sid, "--kind", "peg-reversion")
    assert code == 5 and "ALREADY_EXISTS" in err
    params = {"pegReversion": {"venue": "binance", "symbol": "USDC/USDT", "peg": 1.0,
                               "entryBps": 50, "exitBps": 10, "quantity": 10000}}
    version = cli.json("strategy", "version", sid, "--params", json.dumps(params))
    assert version["state"] == "VERSION_STATE_DRAFT"
    listed = cli.json("strategy", "list", "--kind", "peg-reversion", "--label", "desk=research")
    assert f"strategies/{sid}" in [s["name"] for s in listed]
    code, out, _ = cli("strategy", "show", sid)
    assert code == 0 and version["name"].rsplit("/", 1)[1] in out and "draft" in out
    shown = cli.json("strategy", "show", sid)
    assert [v["name"] for v in shown["versions"]] == [version["name"]]
    code, _, err = cli("strategy", "version", sid, "--params", "{not json")
    assert code == 2 and "expected --params as JSON" in err
    code, _, err = cli("strategy", "version", sid, "--params",
                       json.dumps({"pegReversion": {"venue": "binance"}}))
    assert code == 2 and "INVALID_ARGUMENT" in err and "field " in err


def check_report(path: Path, expected_charts: set[str]) -> dict[str, Any]:
    """Open the report in headless chromium: no console errors, data in every chart,
    a screenshot that is not blank. Return the charts by id."""
    if chromium_binary() is None and not os.environ.get("CI"):
        pytest.skip("chromium is not installed (scripts/setup-system.sh installs it)")
    page = open_page(path)
    assert page.console_errors == []
    charts = {c["id"]: c for c in page.charts}
    assert expected_charts <= set(charts), sorted(charts)
    for chart in charts.values():
        assert chart["drawn"], chart
        assert chart["traces"] and all(t["points"] > 0 for t in chart["traces"]), chart
    assert page.pixels["width"] == 1280 and page.pixels["ink"] > 0.02, page.pixels
    assert page.pixels["colours"] > 20, page.pixels
    return charts


def test_backtest_run_streams_progress_prints_figures_and_writes_a_report(
        cli: Run, backfilled: list[str], tmp_path: Path) -> None:
    version = make_version(cli, "cross-exchange-spread", SPREAD)
    report = tmp_path / "spread.html"
    code, out, err = cli("backtest", "run", version, *SPREAD_RUN, "--robustness",
                         "--progress-interval", "0.01", "--report", str(report))
    assert code == 0, err
    progress = [line for line in err.splitlines() if line.startswith("backtest ")]
    assert progress[-1].startswith("backtest 100.0%"), err
    assert "strategy (absolute)" in out and "total return" in out and "fingerprint" in out
    name = out.split(":", 1)[0]
    assert name.startswith("backtests/")
    got = cli.json("backtest", "get", name)
    assert got["state"] == "JOB_STATE_SUCCEEDED" and int(got["result"]["tradeCount"]) > 0
    assert got["config"]["venues"][1]["slippage"]["fixedBps"] == 2
    listed = cli.json("backtest", "list", "--strategy", version.split("/versions/")[0])
    assert [b["name"] for b in listed] == [name]
    code, out, _ = cli("backtest", "get", name.split("/")[1])
    assert code == 0 and "strategy (absolute)" in out
    charts = check_report(report, {"chart-equity", "chart-excess", "chart-drawdown",
                                   "chart-spread", "chart-inventory", "chart-attribution",
                                   "chart-robustness"})
    assert [t["name"] for t in charts["chart-equity"]["traces"]] == ["strategy", "hold baseline"]
    assert charts["chart-robustness"]["traces"][0]["points"] == 5  # base run + 4 scenarios
    assert "hold baseline" in out and "PnL attribution" in out and "robustness panel" in out
    html = report.read_text()
    assert got["result"]["fingerprint"]["digest"] in html and "<script src=" not in html


@pytest.mark.parametrize(("kind", "params", "run"), [
    ("triangular", {"triangular": {"venue": "binance", "minEdgeBps": 5, "notional": 10000,
                                   "symbols": ["BTC/USDC", "BTC/USDT", "USDC/USDT"],
                                   "cooldownBars": 5}},
     ["--venue", "binance", "--taker-fee-bps", "1", "--balance", "USDC=100000",
      "--balance", "USDT=100000", "--balance", "BTC=2"]),
    ("peg-reversion", {"pegReversion": {"venue": "binance", "symbol": "USDC/USDT", "peg": 1.0,
                                        "entryBps": 50, "exitBps": 10, "quantity": 10000}},
     ["--venue", "binance", "--taker-fee-bps", "1", "--quote", "USDT",
      "--balance", "USDC=100000", "--balance", "USDT=100000"]),
])
def test_the_demo_data_runs_every_strategy_kind(
        cli: Run, backfilled: list[str], kind: str, params: dict[str, Any],
        run: list[str]) -> None:
    version = make_version(cli, kind, params)
    bt = cli.json("backtest", "run", version, "--start", START, "--end", END, *run)
    assert bt["state"] == "JOB_STATE_SUCCEEDED"
    assert int(bt["result"]["tradeCount"]) > 0 and int(bt["result"]["bars"]) == 4320


def test_backtest_no_wait_then_cancel_and_watch_agree(cli: Run, backfilled: list[str]
                                                       ) -> None:
    version = make_version(cli, "cross-exchange-spread", SPREAD)
    code, out, _ = cli("backtest", "run", version, *SPREAD_RUN, "--no-wait")
    name = out.strip()
    assert code == 0 and name.startswith("backtests/")
    cancelled = cli.json("backtest", "cancel", name)
    # It may have finished before the cancel arrived; watch must agree with what it says.
    assert cancelled["state"] in ("JOB_STATE_CANCELLED", "JOB_STATE_SUCCEEDED",
                                  "JOB_STATE_RUNNING")
    code, out, err = cli("backtest", "watch", name)
    final = cli.json("backtest", "get", name)["state"]
    assert final in ("JOB_STATE_CANCELLED", "JOB_STATE_SUCCEEDED")
    assert code == (1 if final == "JOB_STATE_CANCELLED" else 0), (out, err)
    if final == "JOB_STATE_CANCELLED":
        assert "ended CANCELLED" in out
        code, _, _ = cli("backtest", "get", name)
        assert code == 1
        code, _, err = cli("report", name, "-o", "/dev/null")
        assert code == 5 and "expected a succeeded backtest" in err


def test_sweep_run_get_and_report_with_heatmap(cli: Run, backfilled: list[str],
                                                tmp_path: Path) -> None:
    version = make_version(cli, "cross-exchange-spread", SPREAD)
    report = tmp_path / "sweep.html"
    code, out, err = cli("sweep", "run", version, "--axis",
                         "crossExchangeSpread.entryBps=40,60,80", "--axis",
                         "crossExchangeSpread.exitBps=5,10", *SPREAD_RUN, "--top", "3",
                         "--report", str(report))
    assert code == 0, err
    assert "best 3 of 6 points" in out
    name = out.split()[0]
    assert any(line.endswith("6/6 combinations") for line in err.splitlines()), err
    assert "deflated Sharpe ratio of the best point" in out
    sweep = cli.json("sweep", "get", name)
    assert sweep["state"] == "JOB_STATE_SUCCEEDED" and len(sweep["points"]) == 6
    assert int(sweep["deflatedSharpe"]["trials"]) == 6
    code, out, _ = cli("sweep", "watch", name)  # a finished sweep: its outcome at once
    assert code == 0 and name in out
    check_report(report, {"chart-heatmap"})
    assert "Deflated Sharpe ratio of the best point" in report.read_text()
    # Walk-forward, queued and then followed.
    code, out, err = cli("sweep", "run", version, "--axis", "crossExchangeSpread.entryBps=40,80",
                         "--walk-forward", "1d/12h", *SPREAD_RUN, "--no-wait")
    assert code == 0, err
    name = out.strip()
    code, out, err = cli("sweep", "watch", name)
    assert code == 0, err
    assert "in sample vs out of sample" in out
    folds = cli.json("sweep", "get", name)["folds"]
    assert len(folds) >= 2 and all("chosenParameters" in f for f in folds)
    assert "out-of-sample decay" in out
    # Purged, embargoed k-fold: folds, no grid points.
    code, out, err = cli("sweep", "run", version, "--axis", "crossExchangeSpread.entryBps=40,80",
                         "--folds", "3", "--purge", "30m", "--embargo", "30m", *SPREAD_RUN)
    assert code == 0, err
    assert "in sample vs out of sample" in out and "out-of-sample decay" in out
    code, _, err = cli("sweep", "run", version, "--axis", "crossExchangeSpread.entryBps=40",
                       "--folds", "3", "--walk-forward", "1d/12h", *SPREAD_RUN)
    assert code == 2 and "not both" in err


def test_exit_codes_on_errors(cli: Run, stack: StackInfo, tmp_path: Path) -> None:
    code, _, err = cli("backtest", "get", "backtests/does-not-exist")
    assert code == 3 and "NOT_FOUND" in err
    code, _, err = cli("backtest", "get", "backtests/x", token="not-a-token")
    assert code == 4 and "UNAUTHENTICATED" in err
    code, _, err = cli("backtest", "run", "strategies/x/versions/y", "--start", START)
    assert code == 2 and "expected --config, or --start, --end" in err
    code, _, err = cli("sweep", "run", "strategies/x/versions/y", "--axis", "a=b")
    assert code == 2 and "--axis PATH=V1,V2" in err
    code, _, err = cli("report", "strategies/x", "-o", str(tmp_path / "r.html"))
    assert code == 2
    code, _, err = cli("backtest", "list", "--state", "sleeping")
    assert code == 2 and "--state" in err
    # A gateway that is not there: unavailable (6), after the SDK's retries.
    from usdcarb.devstack import free_port

    code = usdcarb(["backtest", "list", "--gateway", f"https://127.0.0.1:{free_port()}",
                    "--cacert", stack.ca, "--token", cli.token])
    assert code == 6
    # The installed entry point exits with the same codes.
    done = subprocess.run(
        [sys.executable, "-m", "usdcarb", "backtest", "get", "backtests/nope", "--gateway",
         stack.gateway, "--cacert", stack.ca, "--token", cli.token, "--json"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert done.returncode == 3 and done.stdout == "" and "NOT_FOUND" in done.stderr
